"""Generation worker throughput: the vLLM server at 1/8/16 concurrent clients against sequential HF
`model.generate` measured in the same run, on the default model (fp32, CPU), plus time to ready and peak RSS.

`python -m benchmarks worker`. Environment: BENCH_WORKER_MODEL (default gemma-3-270m), BENCH_WORKER_TOKENS
(max_tokens, 8), BENCH_WORKER_REQUESTS (requests per level, 32), BENCH_WORKER_JSON (write the rows there),
BENCH_ENGINES (comma list of server commands by name: "vllm"; "bridgex" was the home-made engine, measured
against vLLM once before it was removed, docs/results.md "Run 4").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
from bridgex.generation.client import GenerationClient
from bridgex.prompts import word_prompt

WORDS = [
    "water",
    "house",
    "book",
    "tree",
    "sun",
    "moon",
    "bread",
    "dog",
    "cat",
    "city",
    "river",
    "friend",
    "school",
    "night",
    "green",
    "hand",
]
TARGETS = ["fr", "de", "es", "it", "pt", "ja", "zh", "id"]
LEVELS = (1, 8, 16)
ROOT = Path(__file__).resolve().parents[1]


def _prompts(n: int) -> list[str]:
    return [word_prompt(WORDS[i % len(WORDS)], "en", TARGETS[i % len(TARGETS)]) for i in range(n)]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def _row(name: str, n_req: int, tokens: int, wall: float, lat: list[float]) -> dict:
    return {
        "mode": name,
        "requests": n_req,
        "tokens": tokens,
        "wall_s": wall,
        "req_per_s": n_req / wall,
        "tok_per_s": tokens / wall,
        "p50_s": statistics.median(lat),
        "p95_s": _pct(lat, 0.95),
    }


class TreeRSS:
    """Peak summed RSS of a process and its children, sampled every 0.2 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def now(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.now())
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def sequential_generate(model_name: str | None, n: int, max_tokens: int) -> dict:
    import torch
    from bridgex.models import load_model

    lm = load_model(model_name, device="cpu", dtype="float32")
    lat, tokens = [], 0
    prompts = _prompts(n + 1)
    with torch.inference_mode():
        enc = lm.tokenizer(prompts[-1], return_tensors="pt")
        lm.model.generate(**enc, do_sample=False, max_new_tokens=2)  # warm-up
        t0 = time.perf_counter()
        for p in prompts[:n]:
            t = time.perf_counter()
            enc = lm.tokenizer(p, return_tensors="pt")
            out = lm.model.generate(**enc, do_sample=False, max_new_tokens=max_tokens)
            tokens += out.shape[1] - enc.input_ids.shape[1]
            lat.append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
    del lm
    return _row("sequential HF generate", n, tokens, wall, lat)


async def _level(url: str, engine: str, clients: int, n_req: int, max_tokens: int) -> dict:
    prompts = _prompts(n_req)
    lat: list[float] = []
    tokens = 0
    per_client = max(n_req // clients, 1)
    async with GenerationClient(url, timeout=600, concurrency=clients) as c:
        await c.complete(prompts[0], max_tokens=1)  # resolve the model name, warm the connection

        async def client(k: int) -> None:
            nonlocal tokens
            for j in range(per_client):
                t = time.perf_counter()
                out = await c.complete(prompts[(k * per_client + j) % n_req], max_tokens=max_tokens, stop=None)
                lat.append(time.perf_counter() - t)
                tokens += out.usage.completion_tokens

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    return _row(f"{engine}, {clients} clients", per_client * clients, tokens, wall, lat)


def _server_args(engine: str, model: str, port: int) -> tuple[list[str], dict[str, str]]:
    if engine == "vllm":
        return [sys.executable, "-m", "services.worker"], {"BRIDGEX_WORKER_PORT": str(port)}
    if engine == "bridgex":  # the home-made engine, before its removal: BENCH_BRIDGEX_ROOT = a checkout of it
        old = os.environ["BENCH_BRIDGEX_ROOT"]
        return (
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                old,
                "services.worker.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            {
                "BRIDGEX_DEVICE": "cpu",
                "BRIDGEX_DTYPE": "float32",
                "BRIDGEX_MAX_BATCH_SIZE": "16",
                "BRIDGEX_TORCH_THREADS": "1",
                "PYTHONPATH": f"{old}/shared:{old}",
            },
        )
    raise ValueError(f"unknown engine {engine!r} (vllm, bridgex)")


def start_server(
    command: Callable[[int], tuple[list[str], dict[str, str]]], log: Path
) -> tuple[subprocess.Popen, str, TreeRSS, float]:
    """Start a generation server on a free port (`command(port)` gives its argv and extra environment), wait for
    /health and one warm-up generation: (process, url, RSS sampler of its process tree, seconds until ready).
    A server that exits or fails before it is ready is stopped again and its log named in the error."""
    from tests.support import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args, env = command(port)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rss = TreeRSS(proc.pid)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited; log {log}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        asyncio.run(GenerationClient(url, timeout=600).complete("Hello", max_tokens=1))  # warm-up
    except BaseException:
        rss.stop()
        stop_server(proc)
        raise
    return proc, url, rss, time.perf_counter() - t0


def stop_server(proc: subprocess.Popen, grace_s: float = 60) -> None:
    """TERM the server's process group, KILL it after `grace_s`."""
    try:
        os.killpg(proc.pid, 15)
        proc.wait(grace_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(10)


def run_engine(engine: str, model: str, n_req: int, max_tokens: int, log_dir: Path) -> list[dict]:
    def command(port: int) -> tuple[list[str], dict[str, str]]:
        args, env = _server_args(engine, model, port)
        return args, {"BRIDGEX_MODEL": model, **env}

    proc, url, rss, ready_s = start_server(command, log_dir / f"{engine}.log")
    try:
        print(f"{engine}: ready in {ready_s:.0f}s", flush=True)
        rows = []
        for clients in LEVELS:
            rows.append(asyncio.run(_level(url, engine, clients, n_req, max_tokens)))
            print(f"{engine}, {clients} clients: {rows[-1]['req_per_s']:.2f} req/s", flush=True)
        idle_rss = rss.now()
    finally:
        peak = rss.stop()
        stop_server(proc, 30)
    for r in rows:
        r.update(engine=engine, ready_s=ready_s, peak_rss_gb=peak / 1e9, rss_after_gb=idle_rss / 1e9)
    return rows


def main() -> dict:
    model = os.environ.get("BENCH_WORKER_MODEL") or "gemma-3-270m"
    max_tokens = int(os.environ.get("BENCH_WORKER_TOKENS", "8"))
    n_req = int(os.environ.get("BENCH_WORKER_REQUESTS", "32"))
    engines = [e for e in os.environ.get("BENCH_ENGINES", "vllm").split(",") if e]
    base = sequential_generate(None if model == "gemma-3-270m" else model, 8, max_tokens)
    print(f"baseline: {base['req_per_s']:.2f} req/s", flush=True)
    rows = [base]
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as d:
        for engine in engines:
            rows += run_engine(engine, model, n_req, max_tokens, Path(d))
    print(f"\nmodel={model} max_tokens={max_tokens} fp32, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(
        f"{'mode':<26}{'req':>5}{'req/s':>8}{'tok/s':>8}{'p50 s':>8}{'p95 s':>8}{'x base':>8}{'ready s':>9}"
        f"{'peak GB':>9}"
    )
    for r in rows:
        print(
            f"{r['mode']:<26}{r['requests']:>5}{r['req_per_s']:>8.2f}{r['tok_per_s']:>8.1f}{r['p50_s']:>8.2f}"
            f"{r['p95_s']:>8.2f}{r['req_per_s'] / base['req_per_s']:>8.2f}{r.get('ready_s', 0):>9.0f}"
            f"{r.get('peak_rss_gb', 0):>9.2f}"
        )
    out = os.environ.get("BENCH_WORKER_JSON")
    if out:
        Path(out).write_text(json.dumps(rows, indent=2))
    return {"rows": rows}


if __name__ == "__main__":
    main()
