"""GET /bridges/{source}/{target} (published ranking), GET /bridges (matrix view), DELETE (invalidate)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ..core.errors import ApiError, dependency_down
from ..core.redis import RedisUnavailable
from ..deps import AdminScope, Ctx, TranslateScope
from ..schemas.bridges import BridgeMatrix, PairBest, Ranking
from ..services import bridge_cache, validation
from ..services.bridging import lock_key

router = APIRouter(prefix="/bridges", tags=["bridges"])


def _down(exc: RedisUnavailable) -> ApiError:
    return dependency_down("redis", f"the bridge cache is unavailable: {exc}")


@router.get("", response_model=BridgeMatrix)
async def list_bridges(ctx: Ctx, _: TranslateScope) -> BridgeMatrix:
    """Best bridge per analysed pair of the served model."""
    s = ctx.settings
    try:
        pairs = await ctx.gate.run_sync("bridge_pairs", lambda: ctx.bridges.pairs(s.model, s.model_revision))
    except RedisUnavailable as exc:
        raise _down(exc) from exc
    return BridgeMatrix(model=s.model, revision=s.model_revision, pairs=[PairBest(**p) for p in pairs])


@router.get("/{source}/{target}", response_model=Ranking,
            responses={404: {"description": "Not analysed yet (the message says how to start)"}})
async def get_bridge(source: str, target: str, ctx: Ctx, _: TranslateScope) -> Response:
    """Ranked candidates with per-layer scores, set sizes and provenance."""
    src, tgt = validation.pair(source, target)
    s = ctx.settings
    try:
        ranking = await bridge_cache.latest(ctx, src, tgt)
    except RedisUnavailable as exc:
        raise _down(exc) from exc
    if ranking is None:
        raise ApiError(404, "bridge_not_analysed",
                       f"no bridge recommendation for {src}->{tgt} on model {s.model!r} yet; start one with "
                       f'POST /analyze {{"source": "{src}", "target": "{tgt}"}} (analyze scope), or '
                       "translate with bridge=auto, which enqueues it")
    return JSONResponse(ranking)


@router.delete("/{source}/{target}", status_code=204, responses={404: {"description": "Nothing to delete"}})
async def delete_bridge(source: str, target: str, ctx: Ctx, _: AdminScope) -> Response:
    """Invalidate the pair's cached recommendation; the next auto translate enqueues a fresh analysis."""
    src, tgt = validation.pair(source, target)
    s = ctx.settings
    try:
        removed = await ctx.gate.run_sync("bridge_delete",
                                          lambda: ctx.bridges.delete(s.model, s.model_revision, src, tgt))
        await ctx.gate.run("auto_lock", lambda: ctx.redis.delete(lock_key(ctx, src, tgt)))
    except RedisUnavailable as exc:
        raise _down(exc) from exc
    if not removed:
        raise ApiError(404, "bridge_not_analysed", f"no cached recommendation for {src}->{tgt} to delete")
    return Response(status_code=204)
