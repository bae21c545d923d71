"""GET /bridges/{source}/{target} (published ranking), GET /bridges (matrix view), GET /bridges/configs,
DELETE (invalidate). Every read is of one configuration: by default the one `auto` serves; `?config=` reads
another (the fingerprint an /analyze job reports in its result)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.common.analysis import InvalidAnalysisRequest, served_config

from ..core.errors import ApiError, bad_input, dependency_down
from ..core.redis import RedisUnavailable
from ..deps import AdminScope, Ctx, TranslateScope
from ..schemas.bridges import BridgeMatrix, PairBest, Ranking
from ..services import bridge_cache, config_check, validation
from ..services.bridging import failure_note, lock_key

router = APIRouter(prefix="/bridges", tags=["bridges"])

ConfigQuery = Annotated[
    str | None, Query(pattern=r"^[0-9a-f]{12}$", description="Configuration fingerprint (default: the served one).")
]


def _down(exc: RedisUnavailable) -> ApiError:
    return dependency_down("redis", f"the bridge cache is unavailable: {exc}")


def _config(ctx: Ctx, src: str, tgt: str, config: str | None) -> str:
    if config is not None:
        return config
    try:
        return served_config(ctx.settings, src, tgt)
    except InvalidAnalysisRequest as exc:
        raise bad_input(
            f"{src}->{tgt} has no served configuration: {exc}; pass ?config=<fingerprint>", field="config"
        ) from exc


@router.get("", response_model=BridgeMatrix)
async def list_bridges(ctx: Ctx, _: TranslateScope, config: ConfigQuery = None) -> BridgeMatrix:
    """Served and HSIC-best bridge per analysed pair of the served model (one configuration: the served one
    unless `config` is given; the served one differs per pair only by its candidates, so the matrix lists each
    pair under its own served configuration)."""
    s = ctx.settings

    try:
        found = await ctx.gate.run_sync("bridge_pairs", lambda: bridge_cache.served_pairs(ctx, config))
        agreement = await ctx.gate.run("served_config", lambda: config_check.agreement(ctx))
    except RedisUnavailable as exc:
        raise _down(exc) from exc
    return BridgeMatrix(
        model=s.model,
        revision=s.model_revision,
        config=config,
        pairs=[PairBest(**p) for p in found],
        configuration=agreement,
    )


@router.get("/configs")
async def list_configs(ctx: Ctx, _: TranslateScope) -> dict[str, Any]:
    """Every configuration (fingerprint -> method parameters) with at least one published ranking."""
    s = ctx.settings
    try:
        configs = await ctx.gate.run_sync("bridge_pairs", lambda: ctx.bridges.configs(s.model, s.model_revision))
    except RedisUnavailable as exc:
        raise _down(exc) from exc
    return {"model": s.model, "revision": s.model_revision, "configs": configs}


async def _why_missing(ctx: Ctx, src: str, tgt: str, config: str) -> dict[str, Any]:
    """What is known about a pair without a ranking: a remembered failure, or the analysis in flight."""
    s = ctx.settings
    failure = await ctx.gate.run_sync(
        "bridge_lookup", lambda: ctx.failures.get(s.model, s.model_revision, config, src, tgt)
    )
    if failure is not None:
        return {"reason": failure_note(failure, src, tgt), "failure": failure}
    holder = await ctx.gate.run("auto_lock", lambda: ctx.redis.get(lock_key(ctx, src, tgt, config)))
    if holder and holder != "pending":
        rec = await ctx.gate.run_sync("job_get", lambda: ctx.jobs.get(holder))
        if rec is not None:
            return {
                "reason": f"analysis job {rec.id} is {rec.state.value} ({rec.progress.stage}, "
                f"{rec.progress.percent:.0f}%)",
                "job": rec.id,
                "state": rec.state.value,
            }
    return {"reason": "never analysed with this configuration"}


@router.get(
    "/{source}/{target}",
    response_model=Ranking,
    responses={404: {"description": "Not analysed yet: the body says why (failure, job running) and how to start"}},
)
async def get_bridge(source: str, target: str, ctx: Ctx, _: TranslateScope, config: ConfigQuery = None) -> Response:
    """Ranked candidates with per-layer scores, set sizes, dev accuracies, the served choice and provenance."""
    src, tgt = validation.pair(source, target)
    s = ctx.settings
    fp = _config(ctx, src, tgt, config)
    try:
        ranking = await bridge_cache.latest_raw(ctx, src, tgt, fp)
        why = None if ranking is not None else await _why_missing(ctx, src, tgt, fp)
    except RedisUnavailable as exc:
        raise _down(exc) from exc
    if ranking is None:
        assert why is not None
        raise ApiError(
            404,
            "bridge_not_analysed",
            f"no bridge recommendation for {src}->{tgt} on model {s.model!r} (config {fp}) yet: "
            f"{why['reason']}. Start one with POST /analyze "
            f'{{"source": "{src}", "target": "{tgt}"}} (analyze scope), or translate with bridge=auto, '
            "which enqueues it",
            details={"config": fp, **why},
        )
    return Response(ranking, media_type="application/json")  # stored bytes (BridgeStore.publish wrote them)


@router.delete("/{source}/{target}", status_code=204, responses={404: {"description": "Nothing to delete"}})
async def delete_bridge(source: str, target: str, ctx: Ctx, _: AdminScope, config: ConfigQuery = None) -> Response:
    """Invalidate the pair's cached recommendation; the next auto translate enqueues a fresh analysis."""
    src, tgt = validation.pair(source, target)
    s = ctx.settings
    fp = _config(ctx, src, tgt, config)
    try:
        removed = await ctx.gate.run_sync(
            "bridge_delete", lambda: ctx.bridges.delete(s.model, s.model_revision, fp, src, tgt)
        )
        await ctx.gate.run("auto_lock", lambda: ctx.redis.delete(lock_key(ctx, src, tgt, fp)))
    except RedisUnavailable as exc:
        raise _down(exc) from exc
    if not removed:
        raise ApiError(404, "bridge_not_analysed", f"no cached recommendation for {src}->{tgt} to delete")
    return Response(status_code=204)
