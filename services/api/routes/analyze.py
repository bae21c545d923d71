"""POST /analyze: start (or find) a pair's analysis. 202 + Location while it runs, 200 with the result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from ..deps import AnalyzeScope, Ctx, RequestId
from ..schemas.jobs import AnalyzeRequest, JobResponse
from ..services import jobs

router = APIRouter(tags=["analyze"])


@router.post(
    "/analyze",
    status_code=202,
    response_model=JobResponse,
    responses={
        200: {"model": JobResponse, "description": "Result already known"},
        422: {"description": "Bad input"},
        503: {"description": "Redis or broker down"},
    },
)
async def analyze(
    req: AnalyzeRequest,
    ctx: Ctx,
    rid: RequestId,
    principal: AnalyzeScope,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    """Same request twice is one job (content hash); `force` recomputes; Idempotency-Key is honoured."""
    rec = await jobs.submit(ctx, req, principal, rid, idempotency_key)
    status = 200 if jobs.is_done_with_result(rec) and not req.force else 202
    body = jobs.job_response(rec)
    return JSONResponse(body.model_dump(mode="json"), status, headers={"Location": body.location})
