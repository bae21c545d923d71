"""Worker throughput: the real CPU server (dynamic batching) at 1/4/8/16 concurrent clients against plain
sequential `model.generate` in the same run, on the default model. Goal: >= 3x throughput at 8 clients.

`python -m benchmarks worker`; BENCH_WORKER_MODEL / BENCH_WORKER_TOKENS / BENCH_WORKER_THREADS override the
model, max_tokens and torch threads (default 1 for both sides: fair, and robust on a shared CPU).
Kept short (< 3 min on 2 cores): word prompts, 8 new tokens, few requests per level.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from bridgex.client import GenerationClient
from bridgex.prompts import word_prompt

WORDS = ["water", "house", "book", "tree", "sun", "moon", "bread", "dog", "cat", "city", "river", "friend",
         "school", "night", "green", "hand"]
TARGETS = ["fr", "de", "es", "it", "pt", "ja", "zh", "id"]
LEVELS = (1, 4, 8, 16)


def _prompts(n: int) -> list[str]:
    return [word_prompt(WORDS[i % len(WORDS)], "en", TARGETS[i % len(TARGETS)]) for i in range(n)]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def _row(name: str, n_req: int, tokens: int, wall: float, lat: list[float]) -> dict:
    return {"mode": name, "requests": n_req, "tokens": tokens, "wall_s": wall, "req_per_s": n_req / wall,
            "tok_per_s": tokens / wall, "p50_s": statistics.median(lat), "p95_s": _pct(lat, 0.95)}


def sequential_generate(model_name: str | None, n: int, max_tokens: int, threads: int) -> dict:
    import torch
    from bridgex.models import load_model

    torch.set_num_threads(threads)
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
    return _row("sequential generate", n, tokens, wall, lat)


async def _level(url: str, clients: int, per_client: int, max_tokens: int) -> dict:
    prompts = _prompts(clients * per_client)
    lat: list[float] = []
    tokens = 0

    async with GenerationClient(url, timeout=600, concurrency=clients) as c:
        await c.complete(prompts[0], max_tokens=1)  # resolve the model name, warm the connection

        async def client(k: int) -> None:
            nonlocal tokens
            for j in range(per_client):
                t = time.perf_counter()
                out = await c.complete(prompts[k * per_client + j], max_tokens=max_tokens, stop=None)
                lat.append(time.perf_counter() - t)
                tokens += out.usage.completion_tokens

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        wall = time.perf_counter() - t0
    return _row(f"worker, {clients} clients", clients * per_client, tokens, wall, lat)


def main() -> dict:
    from tests.support import start_worker

    model = os.environ.get("BENCH_WORKER_MODEL") or None
    max_tokens = int(os.environ.get("BENCH_WORKER_TOKENS", "8"))
    threads = int(os.environ.get("BENCH_WORKER_THREADS", "1"))
    rows = [sequential_generate(model, 4, max_tokens, threads)]
    print(f"baseline done: {rows[0]['req_per_s']:.2f} req/s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as d:
        svc, url = start_worker(model or "gemma-3-270m", Path(d), BRIDGEX_DEVICE="cpu",
                                BRIDGEX_DTYPE="float32", BRIDGEX_MAX_BATCH_SIZE="16",
                                BRIDGEX_BATCH_WAIT_MS="5",
                                BRIDGEX_LOG_LEVEL="WARNING", BRIDGEX_TORCH_THREADS=str(threads))
        try:
            for clients in LEVELS:
                per = 2 if clients <= 8 else 1
                rows.append(asyncio.run(_level(url, clients, per, max_tokens)))
                print(f"{clients} clients done: {rows[-1]['req_per_s']:.2f} req/s", flush=True)
            batch = httpx.get(f"{url}/metrics").text
        finally:
            svc.stop()
    vals = {x.split()[0]: float(x.split()[-1]) for x in batch.splitlines() if x and not x.startswith("#")}
    mean_batch = vals["bridgex_worker_batch_size_sum"] / max(vals["bridgex_worker_batch_size_count"], 1)
    base = rows[0]["req_per_s"]
    print(f"\nmodel={model or 'gemma-3-270m'} max_tokens={max_tokens} (fp32, torch threads={threads} for "
          f"both, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print(f"{'mode':<24}{'req':>5}{'tok':>6}{'wall s':>8}{'req/s':>8}{'tok/s':>8}{'p50 s':>8}{'p95 s':>8}"
          f"{'x base':>8}")
    for r in rows:
        print(f"{r['mode']:<24}{r['requests']:>5}{r['tokens']:>6}{r['wall_s']:>8.2f}{r['req_per_s']:>8.2f}"
              f"{r['tok_per_s']:>8.1f}{r['p50_s']:>8.2f}{r['p95_s']:>8.2f}{r['req_per_s'] / base:>8.2f}")
    eight = next(r for r in rows if r["mode"].startswith("worker, 8 "))
    speedup = eight["req_per_s"] / base
    print(f"mean running batch (rows per decode step) {mean_batch:.2f}; "
          f"8 clients vs sequential generate: {speedup:.2f}x "
          f"({'meets' if speedup >= 3 else 'MISSES'} the 3x goal)")
    return {"rows": rows, "speedup_8": speedup, "mean_batch": mean_batch}


if __name__ == "__main__":
    main()
