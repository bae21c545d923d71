"""Hot-path read of the bridge cache on the gateway's async Redis client.

`services.common.bridges.BridgeStore` owns the format, every write (publish, delete) and the matrix view.
This runs the same read (`bridges.LATEST_SCRIPT`, `latest_found`, `decode_ranking`) on the async client, in
one round trip and without a thread-pool hop: cached
GET /bridges/{s}/{t} and auto-bridge lookups are the gateway's most frequent Redis reads.
"""

from __future__ import annotations

from typing import Any

from services.common import redis_keys as keys
from services.common.analysis import InvalidAnalysisRequest, served_config
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
    if found is None:
        return None
    key, raw = found
    hit = _decoded.get(key)
    if hit is not None and hit[0] == raw:  # the same stored bytes: parsed once per process
        return dict(hit[1])
    ranking = decode_ranking(key, raw)
    if len(_decoded) >= DECODED_MAX:
        _decoded.clear()
    _decoded[key] = (raw, ranking)
    return dict(ranking)


DECODED_MAX = 4096
_decoded: dict[str, tuple[bytes, dict[str, Any]]] = {}
"""Parsed rankings by cache key, with the bytes they were parsed from: `auto` reads the same ranking on every
request, and a real one (per-layer scores, dev outcomes, the decision, demonstrations) is tens of KB of JSON.
Callers get a shallow copy and only read the nested values."""


def served_pairs(ctx: AppContext, config: str | None = None) -> list[dict[str, Any]]:
    """Published pairs (BridgeStore.pairs rows) of the served model: of one configuration when `config` is
    given, else each pair under the configuration `auto` serves for it (the served one differs per pair only by
    its candidates). Blocking (the sync client): run it through `ctx.gate.run_sync`."""
    s = ctx.settings
    if config is not None:
        return ctx.bridges.pairs(s.model, s.model_revision, config)
    out: list[dict[str, Any]] = []
    for fp in ctx.bridges.configs(s.model, s.model_revision):
        out += [
            p for p in ctx.bridges.pairs(s.model, s.model_revision, fp) if _served(ctx, p["source"], p["target"]) == fp
        ]
    return sorted(out, key=lambda p: (p["source"], p["target"]))


def _served(ctx: AppContext, source: str, target: str) -> str | None:
    try:
        return served_config(ctx.settings, source, target)
    except InvalidAnalysisRequest:
        return None
