"""GET /usage (the calling key's usage) and GET /usage/keys (every key's, admin)."""

from __future__ import annotations

from fastapi import APIRouter

from ..core.errors import ApiError, dependency_down
from ..core.redis import RedisUnavailable
from ..deps import AdminScope, AnyKey, Ctx
from ..schemas.usage import KeyUsage, UsageList
from ..services.usage import UsageMeter

router = APIRouter(prefix="/usage", tags=["usage"])


def _redis_down(exc: RedisUnavailable) -> ApiError:
    return dependency_down("redis", f"usage counters are unavailable: {exc}")


async def _read(meter: UsageMeter, key_ids: list[str]) -> list[KeyUsage]:
    try:
        return [KeyUsage.model_validate(u) for u in await meter.read(key_ids)]
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc


@router.get("", response_model=KeyUsage)
async def usage(ctx: Ctx, principal: AnyKey) -> KeyUsage:
    """This key's requests, characters, generated tokens and analyses this minute, today (UTC) and in total,
    with its quota and the characters left when it has one (any valid key)."""
    return (await _read(ctx.usage, [principal.key_id]))[0]


@router.get("/keys", response_model=UsageList)
async def usage_keys(ctx: Ctx, _: AdminScope) -> UsageList:
    """Every key's usage by key id (admin): the configured keys, then others that have counters."""
    try:
        ids = await ctx.usage.known_key_ids()
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc
    return UsageList(keys=await _read(ctx.usage, ids))
