"""Gateway benchmark on loopback, real processes (redis-server, CPU generation worker on a tiny random Llama,
uvicorn running the gateway):

1. cached `GET /bridges/{s}/{t}` (auth + rate limit + Redis lookup) vs `GET /health` of the same app, in the
   same run: throughput ratio (goal >= 0.5) and p50/p99 latency (goal p99 <= 5 ms, sequential client).
2. `/translate` (bridge=none: one generation; explicit bridge: two) vs the same prompt sent straight to the
   worker with the project's client: the gateway's overhead per request.
3. the default request (bridge auto, k_shot 3): the gateway's own time (latency less its worker time) against
   k_shot 0 and /health (goal: <= 3 ms p50 at one client).

`python -m benchmarks api` (env BENCH_API_N, BENCH_API_CONC, BENCH_API_TRANSLATE_N, BENCH_API_DEFAULT_N to size
it; the default path's p50 is a difference of two noisy times on a shared machine, so it takes 200 per kind).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from bridgex.generation.client import GenerationClient
from bridgex.prompts import word_prompt

from benchmarks.fixtures import gateway_stack, pct
from tests.api.conftest import write_data_dir

KEY = "bench-key"
H = {"Authorization": f"Bearer {KEY}"}


async def latencies(fn: Callable[[], Awaitable[None]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


async def throughput(client: httpx.AsyncClient, path: str, n: int, conc: int) -> float:
    """Requests per second with `conc` concurrent clients sharing `n` requests."""
    left = n

    async def runner() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            r = await client.get(path, headers=H)
            if r.status_code != 200:
                raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")

    t0 = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(conc)))
    return n / (time.perf_counter() - t0)


def _bucket(metrics_text: str, route: str, le: str) -> float:
    """Cumulative count of a latency bucket of the gateway's request histogram (GET `route`)."""
    needle = f'bridgex_api_request_seconds_bucket{{le="{le}",method="GET",route="{route}"}} '
    for line in metrics_text.splitlines():
        if line.startswith(needle):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def row(name: str, lat: list[float]) -> str:
    return f"  {name:<34} p50 {statistics.median(lat):7.2f} ms   p99 {pct(lat, 99):7.2f} ms   (n={len(lat)})"


async def run(api: str, worker: str, model: str, n: int, conc: int) -> dict:
    res: dict = {}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=api, limits=limits, timeout=30) as c:
        for path in ("/health", "/bridges/en/fr"):  # warm-up (also checks the cached answer exists)
            for _ in range(50):
                r = await c.get(path, headers=H)
                r.raise_for_status()
        # 1. latency, sequential client, interleaved rounds so drift hits both alike
        lat: dict[str, list[float]] = {"/health": [], "/bridges/en/fr": []}
        for _ in range(4):
            for path in lat:
                lat[path] += await latencies(lambda p=path: c.get(p, headers=H), n // 4)
        # 2. throughput with concurrent clients, interleaved
        tput: dict[str, list[float]] = {"/health": [], "/bridges/en/fr": []}
        for _ in range(3):
            for path in tput:
                tput[path].append(await throughput(c, path, n, conc))
        ratio = statistics.median(tput["/bridges/en/fr"]) / statistics.median(tput["/health"])
        print(
            f"cached bridge lookup vs trivial endpoint (same app, loopback, {conc} concurrent clients for "
            "throughput, 1 for latency):"
        )
        for path in lat:
            print(row(f"GET {path}", lat[path]) + f"   {statistics.median(tput[path]):7.0f} req/s")
        p99 = pct(lat["/bridges/en/fr"], 99)
        print(
            f"  throughput ratio bridges/health = {ratio:.2f} (goal >= 0.5: "
            f"{'met' if ratio >= 0.5 else 'MISSED'}); bridges p99 = {p99:.2f} ms (goal <= 5 ms: "
            f"{'met' if p99 <= 5 else 'MISSED'})"
        )
        text = (await c.get("/metrics")).text
        for path in lat:  # the server's own view (in-process histogram): share of requests done within 5 ms
            route = "/bridges/{source}/{target}" if path.startswith("/bridges/") else path
            under = _bucket(text, route, "0.005") / max(_bucket(text, route, "+Inf"), 1)
            print(f"  server-side (gateway histogram) GET {path}: {100 * under:.1f}% of requests within 5 ms")
            res[f"server_within_5ms{path}"] = under
        res["bridges"] = {
            "ratio": ratio,
            "p50_ms": statistics.median(lat["/bridges/en/fr"]),
            "p99_ms": p99,
            "health_p50_ms": statistics.median(lat["/health"]),
            "health_p99_ms": pct(lat["/health"], 99),
            "rps_bridges": statistics.median(tput["/bridges/en/fr"]),
            "rps_health": statistics.median(tput["/health"]),
        }

        # 3. translate overhead over a direct worker call (same prompt, same max_tokens, sequential)
        m = int(os.environ.get("BENCH_API_TRANSLATE_N", "20"))
        async with GenerationClient(worker, timeout=60) as gen:
            prompt = word_prompt("water", "en", "fr")
            step1 = word_prompt("water", "en", "de")

            async def direct() -> None:
                await gen.complete(prompt, max_tokens=8)

            async def direct2() -> None:
                await gen.complete(step1, max_tokens=8)
                await gen.complete(prompt, max_tokens=8)

            async def via(bridge: str) -> None:
                # k_shot 0: the same zero-shot prompts as the direct calls (k-shot demos would lengthen them, and
                # the first k-shot request of a pair gathers its data)
                body = {"text": "water", "source": "en", "target": "fr", "bridge": bridge, "max_tokens": 8, "k_shot": 0}
                r = await c.post("/translate", headers=H, json=body)
                r.raise_for_status()

            await direct()
            await via("none")
            await via("de")
            d1, g1, d2, g2 = [], [], [], []
            for _ in range(2):
                d1 += await latencies(direct, m // 2)
                g1 += await latencies(lambda: via("none"), m // 2)
                d2 += await latencies(direct2, m // 2)
                g2 += await latencies(lambda: via("de"), m // 2)
        over1 = statistics.median(g1) - statistics.median(d1)
        over2 = statistics.median(g2) - statistics.median(d2)
        print(f"/translate vs direct worker calls (tiny model {Path(model).name}, max_tokens=8):")
        print(row("worker direct, 1 call", d1))
        print(row("POST /translate bridge=none", g1))
        print(row("worker direct, 2 calls (chain)", d2))
        print(row("POST /translate bridge=de", g2))
        print(f"  gateway overhead (p50): {over1:.2f} ms (no bridge), {over2:.2f} ms (explicit bridge)")
        res["translate"] = {
            "direct_p50_ms": statistics.median(d1),
            "api_none_p50_ms": statistics.median(g1),
            "overhead_none_ms": over1,
            "direct2_p50_ms": statistics.median(d2),
            "api_bridge_p50_ms": statistics.median(g2),
            "overhead_bridge_ms": over2,
        }
        res["default_path"] = await default_path(c, int(os.environ.get("BENCH_API_DEFAULT_N", "200")))
    return res


async def default_path(c: httpx.AsyncClient, m: int) -> dict:
    """The default request (`{text, source, target}`: bridge auto from the cache, k_shot 3 from the data
    directory) against the same with k_shot 0 and against /health: the gateway's own time per request, i.e.
    the client's latency less the time the gateway spent waiting on the worker (its `timings`)."""

    async def own(body: dict) -> float:
        t0 = time.perf_counter()
        r = await c.post("/translate", headers=H, json=body)
        wall = (time.perf_counter() - t0) * 1e3
        r.raise_for_status()
        out = r.json()
        if body.get("k_shot") is None and out["k_shot"] != 3:
            raise RuntimeError(f"the default path did not use 3 demonstrations: {out}")
        t = out["timings"]
        return wall - t["bridge_step_ms"] - t["target_step_ms"]

    default = {"text": "water", "source": "en", "target": "fr", "max_tokens": 8}
    zero = {**default, "k_shot": 0}
    for body in (default, zero):  # warm-up: first pick of the pair's demonstrations reads its dictionary
        await own(body)
    d, z, h = [], [], []
    for _ in range(4):
        d += [await own(default) for _ in range(m // 4)]
        z += [await own(zero) for _ in range(m // 4)]
        h += await latencies(lambda: c.get("/health"), m // 4)
    pd, pz, ph = statistics.median(d), statistics.median(z), statistics.median(h)
    print("default path (bridge auto from the cache, k_shot 3) vs k_shot 0 vs GET /health, 1 client:")
    print(row("gateway own time, default path", d))
    print(row("gateway own time, k_shot 0", z))
    print(row("GET /health (whole request)", h))
    print(
        f"  default path / k_shot 0 = {pd / pz:.2f}x, / health = {pd / ph:.2f}x; default-path overhead p50 "
        f"{pd:.2f} ms (goal <= 3 ms: {'met' if pd <= 3 else 'MISSED'})"
    )
    return {"default_p50_ms": pd, "k0_p50_ms": pz, "health_p50_ms": ph, "ratio_k0": pd / pz, "ratio_health": pd / ph}


def main() -> dict:
    from bridgex.models import tiny_random_llama

    n = int(os.environ.get("BENCH_API_N", "1000"))
    conc = int(os.environ.get("BENCH_API_CONC", "8"))
    tmp = Path(tempfile.mkdtemp(prefix="bridgex-bench-api-"))
    model = str(tiny_random_llama(tmp / "tiny"))
    # the default path reads k-shot demonstrations from the data directory: en-fr, and en-de for the cached
    # bridge's step (the fixture's ranking serves de)
    data = write_data_dir(tmp / "data", pairs=(("en", "fr"), ("en", "de"), ("de", "fr")))
    with gateway_stack(model, tmp, KEY, BRIDGEX_DATA_DIR=str(data)) as st:
        return asyncio.run(run(st.api, st.worker, model, n, conc))


if __name__ == "__main__":
    main()
