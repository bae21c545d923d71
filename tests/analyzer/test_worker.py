"""The analyzer end to end: a real Celery worker process, a real redis-server, the tiny random model and
data files the test writes. Submission goes through services.common.analysis (as the gateway does)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from bridgex.artifacts import PROFILE_KIND

from services.analyzer.celery_app import make_app
from services.common.analysis import AnalysisRequest, served_config, submit_analysis
from services.common.bridges import BridgeStore
from services.common.jobs import JobState, JobStore
from tests.analyzer.conftest import settings_from, wait_state, worker_env, write_data_dir
from tests.support import Service, start_celery, thread_nice

pytestmark = pytest.mark.integration

BIG = ("it", "pt", "es")  # languages with long texts: a job on them runs long enough to cancel


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, mod_redis: str) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("analyzer-worker")
    data = write_data_dir(tmp / "data", lines=10)
    for lang in BIG:  # profiled up to settings.profile_max_tokens (50k): a few seconds each
        words = [f"{lang}{i}" for i in range(50)]
        text = "\n".join(" ".join(words[(j + k) % 50] for k in range(40)) for j in range(1500))
        (data / "text" / f"{lang}.txt").write_text(text + "\n", encoding="utf-8")
    d = data / "dict" / "it-pt"
    d.mkdir(parents=True)
    (d / "probe.tsv").write_text("".join(f"ita{i}\tpor{i}\tt\n" for i in range(40)), encoding="utf-8")
    env = worker_env(tmp, tiny_model_dir, data)
    celery = start_celery(tmp, mod_redis, **env)
    settings = settings_from(env, mod_redis)
    r = redis.Redis.from_url(mod_redis)
    yield {
        "tmp": tmp,
        "data": data,
        "env": env,
        "celery": celery,
        "settings": settings,
        "r": r,
        "app": make_app(settings),
        "store": JobStore(r),
        "bridges": BridgeStore(r),
    }
    celery.stop()
    r.close()


def _submit(setup: dict, **req: object):
    return submit_analysis(
        AnalysisRequest(**req),
        settings=setup["settings"],
        redis=setup["r"],
        celery_app=setup["app"],
        request_id="test-rid",
    )


def test_analyze_pair_end_to_end(setup: dict) -> None:
    rec, created = _submit(setup, source="sw", target="fi")
    assert created and rec.state == JobState.queued
    celery: Service = setup["celery"]
    done = wait_state(setup["store"], rec.id, {"succeeded", "failed", "cancelled"}, 150, celery.log)
    assert done.state == JobState.succeeded, done.error
    assert done.progress.percent == 100.0 and done.attempts == 1 and done.finished_at is not None
    res = done.result
    assert res is not None and res["best"] in ("en", "de", "fr") and len(res["ranking"]) == 3
    # artifacts on disk, with manifests
    for key in ("ranking", "probes"):
        assert Path(res["artifacts"][key]).is_file()
    root = Path(res["artifacts"]["root"])
    assert root.is_relative_to(setup["tmp"] / "artifacts")
    profiles = sorted(p.name for p in root.glob("profiles/*/profile-*.json"))
    assert profiles == [f"profile-{c}.json" for c in sorted(["sw", "fi", "en", "de", "fr"])]
    manifest = json.loads(next(root.glob("profiles/*/profile-sw.json")).read_text())
    assert manifest["kind"] == PROFILE_KIND and manifest["weight_hash"]
    ranking_file = json.loads(Path(res["artifacts"]["ranking"]).read_text())
    assert ranking_file["best"] == res["best"] and ranking_file["provenance"]["job_id"] == rec.id
    # the recommendation in Redis, under the versioned key and the latest index
    s = setup["settings"]
    pub = setup["bridges"].latest(s.model, s.model_revision, served_config(s, "sw", "fi"), "sw", "fi")
    assert pub is not None and pub["cache_key"] == res["cache_key"] and pub["best"] == res["best"]
    assert [c["code"] for c in pub["ranked"]] == [c["code"] for c in res["ranking"]]
    assert pub["provenance"]["probe_hash"] == res["probe_hash"]
    # no worker here (hsic policy, no gold filter): published, saying its weights were not checked
    assert pub["provenance"]["worker_weights"] == "unreachable"
    assert pub["provenance"]["weight_hash"] == manifest["weight_hash"]
    assert done.request_id == "test-rid"
    assert f"job {rec.id} received (request_id=test-rid" in celery.log.read_text()
    # batch work below the gateway: every thread of the analyzer, the model's included, at analyzer_nice (10)
    assert celery.proc is not None
    assert set(thread_nice(celery.proc.pid).values()) == {10}, thread_nice(celery.proc.pid)


def test_same_request_is_one_job(setup: dict) -> None:
    first, _ = _submit(setup, source="sw", target="fi")
    second, created = _submit(setup, source="swh", target="fin", candidates=["en", "de", "fr"])
    assert second.id == first.id and not created
    rec = setup["store"].get(first.id)
    assert rec.state == JobState.succeeded and rec.attempts == 1
    # a different parameter is a different job, which reuses the profiles on disk
    other, created = _submit(setup, source="sw", target="fi", k=4)
    assert created and other.id != first.id
    done = wait_state(setup["store"], other.id, {"succeeded", "failed"}, 60, setup["celery"].log)
    assert done.state == JobState.succeeded, done.error
    assert done.result["timings_s"]["profiles"] < rec.result["timings_s"]["profiles"]
    time.sleep(0.5)
    assert setup["store"].get(first.id).attempts == 1  # never ran again


def test_failing_job_says_what_to_do(setup: dict) -> None:
    rec, _ = _submit(setup, source="sw", target="de", candidates=["en"])  # a 5-pair dictionary
    done = wait_state(setup["store"], rec.id, {"succeeded", "failed"}, 60, setup["celery"].log)
    assert done.state == JobState.failed
    # 5 pairs, 1 set aside as the dev split
    assert "only 4 usable source words" in done.error and "probe_min=8" in done.error
    s = setup["settings"]
    assert setup["bridges"].latest(s.model, s.model_revision, served_config(s, "sw", "de"), "sw", "de") is None
    # resubmitting a failed job re-runs it (here: fails again, attempts reset)
    again, created = _submit(setup, source="sw", target="de", candidates=["en"])
    assert created and again.id == rec.id


def test_cancel_mid_job_publishes_nothing(setup: dict) -> None:
    store: JobStore = setup["store"]
    rec, _ = _submit(setup, source="it", target="pt", candidates=["es"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cur = store.get(rec.id)
        if cur.state == JobState.running and cur.progress.stage == "profile" and cur.progress.current > 0:
            break
        assert cur.state in (JobState.queued, JobState.running), cur
        time.sleep(0.05)
    else:
        pytest.fail(f"job never reached profiling: {store.get(rec.id)}")
    assert store.request_cancel(rec.id).state == JobState.running
    done = wait_state(store, rec.id, {"cancelled", "succeeded", "failed"}, 30, setup["celery"].log)
    assert done.state == JobState.cancelled and done.progress.percent < 100
    s = setup["settings"]
    assert setup["bridges"].latest(s.model, s.model_revision, served_config(s, "it", "pt"), "it", "pt") is None
    assert not list((setup["tmp"] / "artifacts").glob("*/rankings/it-pt/*"))
    # the worker is free again: a cancelled job can be resubmitted, and a quick one still runs
    quick, created = _submit(setup, source="sw", target="fi", k=2)
    assert created
    assert wait_state(store, quick.id, {"succeeded", "failed"}, 60).state == JobState.succeeded
