"""The analyzer's settings: the shared service settings plus the Celery worker's own (models kept loaded, the job
lease)."""

from __future__ import annotations

from functools import lru_cache

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


@lru_cache(maxsize=1)
def get_settings() -> AnalyzerSettings:
    return AnalyzerSettings()
