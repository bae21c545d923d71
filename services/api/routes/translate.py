"""POST /translate and /translate/batch."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from ..core.errors import ApiError
from ..deps import Ctx, RequestId, TranslateScope
from ..schemas.translate import BatchRequest, BatchResponse, TranslateRequest, TranslateResponse
from ..services.translation import Plan, run

router = APIRouter(tags=["translate"])

ERRORS = {422: {"description": "Bad input (says what to fix)"}, 424: {"description": "Generation failed"},
          503: {"description": "Generation worker unavailable"}, 429: {"description": "Rate limited"}}


@router.post("/translate", response_model=TranslateResponse, responses=ERRORS)
async def translate(req: TranslateRequest, ctx: Ctx, rid: RequestId, _: TranslateScope) -> TranslateResponse:
    """Translate a word or sentence, through a bridge language chosen by `bridge` (auto | none | code)."""
    return await run(ctx, Plan(req, ctx), rid)


@router.post("/translate/batch", response_model=BatchResponse, responses=ERRORS)
async def translate_batch(req: BatchRequest, ctx: Ctx, rid: RequestId, _: TranslateScope) -> BatchResponse:
    """Many translations at once (concurrent; the worker batches them). All items are validated first."""
    plans = []
    for i, item in enumerate(req.items):
        try:
            plans.append(Plan(item, ctx))
        except ApiError as exc:
            exc.message = f"items[{i}]: {exc.message}"
            raise
    results = await asyncio.gather(*(run(ctx, p, f"{rid}-{i}") for i, p in enumerate(plans)),
                                   return_exceptions=True)
    for i, res in enumerate(results):  # every item ran to its end; report the first failure, with its index
        if isinstance(res, ApiError):
            res.message = f"items[{i}]: {res.message}"
            raise res
        if isinstance(res, BaseException):
            raise res
    return BatchResponse(results=list(results), request_id=rid)  # type: ignore[arg-type]
