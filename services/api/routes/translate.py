"""POST /translate and /translate/batch."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ..core.errors import ApiError, printable
from ..deps import Ctx, RequestId, TranslateScope, TranslateWithLookup, client_address
from ..schemas.errors import error_responses
from ..schemas.translate import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    ItemError,
    TranslateRequest,
    TranslateResponse,
)
from ..services.streaming import open_stream
from ..services.translation import Plan, run

log = logging.getLogger("bridgex.api")
router = APIRouter(tags=["translate"])


@router.post(
    "/translate",
    response_model=TranslateResponse,
    responses={
        **error_responses(404, 424),  # 404: a glossary_id this key cannot see
        200: {"content": {"text/event-stream": {"description": "With stream=true: bridge, delta..., done"}}},
    },
)
async def translate(
    req: TranslateRequest, request: Request, ctx: Ctx, rid: RequestId, principal: TranslateWithLookup
) -> TranslateResponse | Response:
    """Translate a word or sentence, through a bridge language chosen by `bridge` (auto | none | code).
    With `stream: true` (task text) the answer is server-sent events (services/api/services/streaming.py)."""
    plan = Plan(req, ctx)  # bad input is refused before the key's quota is touched
    plan.prefetched = getattr(request.state, "bridge_prefetch", None)
    if req.stream and plan.alternatives > 1:
        raise ApiError(
            422,
            "invalid_request",
            "alternatives and stream=true do not combine: drop one of them",
            details={"field": "alternatives"},
        )
    async with ctx.usage.charge(principal, [req.text]) as charge:  # 429 quota_exceeded; counts a success
        with charge.item():
            if req.stream:  # charged once the stream opened (its first tokens arrived)
                events = await open_stream(ctx, plan, rid, principal)
                return StreamingResponse(
                    events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Request-Id": rid}
                )
            return await run(ctx, plan, rid, principal)


@router.post("/translate/batch", response_model=BatchResponse)
async def translate_batch(
    req: BatchRequest, request: Request, ctx: Ctx, rid: RequestId, principal: TranslateScope
) -> BatchResponse:
    """Many translations at once (at most BRIDGEX_BATCH_CONCURRENCY in flight, so other callers' requests
    interleave; the worker batches them). Each item gets its result or its own error, so one bad item or one
    transient failure never discards the others."""
    if len(req.items) > 1:  # the first item was charged by the scope check
        await ctx.limiter.check(principal, client_address(request), cost=len(req.items) - 1)

    gate = asyncio.Semaphore(ctx.settings.batch_concurrency)

    async def one(i: int, item: TranslateRequest) -> BatchItem:
        try:
            async with gate:
                with charge.item(i):  # counted when it succeeds; a failed item's characters are given back
                    result = await run(ctx, Plan(item, ctx), f"{rid}-{i}", principal)
                return BatchItem(index=i, ok=True, result=result)
        except ApiError as exc:
            return BatchItem(
                index=i, ok=False, error=ItemError(status=exc.status, error=exc.error, message=printable(exc.message))
            )
        except Exception as exc:  # a bug must not discard the other items either; logged with its trace
            log.exception("batch %s item %d failed", rid, i)
            return BatchItem(
                index=i,
                ok=False,
                error=ItemError(
                    status=500,
                    error="internal_error",
                    message=f"internal error ({type(exc).__name__}); the request id {rid}-{i} is in the server log",
                ),
            )

    # the whole batch's characters against the key's quota (429 for all of it when they do not fit)
    async with ctx.usage.charge(principal, [item.text for item in req.items]) as charge:
        results = list(await asyncio.gather(*(one(i, item) for i, item in enumerate(req.items))))
    failed = sum(not r.ok for r in results)
    return BatchResponse(results=results, succeeded=len(results) - failed, failed=failed, request_id=rid)
