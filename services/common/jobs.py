"""Job records in Redis, owned by us rather than Celery (Celery reports PENDING for any id it never saw).

One JSON value per job under `bridgex:job:{id}`, a sorted set `bridgex:jobs` (score = creation time) for
listing, and a separate cancel flag `bridgex:job-cancel:{id}` so that the API setting the flag never races
with the task rewriting the record. Every state change is a WATCH/MULTI transaction, so a terminal state
(succeeded, failed, cancelled) is never overwritten by a late writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from services.common import redis_keys as keys

DEFAULT_TTL_S = 7 * 24 * 3600


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


TERMINAL = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})


class Progress(BaseModel):
    stage: str = "queued"
    current: int = 0
    total: int = 0
    percent: float = 0.0


class JobRecord(BaseModel):
    id: str
    state: JobState = JobState.queued
    progress: Progress = Field(default_factory=Progress)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    request: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    attempts: int = 0
    owners: list[str] = Field(
        default_factory=list,
        description="Principals (key ids) that submitted this job; "
        "AUTO_OWNER for the analyses `auto` enqueues. Scopes reads and cancels.",
    )


AUTO_OWNER = "system:auto"
HANDED_BACK = "handed back"
"""Progress stage of a queued job whose analyzer shut down mid-run (JobStore.hand_back)."""


def _now() -> datetime:
    return datetime.now(UTC)


class JobNotFound(KeyError):
    """The job id was never created (or its record expired)."""


class JobStore:
    """Synchronous (redis-py) store of job records; used by the gateway and inside Celery tasks."""

    def __init__(self, redis: redis.Redis, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    # --- keys ----------------------------------------------------------------------------------------
    @staticmethod
    def key(job_id: str) -> str:
        return keys.job(job_id)

    @staticmethod
    def cancel_key(job_id: str) -> str:
        return keys.job_cancel(job_id)

    @staticmethod
    def alias_key(job_id: str) -> str:
        return keys.job_alias(job_id)

    def alias(self, alias_id: str, job_id: str) -> None:
        """Make `alias_id` resolve to `job_id` (see services.common.analysis.alias_after_data)."""
        self.redis.set(self.alias_key(alias_id), job_id, ex=self.ttl_s)

    def in_flight(self, request_hash: str) -> JobRecord | None:
        """The queued or running job last submitted for a request (whatever its data hash), if any."""
        raw = self.redis.get(keys.job_inflight(request_hash))
        rec = None if raw is None else self.get(raw.decode() if isinstance(raw, bytes) else raw)
        return rec if rec is not None and rec.state in (JobState.queued, JobState.running) else None

    def claim_in_flight(self, request_hash: str, job_id: str) -> str | None:
        """Make `job_id` the in-flight job of a request in one atomic step (WATCH/MULTI), unless another job of
        the request is queued or running: then its id is returned and nothing changes. Two submitters of the
        same request whose data hashes differ can no longer both enqueue (issue 22, item 6)."""
        key = keys.job_inflight(request_hash)
        while True:
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    holder = raw.decode() if isinstance(raw, bytes) else raw
                    if holder and holder != job_id:
                        rec = self.get(holder)
                        if rec is not None and rec.state in (JobState.queued, JobState.running):
                            pipe.unwatch()
                            return holder
                    pipe.multi()
                    pipe.set(key, job_id, ex=self.ttl_s)
                    pipe.execute()
                    return None
                except redis.WatchError:
                    continue  # another submitter changed it in between: look again

    def release_in_flight(self, request_hash: str, job_id: str) -> None:
        """Drop the claim, if `job_id` still holds it (a claim taken for a job that was not enqueued)."""
        key = keys.job_inflight(request_hash)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                if (raw.decode() if isinstance(raw, bytes) else raw) == job_id:
                    pipe.multi()
                    pipe.delete(key)
                    pipe.execute()
                else:
                    pipe.unwatch()
            except redis.WatchError:
                pass  # someone else claimed it meanwhile: theirs now

    def resolve(self, job_id: str) -> str:
        """The job an id stands for: itself, or the job it is an alias of (when that record still exists)."""
        raw = self.redis.get(self.alias_key(job_id))
        target = raw.decode() if isinstance(raw, bytes) else raw
        return target if target and self.redis.exists(self.key(target)) else job_id

    # --- reads ---------------------------------------------------------------------------------------
    @staticmethod
    def _load(raw: bytes | str | None) -> JobRecord | None:
        return None if raw is None else JobRecord.model_validate_json(raw)

    def get(self, job_id: str) -> JobRecord | None:
        return self._load(self.redis.get(self.key(job_id)))

    def list(self, limit: int = 50, state: JobState | str | None = None, owner: str | None = None) -> list[JobRecord]:
        """Newest first, optionally only those `owner` submitted. Expired records are pruned from the index as
        they are found."""
        wanted = JobState(state) if state is not None else None
        out: list[JobRecord] = []
        start, page = 0, max(limit, 50)
        while len(out) < limit:
            ids = self.redis.zrevrange(keys.JOBS_INDEX, start, start + page - 1)
            if not ids:
                break
            ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
            raws = self.redis.mget([self.key(i) for i in ids])
            for job_id, raw in zip(ids, raws, strict=True):
                if raw is None:
                    self.redis.zrem(keys.JOBS_INDEX, job_id)
                    continue
                rec = self._load(raw)
                if (
                    rec is not None
                    and (wanted is None or rec.state == wanted)
                    and (owner is None or owner in rec.owners)
                ):
                    out.append(rec)
                    if len(out) >= limit:
                        break
            start += page
        return out

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.cancel_key(job_id)))

    # --- writes --------------------------------------------------------------------------------------
    def create(self, job_id: str, request: dict[str, Any], request_id: str | None = None) -> tuple[JobRecord, bool]:
        """SET NX: the same id is one job. Returns (record, created)."""
        rec = JobRecord(id=job_id, created_at=_now(), request=request, request_id=request_id)
        if self.redis.set(self.key(job_id), rec.model_dump_json(), nx=True, ex=self.ttl_s):
            self.redis.zadd(keys.JOBS_INDEX, {job_id: rec.created_at.timestamp()})
            return rec, True
        existing = self.get(job_id)
        if existing is None:  # expired between SET NX and GET: try once more
            return self.create(job_id, request, request_id)
        return existing, False

    def add_owner(self, job_id: str, owner: str) -> JobRecord | None:
        """Record that `owner` submitted this job too (idempotent). None for an unknown id."""

        def change(rec: JobRecord) -> JobRecord | None:
            if owner in rec.owners:
                return None
            rec.owners.append(owner)
            return rec

        try:
            return self._update(job_id, change)
        except JobNotFound:
            return None

    def _update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord | None:
        """Optimistic transaction: `change` returns the new record, or None to leave it as is."""
        key = self.key(job_id)

        def txn(pipe: redis.client.Pipeline) -> JobRecord | None:
            rec = self._load(pipe.get(key))
            if rec is None:
                raise JobNotFound(job_id)
            new = change(rec.model_copy(deep=True))
            if new is None:
                return rec
            pipe.multi()
            pipe.set(key, new.model_dump_json(), ex=self.ttl_s)
            return new

        return self.redis.transaction(txn, key, value_from_callable=True)

    def start(self, job_id: str) -> JobRecord:
        """Mark running (also on a redelivery after a dead worker) and count the attempt.

        A terminal record is returned unchanged: the caller must check `.state` before doing work.
        """

        def change(rec: JobRecord) -> JobRecord | None:
            if rec.state in TERMINAL:
                return None
            rec.state = JobState.running
            rec.started_at = rec.started_at or _now()
            rec.attempts += 1
            rec.error = None
            rec.progress = Progress(stage="starting", current=0, total=0, percent=rec.progress.percent)
            return rec

        return self._update(job_id, change)  # type: ignore[return-value]

    def hand_back(self, job_id: str) -> JobRecord | None:
        """A running job whose analyzer shuts down (SIGTERM) goes back to queued, its message to the queue: the
        next analyzer resumes it from its artifacts (`start` counts that run in `attempts`). Another state is
        returned unchanged; None for an unknown id."""

        def change(rec: JobRecord) -> JobRecord | None:
            if rec.state != JobState.running:
                return None
            rec.state = JobState.queued
            rec.progress = Progress(stage=HANDED_BACK, current=0, total=0, percent=rec.progress.percent)
            return rec

        try:
            return self._update(job_id, change)
        except JobNotFound:
            return None

    def progress(self, job_id: str, stage: str, current: int, total: int, percent: float | None = None) -> None:
        """Record the current stage; `percent` is overall job progress (defaults to current/total)."""

        def change(rec: JobRecord) -> JobRecord | None:
            if rec.state in TERMINAL:
                return None
            pct = percent if percent is not None else (100.0 * current / total if total else 0.0)
            pct = round(min(pct, 100.0), 2)
            rec.progress = Progress(stage=stage, current=current, total=total, percent=pct)
            return rec

        self._update(job_id, change)

    def succeed(self, job_id: str, result: dict[str, Any]) -> JobRecord:
        def change(rec: JobRecord) -> JobRecord | None:
            if rec.state in TERMINAL:
                return None
            rec.state = JobState.succeeded
            rec.finished_at = _now()
            rec.result = result
            rec.error = None
            rec.progress = Progress(stage="done", current=1, total=1, percent=100.0)
            return rec

        out = self._update(job_id, change)
        self.redis.delete(self.cancel_key(job_id))
        return out  # type: ignore[return-value]

    def fail(self, job_id: str, error: str) -> JobRecord:
        def change(rec: JobRecord) -> JobRecord | None:
            if rec.state in TERMINAL:
                return None
            rec.state = JobState.failed
            rec.finished_at = _now()
            rec.error = error
            return rec

        out = self._update(job_id, change)
        self.redis.delete(self.cancel_key(job_id))
        return out  # type: ignore[return-value]

    def cancelled(self, job_id: str) -> JobRecord:
        """The task saw the cancel flag (or the job was still queued): record the terminal state."""

        def change(rec: JobRecord) -> JobRecord | None:
            if rec.state in TERMINAL:
                return None
            rec.state = JobState.cancelled
            rec.finished_at = _now()
            rec.error = "cancelled on request"
            return rec

        out = self._update(job_id, change)
        self.redis.delete(self.cancel_key(job_id))
        return out  # type: ignore[return-value]

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Cooperative cancel. A queued job becomes cancelled at once (the task will skip it); a running job
        gets a flag that the task checks between batches and layers. Terminal jobs are returned unchanged.
        Returns None for an unknown id."""
        rec = self.get(job_id)
        if rec is None:
            return None
        if rec.state in TERMINAL:
            return rec
        self.redis.set(self.cancel_key(job_id), str(time.time()), ex=self.ttl_s)

        def change(r: JobRecord) -> JobRecord | None:
            if r.state != JobState.queued:
                return None
            r.state = JobState.cancelled
            r.finished_at = _now()
            r.error = "cancelled on request"
            return r

        try:
            return self._update(job_id, change)
        except JobNotFound:
            return None

    def reset(
        self,
        job_id: str,
        *,
        only_if: frozenset[JobState] | set[JobState] | None = None,
        request_id: str | None = None,
    ) -> JobRecord | None:
        """Back to queued (force, or a retry of a failed/cancelled job). With `only_if`, reset only from those
        states and return None otherwise, so that two concurrent submitters enqueue once."""
        self.redis.delete(self.cancel_key(job_id))
        did: list[bool] = []

        def change(rec: JobRecord) -> JobRecord | None:
            did.clear()
            if only_if is not None and rec.state not in only_if:
                return None
            did.append(True)
            return JobRecord(
                id=rec.id,
                created_at=_now(),
                request=rec.request,
                request_id=request_id or rec.request_id,
                owners=rec.owners,
            )

        rec = self._update(job_id, change)
        if only_if is not None and not did:
            return None
        if rec is not None:
            self.redis.zadd(keys.JOBS_INDEX, {job_id: rec.created_at.timestamp()})
        return rec
