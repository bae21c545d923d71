"""Hot-path read of the bridge cache on the gateway's async Redis client.

`services.common.bridges.BridgeStore` owns the format, every write (publish, delete) and the matrix view.
This runs the same read (`bridges.LATEST_SCRIPT`, `latest_found`, `decode_ranking`) on the async client, in
one round trip and without a thread-pool hop: cached
GET /bridges/{s}/{t} and auto-bridge lookups are the gateway's most frequent Redis reads.
"""

from __future__ import annotations

from typing import Any

from services.common import redis_keys as keys
from services.common.analysis import served_config
from services.common.bridges import LATEST_SCRIPT, decode_ranking, latest_found

from ..deps import AppContext


async def latest_raw(ctx: AppContext, source: str, target: str, config: str | None = None) -> bytes | None:
    """The published ranking as stored (JSON bytes that already carry their `cache_key`), or None: GET
    /bridges/{s}/{t} answers with these bytes, never parsing and re-encoding the ranking."""
    found = await _lookup(ctx, source, target, config)
    return None if found is None else found[1]


async def _lookup(ctx: AppContext, source: str, target: str, config: str | None) -> tuple[str, bytes] | None:
    s = ctx.settings
    config = config or served_config(s, source, target)
    lkey = keys.bridge_latest(s.model, s.model_revision, config, source, target)
    script = ctx.scripts.get("latest")
    if script is None:
        script = ctx.scripts["latest"] = ctx.redis.register_script(LATEST_SCRIPT)
    return latest_found(await ctx.gate.run("bridge_lookup", lambda: script(keys=[lkey])))


async def latest(ctx: AppContext, source: str, target: str, config: str | None = None) -> dict[str, Any] | None:
    """The published ranking for (served model, configuration, source, target), or None; `config` defaults to
    the configuration `auto` serves. Raises RedisUnavailable."""
    found = await _lookup(ctx, source, target, config)
    return None if found is None else decode_ranking(*found)
