"""Hot-path read of the bridge cache on the gateway's async Redis client.

`services.common.bridges.BridgeStore` owns the format and every write (publish, delete) and the matrix view;
this reads what it publishes (the same `bridgex.cache_keys` keys and JSON value, `cache_key` added as
`BridgeStore.get` does) without a thread-pool hop per request: cached GET /bridges/{s}/{t} and auto-bridge
lookups are the gateway's most frequent Redis reads. Raises RedisUnavailable.
"""

from __future__ import annotations

import json
from typing import Any

from bridgex.cache_keys import latest_key

from ..deps import AppContext


async def latest(ctx: AppContext, source: str, target: str) -> dict[str, Any] | None:
    s = ctx.settings
    lkey = latest_key(s.model, s.model_revision, source, target)
    key = await ctx.gate.run("bridge_lookup", lambda: ctx.redis.get(lkey))
    if key is None:
        return None
    raw = await ctx.gate.run("bridge_lookup", lambda: ctx.redis.get(key))
    if raw is None:
        return None
    out = json.loads(raw)
    out["cache_key"] = key
    return out
