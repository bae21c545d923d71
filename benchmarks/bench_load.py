"""Bounded load on the real stack: 50 concurrent `/translate` clients and 50 concurrent `/bridges` clients,
against `GET /health` (the trivial endpoint of the same app) measured in the same run.

Real processes: redis-server, vLLM's server on the default model (BENCH_LOAD_MODEL to change it; the tiny
random model with `tiny`), and the gateway started by `python -m services.api` with its limits. Each phase
runs for BENCH_LOAD_SECONDS (default 30) with closed-loop clients (each sends its next request when the last
answered). Reports throughput, p50/p95/p99, and how many requests reached the client timeout (the gateway's
own worker budget: worker_timeout_s x (retries + 1)). Goals (issue 12): no timeout at 50 clients; `/bridges`
p99 within 2x of `/health`'s p99 at 50 clients.

Phases: health alone, bridges alone, translate alone, then translate + bridges + health together (the mix a
busy gateway sees). Also the gateway's peak RSS.

`python -m benchmarks load` (env BENCH_LOAD_CLIENTS, BENCH_LOAD_SECONDS, BENCH_LOAD_MODEL).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.fixtures import gateway_stack, pct

KEY = "bench-load-key"
H = {"Authorization": f"Bearer {KEY}"}
WORDS = ("water", "house", "dog", "tree", "sun", "moon", "book", "hand", "river", "stone", "bread", "fire")


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lat: list[float] = []
        self.codes: dict[int, int] = {}
        self.timeouts = 0
        self.errors: dict[str, int] = {}
        self.seconds = 0.0

    def add(self, ms: float, code: int) -> None:
        self.lat.append(ms)
        self.codes[code] = self.codes.get(code, 0) + 1

    def summary(self) -> dict[str, Any]:
        n = len(self.lat)
        return {
            "requests": n,
            "rps": n / self.seconds if self.seconds else 0.0,
            "p50_ms": statistics.median(self.lat) if n else None,
            "p95_ms": pct(self.lat, 95) if n else None,
            "p99_ms": pct(self.lat, 99) if n else None,
            "timeouts": self.timeouts,
            "errors": self.errors,
            "codes": {str(k): v for k, v in sorted(self.codes.items())},
        }

    def line(self) -> str:
        s = self.summary()
        if not s["requests"]:
            return f"  {self.name:<28} no request finished; timeouts {self.timeouts}"
        return (
            f"  {self.name:<28} {s['rps']:8.1f} req/s   p50 {s['p50_ms']:8.1f}   p95 {s['p95_ms']:8.1f}   "
            f"p99 {s['p99_ms']:8.1f} ms   timeouts {s['timeouts']}   codes {s['codes']}"
            + (f"   transport errors {s['errors']}" if s["errors"] else "")
        )


async def closed_loop(
    c: httpx.AsyncClient, phase: Phase, method: str, path: str, body_of: Any, clients: int, until: float
) -> None:
    async def client(i: int) -> None:
        k = 0
        while time.monotonic() < until:
            body = body_of(i, k) if body_of else None
            k += 1
            t0 = time.perf_counter()
            try:
                r = await c.request(method, path, headers=H, json=body)
                phase.add((time.perf_counter() - t0) * 1e3, r.status_code)
            except httpx.TimeoutException:
                phase.timeouts += 1
            except httpx.TransportError as e:  # e.g. a pooled keep-alive connection the server closed
                phase.errors[type(e).__name__] = phase.errors.get(type(e).__name__, 0) + 1

    t0 = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    phase.seconds = time.monotonic() - t0


def translate_body(i: int, k: int) -> dict[str, Any]:
    return {"text": WORDS[(i + k) % len(WORDS)], "source": "en", "target": "fr", "bridge": "auto"}


async def run(api: str, clients: int, seconds: float, timeout_s: float, api_pid: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=3 * clients + 8, max_keepalive_connections=3 * clients + 8)
    peak = {"rss": 0}
    proc = psutil.Process(api_pid)

    async def watch_rss(until: float) -> None:
        while time.monotonic() < until:
            peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            await asyncio.sleep(0.2)

    out: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=api, limits=limits, timeout=timeout_s) as c:
        for path in ("/health", "/bridges/en/fr"):
            (await c.get(path, headers=H)).raise_for_status()
        (await c.post("/translate", headers=H, json=translate_body(0, 0))).raise_for_status()
        phases: list[Phase] = []
        for name, method, path, body in (
            ("health alone", "GET", "/health", None),
            ("bridges alone", "GET", "/bridges/en/fr", None),
            ("translate alone", "POST", "/translate", translate_body),
        ):
            ph = Phase(name)
            until = time.monotonic() + seconds
            await asyncio.gather(closed_loop(c, ph, method, path, body, clients, until), watch_rss(until))
            phases.append(ph)
        mixed = [Phase("mixed: translate"), Phase("mixed: bridges"), Phase("mixed: health")]
        until = time.monotonic() + seconds
        await asyncio.gather(
            closed_loop(c, mixed[0], "POST", "/translate", translate_body, clients, until),
            closed_loop(c, mixed[1], "GET", "/bridges/en/fr", None, clients, until),
            closed_loop(c, mixed[2], "GET", "/health", None, clients, until),
            watch_rss(until),
        )
        phases += mixed
    for ph in phases:
        print(ph.line(), flush=True)
        out[ph.name] = ph.summary()
    alone = out["bridges alone"]["p99_ms"] / out["health alone"]["p99_ms"]
    together = out["mixed: bridges"]["p99_ms"] / out["mixed: health"]["p99_ms"]
    timeouts = sum(ph.timeouts for ph in phases)
    print(
        f"  /bridges p99 / /health p99 at {clients} clients: {alone:.2f} alone, {together:.2f} under the "
        f"translate load (goal <= 2: {'met' if max(alone, together) <= 2 else 'MISSED'})"
    )
    print(
        f"  requests that reached the {timeout_s:.0f} s client timeout: {timeouts} (goal 0: "
        f"{'met' if timeouts == 0 else 'MISSED'});  gateway peak RSS {peak['rss'] / 2**20:.0f} MiB"
    )
    out["ratios"] = {"bridges_over_health_p99_alone": alone, "bridges_over_health_p99_mixed": together}
    out["timeouts"] = timeouts
    out["gateway_peak_rss_mib"] = peak["rss"] / 2**20
    return out


def main() -> dict[str, Any]:
    clients = int(os.environ.get("BENCH_LOAD_CLIENTS", "50"))
    seconds = float(os.environ.get("BENCH_LOAD_SECONDS", "30"))
    model = os.environ.get("BENCH_LOAD_MODEL", "gemma-3-270m")
    tmp = Path(tempfile.mkdtemp(prefix="bridgex-bench-load-"))
    if model == "tiny":
        from bridgex.models import tiny_random_llama

        model = str(tiny_random_llama(tmp / "tiny"))
    worker_timeout, retries = 60.0, 2
    with gateway_stack(
        model,
        tmp,
        KEY,
        worker_env={"BRIDGEX_MAX_MODEL_LEN": "2048"},
        BRIDGEX_K_SHOT="0",
        BRIDGEX_DATA_AUTO="false",
        BRIDGEX_WORKER_TIMEOUT_S=str(worker_timeout),
        BRIDGEX_WORKER_RETRIES=str(retries),
    ) as st:
        print(f"model {Path(model).name}, {clients} clients per endpoint, {seconds:.0f} s per phase", flush=True)
        pid = st.api_svc.proc.pid if st.api_svc.proc else 0
        return asyncio.run(run(st.api, clients, seconds, worker_timeout * (retries + 1) + 1, pid))


if __name__ == "__main__":
    main()
