"""The analyzer's settings: the shared service settings plus the Celery worker's own (models kept loaded, the job
lease)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field

from services.common.config import ServiceSettings


class AnalyzerSettings(ServiceSettings):
    models_kept: int = Field(1, ge=1, description="Models kept loaded in an analyzer process.")
    job_lease_s: int = Field(60, ge=1, description="Lease (with heartbeat) that stops two workers running one job.")
    analyzer_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="CPU niceness of the analyzer process (0: unchanged). Its profiling is batch work: on a "
        "machine it shares with the gateway, a core goes to a request first (docs/results.md run 12).",
    )
    measure_engine: Literal["local", "worker"] = Field(
        "local",
        description="Who decodes the gold filter's and the dev validation's greedy answers (DECISION, "
        "docs/results.md run 16): 'local' the analyzer's own model, each demonstration block computed once "
        "(bridgex.generation.local), where the worker reports the same weights in float32, else the worker; "
        "'worker' always the generation worker.",
    )
    local_batch: int = Field(
        128, ge=1, le=1024, description="Requests the local engine decodes in one batch (its requests in flight)."
    )


@lru_cache(maxsize=1)
def get_settings() -> AnalyzerSettings:
    return AnalyzerSettings()
