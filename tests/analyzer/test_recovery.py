"""`kill -9` of the Celery worker mid-job, then a new worker: the job finishes exactly once, resuming from the
artifacts already on disk. Uses a short broker visibility timeout so the message comes back in seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from services.analyzer.celery_app import make_app
from services.common.analysis import AnalysisRequest, served_config, submit_analysis
from services.common.jobs import JobState, JobStore
from tests.analyzer.conftest import settings_from, wait_state, worker_env, write_data_dir
from tests.support import RedisServer, start_celery

pytestmark = pytest.mark.integration


def test_kill9_mid_job_then_new_worker_finishes_once(
    tmp_path: Path, tiny_model_dir: Path, own_redis: RedisServer
) -> None:
    data = write_data_dir(tmp_path / "data", lines=80)
    env = worker_env(
        tmp_path,
        tiny_model_dir,
        data,
        BRIDGEX_VISIBILITY_TIMEOUT_S="5",
        BRIDGEX_JOB_LEASE_S="3",
        BRIDGEX_BATCH_SIZE="1",
        BRIDGEX_CHUNK_TOKENS="32",
        BRIDGEX_PROFILE_MAX_TOKENS="6000",
    )
    settings = settings_from(env, own_redis.url)
    r = redis.Redis.from_url(own_redis.url)
    store = JobStore(r)
    first = start_celery(tmp_path, own_redis.url, **env)
    second = None
    try:
        rec, created = submit_analysis(
            AnalysisRequest(source="sw", target="fi"), settings=settings, redis=r, celery_app=make_app(settings)
        )
        assert created
        # wait until the first profile is on disk and the second one is being computed
        deadline = time.monotonic() + 90
        profile_json = None
        while time.monotonic() < deadline:
            found = list((tmp_path / "artifacts").glob("*/profiles/*/profile-sw.json"))
            cur = store.get(rec.id)
            assert cur.state in (JobState.queued, JobState.running), cur
            if found:
                profile_json = found[0]
                break
            time.sleep(0.02)
        assert profile_json is not None, f"job never got past the first profile: {store.get(rec.id)}"
        mtime = profile_json.stat().st_mtime_ns
        first.kill()  # SIGKILL to the whole process group
        killed = store.get(rec.id)
        assert killed.state == JobState.running and killed.attempts == 1

        second = start_celery(tmp_path, own_redis.url, **env)
        done = wait_state(store, rec.id, {"succeeded", "failed", "cancelled"}, 120, second.log)
        assert done.state == JobState.succeeded, done.error
        assert done.attempts == 2 and done.progress.percent == 100.0
        assert profile_json.stat().st_mtime_ns == mtime  # resumed: the finished profile was reused
        assert len(list(r.scan_iter("bridgex:bridge:*"))) == 1
        s = settings
        from services.common.bridges import BridgeStore

        pub = BridgeStore(r).latest(s.model, s.model_revision, served_config(s, "sw", "fi"), "sw", "fi")
        assert pub is not None and pub["cache_key"] == done.result["cache_key"]
        # exactly once: nothing comes back after another visibility timeout
        time.sleep(6)
        after = store.get(rec.id)
        assert after.attempts == 2 and after.finished_at == done.finished_at
        assert r.hlen("unacked") == 0 and r.llen("analyze") == 0
        # the job ran once on the new worker; a duplicate delivery (the retry while the dead worker's lease
        # lasted, or a restore after the short visibility timeout) found it finished and did nothing
        log = second.log.read_text()
        assert log.count(f"job {rec.id}: done (succeeded)") == 1
        assert log.count(f"job {rec.id}: attempt 2 (resuming") == 1
    finally:
        first.stop()
        if second is not None:
            second.stop()
        r.close()
