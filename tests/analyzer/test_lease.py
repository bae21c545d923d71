"""The job lease (services.analyzer.tasks.Lease, a redis-py `Lock` renewed by a heartbeat) against a real Redis:
only its holder's token releases or renews it, an expired one goes to the next worker, the heartbeat keeps it
past its timeout, and a worker that lost it notices and leaves the new holder's lease alone."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from services.analyzer import tasks
from services.analyzer.config import AnalyzerSettings
from services.analyzer.tasks import Lease
from services.common import redis_keys
from services.common.analysis import AnalysisRequest
from services.common.jobs import JobState, JobStore

TTL = 2.0  # heartbeat every TTL/3: margin for a loaded test machine

# another process with its own connection and token: try to release, extend and renew the lease
_INTRUDER = """
import json, sys
import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

url, key = sys.argv[1], sys.argv[2]
lock = Lock(redis.Redis.from_url(url), key, timeout=30, thread_local=False)
out = {"acquired": lock.acquire(blocking=False, token="intruder")}
for name, call in (("release", lock.release), ("extend", lambda: lock.extend(30)), ("reacquire", lock.reacquire)):
    lock.local.token = b"intruder"  # as if it held the lease once (a failed release forgets the token)
    try:
        call()
        out[name] = "done"
    except LockNotOwnedError:
        out[name] = "not owned"
print(json.dumps(out))
"""


def _stop_heartbeat(lease: Lease) -> None:
    """What `kill -9` (or a process stalled past the lease) does to the heartbeat, without a release."""
    lease._stop.set()
    assert lease._thread is not None
    lease._thread.join(5)


def test_key_comes_from_redis_keys(r: redis.Redis) -> None:
    assert Lease(r, "j1", TTL).key == redis_keys.job_lease("j1")


def test_other_process_or_token_cannot_release_or_extend(r: redis.Redis, redis_url: str) -> None:
    held = Lease(r, "j1", 5)
    assert held.acquire()
    try:
        out = subprocess.run(
            [sys.executable, "-c", _INTRUDER, redis_url, held.key], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {
            "acquired": False,
            "release": "not owned",
            "extend": "not owned",
            "reacquire": "not owned",
        }
        assert r.get(held.key) == held.token.encode() and 0 < r.pttl(held.key) <= 5000  # not extended either

        # another worker of this process (its own Lease and token): busy, and its release deletes nothing
        other = Lease(redis.Redis.from_url(redis_url), "j1", 5)
        assert not other.acquire()
        other.release()
        assert r.get(held.key) == held.token.encode()
    finally:
        held.release()
    assert r.get(held.key) is None and not held.lost.is_set()


def test_heartbeat_keeps_the_lease_past_its_timeout(r: redis.Redis) -> None:
    held = Lease(r, "j2", TTL)
    assert held.acquire()
    time.sleep(3 * TTL)  # three timeouts: without the heartbeat the key is long gone
    assert r.get(held.key) == held.token.encode()
    assert 0 < r.pttl(held.key) <= TTL * 1000  # renewed to the lease, not grown past it
    assert not Lease(r, "j2", TTL).acquire()
    held.release()
    assert r.get(held.key) is None and not held.lost.is_set()
    nxt = Lease(r, "j2", TTL)
    assert nxt.acquire()  # released: the next worker takes it at once
    nxt.release()


def test_expired_lease_goes_to_a_second_worker(r: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    first = Lease(r, "j3", TTL)
    assert first.acquire()
    _stop_heartbeat(first)
    second = Lease(r, "j3", TTL)
    assert not second.acquire()  # still held
    time.sleep(TTL + 0.5)
    assert second.acquire()  # expired: the second worker takes the job
    try:
        with caplog.at_level(logging.WARNING, logger="services.analyzer.tasks"):
            first.release()  # the first worker comes back: its release must not free the second's lease
        assert first.lost.is_set() and "lost before its release" in caplog.text
        assert r.get(second.key) == second.token.encode()
    finally:
        second.release()
    assert r.get(second.key) is None


def test_a_running_worker_notices_it_lost_the_lease(r: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    first = Lease(r, "j4", TTL)
    with caplog.at_level(logging.WARNING, logger="services.analyzer.tasks"):
        assert first.acquire()
        # the key expired under it (Redis or the process stalled) and another worker took the job
        r.delete(first.key)
        second = Lease(r, "j4", 30)
        assert second.acquire()
        assert first.lost.wait(TTL * 2), "the heartbeat did not notice the lost lease"
        assert "lease" in caplog.text and "lost" in caplog.text
        first.release()
    assert r.get(second.key) == second.token.encode() and r.pttl(second.key) > 25_000  # untouched
    second.release()


def test_run_job_is_busy_while_another_worker_holds_the_lease(
    r: redis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = AnalyzerSettings(
        redis_url=redis_url, job_lease_s=30, home=tmp_path, data_dir=tmp_path / "data", _env_file=None
    )
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    monkeypatch.setattr(tasks, "_redis", r)
    held_during_run: list[bytes | None] = []

    def run_analysis(spec: object, ctx: object, redis: redis.Redis) -> dict:
        held_during_run.append(redis.get(redis_keys.job_lease("j5")))
        return {"best": None}

    monkeypatch.setattr(tasks.stages, "run_analysis", run_analysis)
    store = JobStore(r)
    store.create("j5", AnalysisRequest(source="en", target="fr").normalized(settings))
    other = Lease(r, "j5", 30)
    assert other.acquire()
    try:
        outcome, rec = tasks.run_job("j5")
        assert outcome == "busy" and rec is not None and rec.state == JobState.queued and not held_during_run
        assert store.get("j5").attempts == 0 and r.get(other.key) == other.token.encode()
    finally:
        other.release()
    # free: this worker takes the lease, runs the job under it and gives it back
    outcome, rec = tasks.run_job("j5")
    assert outcome == "done" and rec is not None and rec.state == JobState.succeeded and rec.attempts == 1
    assert len(held_during_run) == 1 and held_during_run[0] not in (None, other.token.encode())
    assert r.get(redis_keys.job_lease("j5")) is None
