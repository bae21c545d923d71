"""Capture engines on the default model: profiling (method step 1) tokens/s with the "vllm" backend (inside
vLLM's V1 engine) against the "hf" backend (forward hooks) measured in the same run, same chunks and settings,
plus engine start time and peak RSS. Both must give the same statistics (tests/core/test_capture_vllm.py).

    python -m benchmarks capture     # BRIDGEX_BENCH_TOKENS (default 4096), BRIDGEX_BENCH_REPEATS (2)

On a GPU host with vLLM's CUDA build, BRIDGEX_BENCH_MODEL may name a folder of a random-weight model of real
shape (scripts/gpu_bench.py builds one from a Llama-3-8B config) to run the same comparison there.
"""

from __future__ import annotations

import json
import os
import resource
import time

import torch
from bridgex.capture import get_backend
from bridgex.models import load_model

from benchmarks.bench_profiling import TEXT


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> dict:
    tokens = int(os.environ.get("BRIDGEX_BENCH_TOKENS", "4096"))
    repeats = int(os.environ.get("BRIDGEX_BENCH_REPEATS", "2"))
    batch_size, chunk_tokens = 8, 256
    lm = load_model(os.environ.get("BRIDGEX_BENCH_MODEL") or None, device="auto")
    texts = TEXT * 400
    hf, vl = get_backend("hf"), get_backend("vllm")
    rss_hf_loaded = _peak_rss_mb()
    t0 = time.perf_counter()
    vl.engine(lm)
    engine_s = time.perf_counter() - t0
    rss_engine = _peak_rss_mb()

    def run(backend) -> tuple[float, int]:
        t = time.perf_counter()
        prof = backend.profile(
            lm, texts, language="mix", batch_size=batch_size, chunk_tokens=chunk_tokens, max_tokens=tokens
        )
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, prof.n_tokens

    run(hf)  # warm-up both
    run(vl)
    times: dict[str, list[float]] = {"hf": [], "vllm": []}
    n_tokens = 0
    for _ in range(repeats):  # interleaved: load from other processes hits both alike
        for name, backend in (("hf", hf), ("vllm", vl)):
            dt, n_tokens = run(backend)
            times[name].append(dt)
    hf_s, vl_s = min(times["hf"]), min(times["vllm"])
    result = {
        "model": f"{lm.model_id}@{lm.revision}",
        "device": str(lm.device),
        "dtype": str(next(lm.model.parameters()).dtype),
        "tokens": n_tokens,
        "chunk_tokens": chunk_tokens,
        "hf_batch_size": batch_size,
        "hf_s_min": round(hf_s, 3),
        "vllm_s_min": round(vl_s, 3),
        "hf_tokens_per_s": round(n_tokens / hf_s, 1),
        "vllm_tokens_per_s": round(n_tokens / vl_s, 1),
        "vllm_over_hf_throughput": round(hf_s / vl_s, 3),
        "vllm_engine_start_s": round(engine_s, 1),
        "peak_rss_mb_hf_loaded": round(rss_hf_loaded, 1),
        "peak_rss_mb_with_vllm_engine": round(rss_engine, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    if os.cpu_count() and os.getloadavg()[0] > os.cpu_count():
        result["note"] = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: wall times are noisy"
    print(json.dumps(result, indent=2))
    vl.close()
    return result


if __name__ == "__main__":
    main()
