"""Hot-path read of the bridge cache on the gateway's async Redis client.

`services.common.bridges.BridgeStore` owns the format, every write (publish, delete) and the matrix view.
This runs the same read (`bridges.LATEST_SCRIPT`, `latest_found`, `decode_ranking`) on the async client, in
one round trip and without a thread-pool hop: cached
GET /bridges/{s}/{t} and auto-bridge lookups are the gateway's most frequent Redis reads. A `/translate` with
bridge auto reads it in the rate limiter's round trip (`Prefetch`): one round trip per request instead of two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common import redis_keys as keys
from services.common.analysis import InvalidAnalysisRequest, served_config
from services.common.bridges import LATEST_SCRIPT, decode_ranking, latest_found

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline
    from starlette.requests import Request

    from ..deps import AppContext


async def latest_raw(ctx: AppContext, source: str, target: str, config: str | None = None) -> bytes | None:
    """The published ranking as stored (JSON bytes that already carry their `cache_key`), or None: GET
    /bridges/{s}/{t} answers with these bytes, never parsing and re-encoding the ranking."""
    found = await _lookup(ctx, source, target, config)
    return None if found is None else found[1]


def _latest_script(ctx: AppContext) -> Any:
    script = ctx.scripts.get("latest")
    if script is None:
        script = ctx.scripts["latest"] = ctx.redis.register_script(LATEST_SCRIPT)
    return script


def _latest_key(ctx: AppContext, source: str, target: str, config: str | None) -> str:
    s = ctx.settings
    return keys.bridge_latest(s.model, s.model_revision, config or served_config(s, source, target), source, target)


async def _lookup(ctx: AppContext, source: str, target: str, config: str | None) -> tuple[str, bytes] | None:
    lkey, script = _latest_key(ctx, source, target, config), _latest_script(ctx)
    return latest_found(await ctx.gate.run("bridge_lookup", lambda: script(keys=[lkey])))


@dataclass
class Prefetch:
    """The served ranking of (source, target), read in another round trip (the rate limiter's) before the request
    was validated; `latest` uses it only for the same pair. `done` stays False when the read did not happen or
    failed (a script not loaded after a Redis restart): `latest` then reads as usual."""

    source: str
    target: str
    key: str
    found: tuple[str, bytes] | None = None
    done: bool = False

    def queue(self, pipe: Pipeline, ctx: AppContext) -> None:
        pipe.evalsha(_latest_script(ctx).sha, 1, self.key)

    def holds(self, source: str, target: str) -> bool:
        """Whether the read was made, and for this pair."""
        return self.done and (self.source, self.target) == (source, target)

    def receive(self, replies: list[Any] | None) -> None:
        if replies and not isinstance(replies[0], Exception):
            self.found, self.done = latest_found(replies[0]), True


async def prefetch(request: Request, ctx: AppContext) -> Prefetch | None:
    """What a /translate body with bridge auto will look up (its JSON is already parsed: FastAPI reads the body
    before the dependencies), or None when it will not look anything up or the body is not plainly valid (the
    validation that follows answers it)."""
    from . import validation  # imported here: validation imports deps, which imports this module

    try:
        body = await request.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("use_cache") is False:
        return None
    bridge, source, target = body.get("bridge", validation.AUTO), body.get("source"), body.get("target")
    if not all(isinstance(v, str) for v in (bridge, source, target)):
        return None
    if not validation.is_auto(bridge) or validation.is_auto(source):
        return None
    try:
        source, target = validation.pair(source, target)
        return Prefetch(source, target, _latest_key(ctx, source, target, None))
    except Exception:  # any refusal is the validation's to report, with its message
        return None


async def latest(
    ctx: AppContext, source: str, target: str, config: str | None = None, prefetched: Prefetch | None = None
) -> dict[str, Any] | None:
    """The published ranking for (served model, configuration, source, target), or None; `config` defaults to
    the configuration `auto` serves. Raises RedisUnavailable."""
    if prefetched is not None and config is None and prefetched.holds(source, target):
        found = prefetched.found
    else:
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
