"""/analyze submission with Idempotency-Key, and job reads, over the shared JobStore and submit_analysis.

Redis down -> 503 (there is nothing to record a job in); broker down -> 503 (submit_analysis leaves a failed
record that a retry re-runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json

from services.common import redis_keys
from services.common.analysis import InvalidAnalysisRequest, submit_analysis
from services.common.jobs import AUTO_OWNER, JobRecord, JobState

from ..core.errors import ApiError, bad_input, dependency_down
from ..core.redis import RedisUnavailable
from ..core.security import Principal
from ..deps import AppContext
from ..schemas.jobs import AnalyzeRequest, JobResponse

IDEMPOTENCY_TTL_S = 24 * 3600
SUBMIT_TIMEOUT_S = 10.0


def job_response(rec: JobRecord) -> JobResponse:
    return JobResponse(**rec.model_dump(exclude={"owners"}), location=f"/jobs/{rec.id}")


def _redis_down(exc: RedisUnavailable) -> ApiError:
    return dependency_down("redis", f"job storage is unavailable: {exc}")


async def submit(
    ctx: AppContext, req: AnalyzeRequest, principal: Principal, request_id: str, idempotency_key: str | None
) -> JobRecord:
    idem = None
    body_fp = hashlib.sha256(req.model_dump_json().encode()).hexdigest()[:32]
    claim = json.dumps({"job": None, "fp": body_fp})
    claimed = False
    try:
        if idempotency_key:
            # The key is claimed for this body (SET NX) before anything is submitted, so that concurrent requests
            # with one key, through any gateway, agree on one body: the others with another body are refused. A
            # request with the same body while the first still submits submits too: the same job (content hash).
            idem = redis_keys.idempotency(principal.key_id, idempotency_key)
            claimed = bool(
                await ctx.gate.run("idempotency", lambda: ctx.redis.set(idem, claim, nx=True, ex=IDEMPOTENCY_TTL_S))
            )
            raw = None if claimed else await ctx.gate.run("idempotency", lambda: ctx.redis.get(idem))
            if raw:
                seen = json.loads(raw)
                if seen.get("fp") != body_fp:
                    raise ApiError(
                        422,
                        "idempotency_key_reused",
                        "this Idempotency-Key was already used with a different request body; "
                        "use a new key for a new request",
                    )
                if seen.get("job"):
                    rec = await ctx.gate.run_sync("jobs", lambda: ctx.jobs.get(seen["job"]))
                    if rec is not None:
                        return rec  # the key is per principal, so this principal already owns the job
        try:
            rec, _created = await asyncio.wait_for(
                ctx.gate.run_sync(
                    "submit",
                    lambda: submit_analysis(
                        req,
                        settings=ctx.settings,
                        redis=ctx.redis_sync,
                        celery_app=ctx.celery,
                        request_id=request_id,
                        force=req.force,
                        owner=principal.key_id,
                    ),
                ),
                SUBMIT_TIMEOUT_S,
            )
        except InvalidAnalysisRequest as exc:
            await _release(ctx, idem, claim, claimed)
            raise bad_input(str(exc)) from exc
        except (RedisUnavailable, ApiError):
            raise
        except TimeoutError as exc:
            await _release(ctx, idem, claim, claimed)
            raise dependency_down(
                "broker",
                f"the job could not be enqueued within {SUBMIT_TIMEOUT_S:.0f}s (broker slow or down); retry later",
            ) from exc
        except Exception as exc:  # kombu/celery errors: the broker is down
            await _release(ctx, idem, claim, claimed)
            raise dependency_down(
                "broker", f"the job could not be enqueued: {type(exc).__name__}: {exc}. Retry later"
            ) from exc
        if idem:
            value = json.dumps({"job": rec.id, "fp": body_fp})
            await ctx.gate.run("idempotency", lambda: ctx.redis.set(idem, value, ex=IDEMPOTENCY_TTL_S))
        await ctx.usage.analysis(principal)  # accepted (an Idempotency-Key replay returned above, uncounted)
        return rec
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc


async def _release(ctx: AppContext, idem: str | None, claim: str, claimed: bool) -> None:
    """Give back an Idempotency-Key claimed for a request that created nothing (refused, broker down), so the
    key can be used again; best effort (the claim expires anyway)."""
    if not (idem and claimed):
        return

    async def release() -> None:
        if await ctx.redis.get(idem) == claim:
            await ctx.redis.delete(idem)

    with contextlib.suppress(RedisUnavailable):
        await ctx.gate.run("idempotency", release)


def is_done_with_result(rec: JobRecord) -> bool:
    return rec.state == JobState.succeeded and rec.result is not None


def _visible(rec: JobRecord | None, principal: Principal) -> bool:
    """Jobs are scoped: a principal sees the jobs it submitted; admin (and open mode) sees every job."""
    return rec is not None and (principal.has("admin") or principal.key_id in rec.owners)


def _not_found(job_id: str) -> ApiError:
    # the same answer for an unknown job and someone else's, so ids cannot be probed
    return ApiError(
        404,
        "job_not_found",
        f"no job {job_id[:80]!r} visible to this key (never created, expired, "
        'or submitted by another key); POST /analyze {"source": ..., "target": ...} starts one',
    )


async def get(ctx: AppContext, job_id: str, principal: Principal) -> JobRecord:
    try:
        rec = await ctx.gate.run_sync("jobs", lambda: ctx.jobs.get(job_id))
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc
    if not _visible(rec, principal):
        raise _not_found(job_id)
    return rec  # type: ignore[return-value]


async def cancel(ctx: AppContext, job_id: str, principal: Principal) -> JobRecord:
    """Only a job's sole owner (or admin) may cancel it: a job shared with other callers, or enqueued by
    `auto`, is someone else's work too."""
    rec = await get(ctx, job_id, principal)
    others = [o for o in rec.owners if o != principal.key_id]
    if others and not principal.has("admin"):
        who = "the auto bridge (it serves every user)" if others == [AUTO_OWNER] else f"{len(others)} other caller(s)"
        raise ApiError(
            409, "job_shared", f"job {job_id!r} was also requested by {who}; only an admin key can cancel it"
        )
    try:
        out = await ctx.gate.run_sync("jobs", lambda: ctx.jobs.request_cancel(job_id))
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc
    if out is None:
        raise _not_found(job_id)
    return out


async def list_jobs(ctx: AppContext, limit: int, state: JobState | None, principal: Principal) -> list[JobRecord]:
    owner = None if principal.has("admin") else principal.key_id
    try:
        return await ctx.gate.run_sync("jobs", lambda: ctx.jobs.list(limit=limit, state=state, owner=owner))
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc
