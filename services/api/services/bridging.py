"""Which bridge a translation uses: explicit, none, or auto (cache hit, else a labelled fallback + one job).

A cache miss never computes inline (conventions.md): it serves the fallback at once and enqueues one analysis
for the pair. "One" holds however many requests miss together: only the request that wins a Redis `SET NX`
lock calls `submit_analysis` (whose content-hash job id is a second guard). The lock lives
`AUTO_LOCK_TTL_S`, so a failing analysis is not resubmitted by every request either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from bridgex.languages import normalize_code
from bridgex.typology import nearest_candidate

from services.common import redis_keys
from services.common.analysis import AnalysisRequest, InvalidAnalysisRequest, served_config, submit_analysis
from services.common.bridges import served_demos, served_of
from services.common.jobs import AUTO_OWNER, JobRecord

from ..core.config import ApiSettings
from ..core.redis import RedisUnavailable
from ..deps import AppContext
from . import bridge_cache, config_check
from .validation import AUTO, NONE
from .weights import stale_note, unverified_note

log = logging.getLogger("bridgex.api")

AUTO_LOCK_TTL_S = 300
SUBMIT_TIMEOUT_S = 5.0


@dataclass
class BridgeChoice:
    code: str | None
    source: str  # explicit | cache | fallback | none
    cache_key: str | None = None
    analysis_job: str | None = None
    warnings: list[str] = field(default_factory=list)
    reason: str | None = None
    demo_words: list[str] | None = None  # the demonstration words the analysis measured, served the same
    demo_choice: str = "frequent"  # how they were chosen (DECISION demo_choice)


@lru_cache(maxsize=4096)
def _nearest(source: str, target: str, candidates: tuple[str, ...]) -> str | None:
    return nearest_candidate(source, target, list(candidates))


def warm_typology(settings: ApiSettings) -> None:
    """Load the URIEL vectors once at start (best effort) so the first fallback is fast."""
    if settings.fallback_bridge or settings.fallback_policy != "typology":
        return
    try:
        _nearest("en", "fr", ("de", "it"))
    except Exception as exc:
        log.warning("typology warm-up failed (fallbacks will retry): %s", exc)


async def fallback_bridge(ctx: AppContext, source: str, target: str) -> tuple[str | None, str | None]:
    """(code, warning): the configured fallback bridge, else direct translation (policy "none", the default:
    an unvalidated bridge may be worse than none), else the typology-nearest candidate."""
    s = ctx.settings
    if s.fallback_bridge:
        fb = normalize_code(s.fallback_bridge)
        if fb not in (source, target):
            return fb, None
    if s.fallback_policy == "none":
        return None, None
    cands = tuple(c for c in (normalize_code(c) for c in s.candidates) if c not in (source, target))
    if not cands:
        return None, "no fallback candidate differs from source and target; translated without a bridge"
    try:
        code = await asyncio.to_thread(_nearest, source, target, cands)
    except Exception as exc:  # typology data missing for a language: still answer, directly
        log.warning("typology fallback failed for %s-%s: %s", source, target, exc)
        return None, f"typology fallback unavailable ({exc}); translated without a bridge"
    return code, None


def lock_key(ctx: AppContext, source: str, target: str, config: str) -> str:
    s = ctx.settings
    return redis_keys.auto_lock(s.model, s.model_revision, config, source, target)


def failure_note(failure: dict, source: str, target: str) -> str:
    """One sentence on a remembered failure: what went wrong and when `auto` tries again."""
    retry_at = datetime.fromtimestamp(float(failure.get("retry_at", 0)), UTC).isoformat(timespec="seconds")
    return (
        f"the analysis of {source}->{target} failed {failure.get('attempts', 1)} time(s), last: "
        f"{failure.get('error')}; auto retries after {retry_at} (POST /analyze retries now)"
    )


async def enqueue_once(ctx: AppContext, source: str, target: str, request_id: str) -> tuple[str | None, str | None]:
    """Submit one analysis for the pair unless another request already did (SET NX) or the last one failed
    recently (backoff). Returns (job id when known, warning). Raises RedisUnavailable."""
    s = ctx.settings
    config = served_config(s, source, target)
    failure = await ctx.gate.run_sync(
        "bridge_lookup", lambda: ctx.failures.get(s.model, s.model_revision, config, source, target)
    )
    if failure is not None and float(failure.get("retry_at", 0)) > time.time():
        return failure.get("job_id"), failure_note(failure, source, target)
    key = lock_key(ctx, source, target, config)
    won = await ctx.gate.run("auto_lock", lambda: ctx.redis.set(key, "pending", nx=True, ex=AUTO_LOCK_TTL_S))
    if not won:
        holder = await ctx.gate.run("auto_lock", lambda: ctx.redis.get(key))
        return (holder if holder and holder != "pending" else None), None

    def submit() -> tuple[JobRecord, bool]:
        ctx.metrics.analysis_submits.inc()
        req = AnalysisRequest(source=source, target=target)
        # rerun_succeeded: a finished job whose ranking is not in the cache (deleted or evicted) is recomputed
        return submit_analysis(
            req,
            settings=ctx.settings,
            redis=ctx.redis_sync,
            celery_app=ctx.celery,
            request_id=request_id,
            rerun_succeeded=True,
            owner=AUTO_OWNER,
        )

    try:
        rec, created = await asyncio.wait_for(ctx.gate.run_sync("submit", submit), SUBMIT_TIMEOUT_S)
    except BaseException:
        await ctx.gate.run("auto_lock", lambda: ctx.redis.delete(key))
        raise
    if created:
        ctx.metrics.analysis_enqueued.inc()
    await ctx.gate.run("auto_lock", lambda: ctx.redis.set(key, rec.id, xx=True, keepttl=True))
    note = (
        None
        if failure is None
        else (f"the last analysis of {source}->{target} failed ({failure.get('error')}); retrying it as job {rec.id}")
    )
    return rec.id, note


async def choose(
    ctx: AppContext,
    bridge: str,
    source: str,
    target: str,
    *,
    use_cache: bool,
    request_id: str,
    prefetched: bridge_cache.Prefetch | None = None,
) -> BridgeChoice:
    """Resolve the request's bridge (already validated: "auto", "none" or a code). `prefetched`: the lookup
    already read with the rate limit (used when it is of this pair)."""
    if bridge == NONE:
        return BridgeChoice(None, "none")
    if bridge != AUTO:
        return BridgeChoice(bridge, "explicit")
    try:
        served_config(ctx.settings, source, target)
    except InvalidAnalysisRequest as exc:  # e.g. every candidate is a side of the pair: nothing to analyse
        return BridgeChoice(
            None, "fallback", reason=f"no analysis is possible for {source}->{target} ({exc}); translated directly"
        )
    warnings: list[str] = []
    stale: str | None = None
    unverified: str | None = None
    if use_cache:
        try:
            ranking = await bridge_cache.latest(ctx, source, target, prefetched=prefetched)
        except RedisUnavailable:
            ranking = None
            warnings.append(
                "bridge cache unavailable (Redis is down): using the fallback bridge; no analysis was enqueued"
            )
            use_cache = False
        if ranking is not None:
            current = await ctx.weights.current()
            stale = stale_note(ranking, current, source, target)
            if not stale:
                allow = ctx.settings.allow_unverified_worker
                unverified = unverified_note(ranking, current, ctx.weights.state, source, target, allow=allow)
        if stale:  # measured on other weights: treated as a miss (the analysis below is for these weights)
            warnings.append(stale)
        elif unverified:  # the worker's weights are not known: not served either; an analysis would not help
            warnings.append(unverified)
        elif ranking is not None:
            served, reason = served_of(ranking)
            if served in (source, target):  # a ranking can never serve a side of the pair; be safe anyway
                served, reason = None, f"the published bridge {served!r} is a side of the pair"
            words, how = served_demos(ranking)
            key = ranking.get("cache_key")
            return BridgeChoice(served, "cache", cache_key=key, reason=reason, demo_words=words, demo_choice=how)
    code, warn = await fallback_bridge(ctx, source, target)
    if warn:
        warnings.append(warn)
    meanwhile = (
        f"fallback bridge {code}" if code else "translated directly until an analysis publishes a measured bridge"
    )
    when = "for the weights the worker serves" if stale else "yet"
    reason = f"{source}->{target} is not analysed {when}: {meanwhile}"
    if unverified:
        meanwhile = f"fallback bridge {code}" if code else "translated directly"
        reason = f"{source}->{target} has a measured bridge, not served beside an unverified worker: {meanwhile}"
    choice = BridgeChoice(code, "fallback", warnings=warnings, reason=reason)
    if use_cache and not unverified:  # a miss (not a bypass, not Redis down): start the analysis that fills the cache
        mismatch = await config_check.mismatch_warning(ctx)
        if mismatch:  # the analysis enqueued below would publish under the analyzer's configuration
            warnings.append(mismatch)
        try:
            choice.analysis_job, note = await enqueue_once(ctx, source, target, request_id)
            if note:
                warnings.append(note)
        except RedisUnavailable:
            warnings.append("Redis became unavailable: no analysis was enqueued")
        except Exception as exc:
            log.warning("could not enqueue analysis for %s-%s: %s", source, target, exc)
            warnings.append(
                f"could not enqueue an analysis for this pair ({type(exc).__name__}); POST /analyze to start one"
            )
    return choice
