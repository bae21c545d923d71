"""GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel (cooperative: the task checks the flag)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.common.jobs import JobState

from ..deps import AnalyzeScope, Ctx
from ..schemas.errors import error_responses
from ..schemas.jobs import JobList, JobResponse
from ..services import jobs

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", response_model=JobList)
async def list_jobs(
    ctx: Ctx, principal: AnalyzeScope, limit: Annotated[int, Query(ge=1, le=500)] = 50, state: JobState | None = None
) -> JobList:
    """Newest first: the jobs this key submitted (an admin key sees every job, those `auto` enqueued too)."""
    return JobList(jobs=[jobs.job_response(r) for r in await jobs.list_jobs(ctx, limit, state, principal)])


@router.get("/{job_id}", response_model=JobResponse, responses=error_responses(404))
async def get_job(job_id: str, ctx: Ctx, principal: AnalyzeScope) -> JobResponse:
    """One job this key submitted (any job for an admin key)."""
    return jobs.job_response(await jobs.get(ctx, job_id, principal))


@router.post("/{job_id}/cancel", response_model=JobResponse, responses=error_responses(404, 409))
async def cancel_job(job_id: str, ctx: Ctx, principal: AnalyzeScope) -> JobResponse:
    """A queued job is cancelled at once; a running one stops at its next check. Only the job's sole
    submitter or an admin key may cancel (409 for a job shared with others or enqueued by `auto`)."""
    return jobs.job_response(await jobs.cancel(ctx, job_id, principal))
