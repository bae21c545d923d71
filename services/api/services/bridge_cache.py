"""Hot-path read of the bridge cache on the gateway's async Redis client.

`services.common.bridges.BridgeStore` owns the format, every write (publish, delete) and the matrix view.
This reads what it publishes (the same `bridgex.cache_keys` keys and JSON value, `cache_key` added as
`BridgeStore.get` does) in one round trip (a Lua script) and without a thread-pool hop: cached
GET /bridges/{s}/{t} and auto-bridge lookups are the gateway's most frequent Redis reads.
"""

from __future__ import annotations

import json
from typing import Any

from bridgex.cache_keys import latest_key

from services.common.analysis import served_config

from ..deps import AppContext

# latest index -> versioned key -> value (single Redis: the second key is the index's value)
_LATEST = """
local key = redis.call('GET', KEYS[1])
if not key then return false end
local value = redis.call('GET', key)
if not value then return false end
return {key, value}
"""


async def latest_raw(ctx: AppContext, source: str, target: str, config: str | None = None) -> bytes | None:
    """The published ranking as stored (JSON bytes that already carry their `cache_key`), or None: GET
    /bridges/{s}/{t} answers with these bytes, never parsing and re-encoding the ranking."""
    found = await _lookup(ctx, source, target, config)
    return None if found is None else found[1]


async def _lookup(ctx: AppContext, source: str, target: str, config: str | None) -> tuple[str, bytes] | None:
    s = ctx.settings
    config = config or served_config(s, source, target)
    lkey = latest_key(s.model, s.model_revision, config, source, target)
    script = ctx.scripts.get("latest")
    if script is None:
        script = ctx.scripts["latest"] = ctx.redis.register_script(_LATEST)
    found = await ctx.gate.run("bridge_lookup", lambda: script(keys=[lkey]))
    if not found:
        return None
    key, raw = found
    return (key.decode() if isinstance(key, bytes) else key), (raw.encode() if isinstance(raw, str) else raw)


async def latest(ctx: AppContext, source: str, target: str, config: str | None = None) -> dict[str, Any] | None:
    """The published ranking for (served model, configuration, source, target), or None; `config` defaults to
    the configuration `auto` serves. Raises RedisUnavailable."""
    found = await _lookup(ctx, source, target, config)
    if found is None:
        return None
    key, raw = found
    out = json.loads(raw)
    out["cache_key"] = key
    return out
