"""Profiling overhead on the default model: profile_texts (hooks + reductions) vs a bare batched forward
of the very same batches (same chunks, padding, masks, decoder call). Goal: ratio <= 1.15. Also peak RSS.

    python -m benchmarks profiling    # BRIDGEX_BENCH_TOKENS=2048 BRIDGEX_BENCH_REPEATS=3 for a longer run
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time

import torch
from bridgex.models import load_model
from bridgex.profiling import bare_forward, chunk_texts, profile_texts

TEXT = [
    "All human beings are born free and equal in dignity and rights. They are endowed with reason and "
    "conscience and should act towards one another in a spirit of brotherhood.",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués de raison et de "
    "conscience et doivent agir les uns envers les autres dans un esprit de fraternité.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und Gewissen "
    "begabt und sollen einander im Geist der Brüderlichkeit begegnen.",
    "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。",
    "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق. وقد وهبوا عقلاً وضميرًا وعليهم أن يعامل بعضهم بعضًا بروح الإخاء.",
]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> dict:
    tokens = int(os.environ.get("BRIDGEX_BENCH_TOKENS", "512"))
    batch_size, chunk_tokens, repeats = 4, 128, int(os.environ.get("BRIDGEX_BENCH_REPEATS", "2"))
    t0 = time.perf_counter()
    lm = load_model(None, device="auto")
    load_s = time.perf_counter() - t0
    texts = TEXT * 200
    chunks, n_text = chunk_texts(lm.tokenizer, texts, chunk_tokens=chunk_tokens, max_tokens=tokens)
    rss_after_load = _peak_rss_mb()

    def bare() -> None:
        bare_forward(lm, chunks, batch_size=batch_size)
        if lm.device.type == "cuda":
            torch.cuda.synchronize()

    def hooked() -> None:
        profile_texts(lm, texts, language="mix", batch_size=batch_size, chunk_tokens=chunk_tokens, max_tokens=tokens)
        if lm.device.type == "cuda":
            torch.cuda.synchronize()

    bare()  # warm-up (allocator, kernels)
    hooked()
    times: dict[str, list[float]] = {"bare": [], "hooked": []}
    cpu: dict[str, list[float]] = {"bare": [], "hooked": []}  # process CPU time: robust on a shared machine
    for _ in range(repeats):  # interleaved, so load from other processes hits both alike
        for name, fn in (("bare", bare), ("hooked", hooked)):
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    bare_s, hooked_s = min(times["bare"]), min(times["hooked"])
    result = {
        "model": f"{lm.model_id}@{lm.revision}",
        "device": str(lm.device),
        "dtype": str(next(lm.model.parameters()).dtype),
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "tokens": n_text,
        "chunks": len(chunks),
        "batch_size": batch_size,
        "chunk_tokens": chunk_tokens,
        "bare_s_min": round(bare_s, 3),
        "hooked_s_min": round(hooked_s, 3),
        "bare_s_median": round(statistics.median(times["bare"]), 3),
        "hooked_s_median": round(statistics.median(times["hooked"]), 3),
        "ratio_min": round(hooked_s / bare_s, 3),
        "ratio_median": round(statistics.median(times["hooked"]) / statistics.median(times["bare"]), 3),
        "cpu_time_ratio_min": round(min(cpu["hooked"]) / min(cpu["bare"]), 3) if lm.device.type == "cpu" else None,
        "goal_ratio": 1.15,
        "hooked_tokens_per_s": round(n_text / hooked_s, 1),
        "peak_rss_mb_after_load": round(rss_after_load, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    result["meets_goal"] = result["ratio_min"] <= 1.15
    if os.cpu_count() and os.getloadavg()[0] > os.cpu_count():
        result["note"] = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: wall times are noisy"
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
