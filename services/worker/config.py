"""The generation worker's settings: the core (model, dtype, vLLM's CPU environment, its own address and key)
plus vLLM's server flags and the guard's limits. The worker needs no Redis."""

from __future__ import annotations

from functools import lru_cache

from bridgex.settings import CoreSettings
from pydantic import Field


class WorkerSettings(CoreSettings):
    max_batch_size: int = Field(16, ge=1, description="vLLM --max-num-seqs.")
    worker_enforce_eager: bool | None = Field(None, description="vLLM --enforce-eager (None: on CPU only).")
    worker_args: str = Field("", description="Extra vLLM server flags (shell syntax).")
    worker_max_body_bytes: int = Field(256 * 1024, ge=1024, description="Worker guard: largest request body.")
    worker_max_prompts: int = Field(
        8,
        ge=1,
        description="Worker guard: prompts in one request (a list prompt "
        "or n); one caller cannot fill the batch and starve the rest.",
    )


@lru_cache(maxsize=1)
def get_settings() -> WorkerSettings:
    return WorkerSettings()
