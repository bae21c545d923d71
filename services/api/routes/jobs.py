"""GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel (cooperative: the task checks the flag)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.common.jobs import JobState

from ..deps import AnalyzeScope, Ctx
from ..schemas.jobs import JobList, JobResponse
from ..services import jobs

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", response_model=JobList)
async def list_jobs(ctx: Ctx, _: AnalyzeScope, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    state: JobState | None = None) -> JobList:
    """Newest first."""
    return JobList(jobs=[jobs.job_response(r) for r in await jobs.list_jobs(ctx, limit, state)])


@router.get("/{job_id}", response_model=JobResponse, responses={404: {"description": "Unknown job id"}})
async def get_job(job_id: str, ctx: Ctx, _: AnalyzeScope) -> JobResponse:
    return jobs.job_response(await jobs.get(ctx, job_id))


@router.post("/{job_id}/cancel", response_model=JobResponse,
             responses={404: {"description": "Unknown job id"}})
async def cancel_job(job_id: str, ctx: Ctx, _: AnalyzeScope) -> JobResponse:
    """A queued job is cancelled at once; a running one stops at its next check."""
    return jobs.job_response(await jobs.cancel(ctx, job_id))
