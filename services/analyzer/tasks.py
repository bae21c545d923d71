"""Celery tasks of the analyzer. `bridgex.analyze_pair` runs a whole job; the per-stage tasks exist for
operators (precompute the profiles of a model, rebuild one probe set) and call the same stage functions.

Exactly once: the job record (ours) is the truth. A redelivered task (acks_late + reject_on_worker_lost after
a `kill -9`) finds the record `running` from a dead worker and resumes (artifacts already written are reused;
`attempts` counts the runs); a record already `succeeded` returns at once. A lease key with a heartbeat keeps
two live workers from running one job at the same time (a visibility timeout shorter than the job).

Shutdown (SIGTERM from Kubernetes or compose, Ctrl-C): Celery's warm shutdown would let the running job go on to
its end, which outlasts any grace period, and a SIGKILL at the end of it leaves the message unacked until the
visibility timeout. Instead the job stops at its next check (between batches, layers, languages, dev looks),
its record goes back to `queued` (stage "handed back"), the lease is released and the message is requeued at
the head of the queue (`Reject(requeue=True)`): another analyzer (or this one's successor) resumes it at once,
reusing every artifact already written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

import redis
from bridgex.cancel import Cancelled
from bridgex.fingerprint import config_fingerprint
from celery import Task
from celery.exceptions import Reject
from celery.signals import worker_shutting_down
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from services.common import redis_keys
from services.common.analysis import AnalysisSpec, alias_after_data
from services.common.bridges import FailureStore
from services.common.jobs import TERMINAL, JobRecord, JobState, JobStore

from . import stages
from .celery_app import app
from .config import get_settings

log = logging.getLogger(__name__)

_redis: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(
            get_settings().redis_url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
        )
    return _redis


def lease_seconds() -> int:
    return max(2, get_settings().job_lease_s)


class Lease:
    """The job's lease: a redis-py `Lock` on `redis_keys.job_lease` (`SET NX PX` with our token; release and
    renewal are Lua scripts that act only while the key still holds that token), renewed by a heartbeat thread
    while the task runs. Each beat is `Lock.reacquire`, which resets the TTL to the whole lease (`extend` adds to
    what is left, so beats that come early would grow the lease past `ttl`).

    A worker whose lease was lost (it expired while Redis or this process stalled, and another worker may have
    taken it) notices at its next beat (`LockNotOwnedError`): it logs that, sets `lost` and stops renewing; the
    run goes on, as the job record decides what counts (`JobStore.start` / `succeed`), and its release leaves
    the other worker's lease alone."""

    def __init__(self, r: redis.Redis, job_id: str, ttl: float) -> None:
        self.ttl = ttl
        # thread_local=False: the token set by `acquire` (task thread) must be seen by the heartbeat thread
        self.lock = Lock(r, redis_keys.job_lease(job_id), timeout=ttl, blocking=False, thread_local=False)
        self.token = f"{os.getpid()}:{uuid.uuid4().hex}"
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def key(self) -> str:
        return self.lock.name

    def acquire(self) -> bool:
        if not self.lock.acquire(blocking=False, token=self.token):
            return False
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.key}", daemon=True)
        self._thread.start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.lock.reacquire()
            except LockNotOwnedError:  # said before `lost` is set: whoever waits on it finds the log line
                log.warning(
                    "job lease %s lost (it expired; another worker may run the job now): this run goes on, the "
                    "job record decides",
                    self.key,
                )
                self.lost.set()
                return
            except redis.RedisError as e:  # the next beat tries again; the lease lasts ttl
                log.warning("lease heartbeat failed: %s", e)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.lock.release()
        except LockNotOwnedError:
            log.warning("job lease %s was lost before its release; the key (if any) is another worker's", self.key)
            self.lost.set()
        except LockError:  # never acquired: nothing to release
            pass
        except redis.RedisError as e:
            log.warning("lease release failed (expires in %ss): %s", self.ttl, e)


@worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    """Runs inside the signal handler (the task's own thread, solo pool): only set the flag the job polls."""
    stages.SHUTDOWN.set()


def _request_id(task: Task) -> str | None:
    req = task.request
    return getattr(req, "request_id", None) or (getattr(req, "headers", None) or {}).get("request_id")


def run_job(
    job_id: str, request: dict[str, Any] | None = None, *, force: bool = False, request_id: str | None = None
) -> tuple[str, JobRecord | None]:
    """The job lifecycle around `stages.run_analysis`. Returns (outcome, record); outcome is one of
    'done', 'skipped' (already terminal), 'busy' (another live worker holds the lease), 'missing', 'handed_back'
    (this process is shutting down: the job is queued again for the next analyzer)."""
    settings = get_settings()
    r = redis_client()
    store = JobStore(r, ttl_s=settings.job_ttl_s)
    rec = store.get(job_id)
    if rec is None:
        if request is None:
            log.error("job %s: no record and no request; dropping", job_id)
            return "missing", None
        rec, _ = store.create(job_id, request, request_id=request_id)  # record expired: recreate it
    if rec.state in TERMINAL:
        log.info("job %s already %s; nothing to do", job_id, rec.state.value)
        return "skipped", rec
    if stages.SHUTDOWN.is_set():  # received while shutting down: back to the queue, the record untouched
        return "handed_back", rec
    lease = Lease(r, job_id, lease_seconds())
    if not lease.acquire():
        return "busy", rec
    try:
        if store.cancel_requested(job_id):
            return "done", store.cancelled(job_id)
        rec = store.start(job_id)
        if rec.state != JobState.running:
            return "skipped", rec
        if rec.attempts > 1:
            log.warning("job %s: attempt %d (resuming after a lost worker)", job_id, rec.attempts)
        ctx = stages.JobContext(
            job_id=job_id, store=store, settings=settings, request_id=request_id or rec.request_id, force=force
        )
        req = rec.request or request or {}
        try:
            result = stages.run_analysis(AnalysisSpec.from_request(req), ctx, redis=r)
        except Cancelled as e:
            if ctx.handing_back and not store.cancel_requested(job_id):
                log.warning(
                    "job %s handed back (%s: this analyzer is shutting down); the next analyzer resumes it",
                    job_id,
                    e,
                )
                return "handed_back", store.hand_back(job_id)
            log.info("job %s cancelled: %s", job_id, e)
            return "done", store.cancelled(job_id)
        except stages.AnalysisFailed as e:
            log.warning("job %s failed: %s", job_id, e)
            return "done", _failed(store, r, job_id, req, str(e))
        except redis.RedisError:
            raise  # analyze_pair retries later; the record is not reachable to say anything
        except Exception as e:
            log.exception("job %s crashed", job_id)
            return "done", _failed(
                store,
                r,
                job_id,
                req,
                f"internal error in the analyzer ({type(e).__name__}: {e}); see the analyzer log, then resubmit",
            )
        alias_after_data(store, settings, job_id, req)
        return "done", store.succeed(job_id, result)
    finally:
        lease.release()


def _failed(store: JobStore, r: redis.Redis, job_id: str, req: dict[str, Any], error: str) -> JobRecord:
    """Fail the job record and remember the failure for the pair, so `auto` retries only after a backoff."""
    settings = get_settings()
    rec = store.fail(job_id, error)
    alias_after_data(store, settings, job_id, req)
    if req.get("source") and req.get("target"):
        FailureStore(r, base_s=settings.analysis_retry_base_s, max_s=settings.analysis_retry_max_s).record(
            req.get("model") or settings.model,
            req.get("revision"),
            config_fingerprint(req),
            req["source"],
            req["target"],
            error=error,
            job_id=job_id,
        )
    return rec


@app.task(name="bridgex.analyze_pair", bind=True, max_retries=None, acks_late=True, reject_on_worker_lost=True)
def analyze_pair(self: Task, job_id: str, request: dict[str, Any] | None = None, force: bool = False) -> dict:
    """Profile -> probe set -> probe activations -> rank -> publish, for one job record."""
    started = time.monotonic()
    rid = _request_id(self)
    log.info("job %s received (request_id=%s, delivery %s)", job_id, rid, self.request.id)
    try:
        outcome, rec = run_job(job_id, request, force=force, request_id=rid)
    except redis.RedisError as e:
        # the job record is unreachable (Redis down): run again later; finished artifacts are reused
        log.warning("job %s: Redis unavailable (%s); retrying in 30s", job_id, e)
        raise self.retry(countdown=30, max_retries=20) from e
    if outcome == "handed_back":
        # acks_late: the message goes back to the head of the queue, with its lease released above
        raise Reject(f"job {job_id} handed back: the analyzer is shutting down", requeue=True)
    if outcome == "busy":
        # another live worker runs this job (the message came back after a visibility timeout): try later,
        # so that if that worker dies the job still finishes
        raise self.retry(countdown=lease_seconds(), max_retries=None)
    state = rec.state.value if rec is not None else "missing"
    log.info("job %s: %s (%s) in %.1fs", job_id, outcome, state, time.monotonic() - started)
    return {"job_id": job_id, "state": state}


@app.task(name="bridgex.profile_language", acks_late=True, reject_on_worker_lost=True)
def profile_language(language: str, force: bool = False) -> dict:
    """Compute (or reuse) the profile artifact of one language for the configured model."""
    return stages.profile_one(language, get_settings(), force=force)


@app.task(name="bridgex.build_probe_set", acks_late=True, reject_on_worker_lost=True)
def build_probe_set(request: dict[str, Any], force: bool = False) -> dict:
    """Build (or reuse) the probe set of a normalized request's pair; returns its path and hash."""
    return stages.probe_set_only(AnalysisSpec.from_request(request), get_settings(), force=force)


@app.task(name="bridgex.probe_activations", acks_late=True, reject_on_worker_lost=True)
def probe_activations(request: dict[str, Any], force: bool = False) -> dict:
    """Probe set + activations over the window layers for a normalized request; returns the artifact path."""
    return stages.activations_only(AnalysisSpec.from_request(request), get_settings(), force=force)


@app.task(name="bridgex.preview_analysis", acks_late=True, reject_on_worker_lost=True)
def preview_analysis(request: dict[str, Any]) -> dict:
    """The whole analysis (reusing artifacts), without a job record and without publishing the ranking."""
    ctx = stages.JobContext(settings=get_settings())
    return stages.run_analysis(AnalysisSpec.from_request(request), ctx, publish=False)
