"""Request/response models of /analyze and /jobs (the job record itself is services.common.jobs.JobRecord)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.common.analysis import AnalysisRequest
from services.common.jobs import JobRecord


class AnalyzeRequest(AnalysisRequest):
    """An analysis request; `force` recomputes a finished job."""

    force: bool = Field(False, description="Recompute even when a result exists.")


class JobResponse(JobRecord):
    """A job record plus where to poll it."""

    location: str
    owners: list[str] = Field(default_factory=list, exclude=True)  # scoping data, never shown


class JobList(BaseModel):
    jobs: list[JobResponse]
