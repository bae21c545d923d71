"""Does the analyzer compute rankings with the method configuration this gateway looks them up under?

Reads the analyzer's published configuration (`services.common.served`), at most once every CHECK_TTL_S per
process, and compares it with the gateway's own. `/ready`, `GET /bridges` and `auto` answers carry the result.
"""

from __future__ import annotations

import json
import time
from typing import Any

from services.common import served

from ..deps import AppContext

CHECK_TTL_S = 5.0

_memo: dict[int, tuple[float, dict[str, Any]]] = {}


async def agreement(ctx: AppContext) -> dict[str, Any]:
    """served.compare of the gateway (me) and the last analyzer that started (them). Raises Redis errors."""
    hit = _memo.get(id(ctx))
    now = time.monotonic()
    if hit is not None and now - hit[0] < CHECK_TTL_S:
        return hit[1]
    raw = await ctx.redis.get(served.key(ctx.settings, "analyzer"))
    theirs = json.loads(raw) if raw else None
    mine = served.announcement(ctx.settings, "gateway")
    out = served.compare(mine, theirs, me="gateway", them="analyzer")
    _memo[id(ctx)] = (now, out)
    return out


async def mismatch_warning(ctx: AppContext) -> str | None:
    """The warning an `auto` answer carries when the two configurations differ (None when they agree, when the
    analyzer has published nothing, or when Redis cannot say)."""
    try:
        out = await agreement(ctx)
    except Exception:
        return None
    return out["detail"] if out["agree"] is False else None
