"""The analyzer's settings: the shared service settings plus the Celery worker's own (models kept loaded, the job
lease)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from services.common.config import ServiceSettings


class AnalyzerSettings(ServiceSettings):
    models_kept: int = Field(1, ge=1, description="Models kept loaded in an analyzer process.")
    job_lease_s: int = Field(60, ge=1, description="Lease (with heartbeat) that stops two workers running one job.")


@lru_cache(maxsize=1)
def get_settings() -> AnalyzerSettings:
    return AnalyzerSettings()
