"""The analyzer's shutdown path (services.analyzer.tasks): Celery's `worker_shutting_down` sets
`stages.SHUTDOWN`, the running job stops at its next check, its record goes back to `queued` (stage "handed
back"), its lease is released and the task rejects its message with requeue, so the next analyzer resumes it.
In-process against a real Redis, with the analysis replaced; tests/replicas runs it with real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery.exceptions import Reject
from celery.signals import worker_shutting_down

from services.analyzer import tasks
from services.analyzer.config import AnalyzerSettings
from services.common import redis_keys
from services.common.analysis import AnalysisRequest
from services.common.jobs import HANDED_BACK, JobState, JobStore


@pytest.fixture
def setup(r: redis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    settings = AnalyzerSettings(
        redis_url=redis_url, job_lease_s=30, home=tmp_path, data_dir=tmp_path / "data", _env_file=None
    )
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    monkeypatch.setattr(tasks, "_redis", r)
    store = JobStore(r)
    checks: list[str] = []

    def run_analysis(spec: object, ctx: tasks.stages.JobContext, redis: redis.Redis) -> dict:
        for where in ("profiling", "validation", "publish"):  # the job's checks, as the stages make them
            checks.append(where)
            ctx.check(where)
        return {"best": None}

    monkeypatch.setattr(tasks.stages, "run_analysis", run_analysis)
    tasks.stages.SHUTDOWN.clear()
    yield {"settings": settings, "store": store, "checks": checks}
    tasks.stages.SHUTDOWN.clear()


def _job(setup: dict, job_id: str) -> None:
    setup["store"].create(job_id, AnalysisRequest(source="en", target="fr").normalized(setup["settings"]))


def test_celery_shutdown_signal_sets_the_flag(setup: dict) -> None:
    assert not tasks.stages.SHUTDOWN.is_set()
    worker_shutting_down.send(sender="analyzer@test", sig="SIGTERM", how="Warm", exitcode=0)
    assert tasks.stages.SHUTDOWN.is_set()


def test_a_running_job_is_handed_back(setup: dict, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    store: JobStore = setup["store"]
    _job(setup, "hb1")
    original = tasks.stages.run_analysis

    def shut_down_mid_job(spec: object, ctx: tasks.stages.JobContext, redis: redis.Redis) -> dict:
        ctx.check("profiling")
        tasks.stages.SHUTDOWN.set()  # SIGTERM arrives while the job runs
        return original(spec, ctx, redis)

    monkeypatch.setattr(tasks.stages, "run_analysis", shut_down_mid_job)
    outcome, rec = tasks.run_job("hb1")
    assert outcome == "handed_back" and rec is not None
    assert rec.state == JobState.queued and rec.progress.stage == HANDED_BACK and rec.attempts == 1
    assert setup["checks"] == ["profiling"]  # stopped at the next check: nothing after it ran
    assert r.get(redis_keys.job_lease("hb1")) is None  # released, so the next analyzer starts at once
    assert store.get("hb1").result is None
    # the next analyzer (no shutdown there) resumes it: the second attempt
    tasks.stages.SHUTDOWN.clear()
    monkeypatch.setattr(tasks.stages, "run_analysis", original)
    outcome, rec = tasks.run_job("hb1")
    assert outcome == "done" and rec.state == JobState.succeeded and rec.attempts == 2


def test_the_task_requeues_its_message(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    _job(setup, "hb2")
    tasks.stages.SHUTDOWN.set()  # a message taken while shutting down: back to the queue, the record untouched
    with pytest.raises(Reject) as err:
        tasks.analyze_pair.run("hb2")
    assert err.value.requeue is True
    rec = setup["store"].get("hb2")
    assert rec.state == JobState.queued and rec.attempts == 0 and setup["checks"] == []


def test_a_cancel_wins_over_the_hand_back(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    store: JobStore = setup["store"]
    _job(setup, "hb3")
    original = tasks.stages.run_analysis

    def both(spec: object, ctx: tasks.stages.JobContext, redis: redis.Redis) -> dict:
        store.request_cancel("hb3")
        tasks.stages.SHUTDOWN.set()
        return original(spec, ctx, redis)

    monkeypatch.setattr(tasks.stages, "run_analysis", both)
    outcome, rec = tasks.run_job("hb3")
    assert outcome == "done" and rec.state == JobState.cancelled


def test_hand_back_only_moves_a_running_record(setup: dict) -> None:
    store: JobStore = setup["store"]
    _job(setup, "hb4")
    assert store.hand_back("hb4").state == JobState.queued  # queued: unchanged
    store.start("hb4")
    store.progress("hb4", "profile", 3, 10, percent=40.0)
    back = store.hand_back("hb4")
    assert back.state == JobState.queued and back.progress.stage == HANDED_BACK and back.progress.percent == 40.0
    store.start("hb4")
    store.succeed("hb4", {"best": None})
    assert store.hand_back("hb4").state == JobState.succeeded  # terminal: never reopened
    assert store.hand_back("nope") is None
