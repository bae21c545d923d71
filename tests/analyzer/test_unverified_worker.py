"""An analysis against a generation worker that does not report its weights (a plain `vllm serve`, no
`/bridgex/identity`): strict by default, the job fails and says what to do; with BRIDGEX_ALLOW_UNVERIFIED_WORKER
it runs, and its ranking says the worker was unverified. In-process on the tiny model (the job through
`tasks.run_job`, its record in a real Redis), with tests.plain_vllm standing in for the worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from services.analyzer import stages, tasks
from services.analyzer.config import AnalyzerSettings
from services.common.analysis import AnalysisRequest
from services.common.jobs import JobState, JobStore
from tests.analyzer.conftest import settings_from, worker_env, write_data_dir
from tests.plain_vllm import PlainVllm, plain_vllm


@pytest.fixture
def plain() -> Iterator[PlainVllm]:
    with plain_vllm() as server:
        yield server


def _settings(tmp_path: Path, model: Path, worker: str, redis_url: str, **extra: str) -> AnalyzerSettings:
    data = write_data_dir(tmp_path / "data", lines=2)
    env = worker_env(
        tmp_path,
        model,
        data,
        BRIDGEX_WORKER_URL=worker,
        BRIDGEX_WORKER_RETRIES="0",
        BRIDGEX_GOLD_FILTER="true",
        BRIDGEX_PROBE_MAX="6",
        BRIDGEX_PROBE_MIN="4",
        **extra,
    )
    return settings_from(env, redis_url)


def _run(settings: AnalyzerSettings, r: redis.Redis, monkeypatch: pytest.MonkeyPatch, job_id: str):
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    monkeypatch.setattr(tasks, "_redis", r)
    JobStore(r).create(job_id, AnalysisRequest(source="sw", target="fi").normalized(settings))
    outcome, rec = tasks.run_job(job_id)
    assert outcome == "done" and rec is not None
    return rec


def test_the_job_fails_and_says_what_to_do(
    tmp_path: Path, tiny_model_dir: Path, plain: PlainVllm, r: redis.Redis, redis_url: str, monkeypatch
) -> None:
    settings = _settings(tmp_path, tiny_model_dir, plain.url, redis_url)
    assert settings.allow_unverified_worker is False  # strict by default
    rec = _run(settings, r, monkeypatch, "strict")
    assert rec.state == JobState.failed, rec
    err = rec.error or ""
    assert f"worker at {plain.url} does not report its weights" in err and "/bridgex/identity" in err, err
    assert "python -m services.worker" in err and "BRIDGEX_ALLOW_UNVERIFIED_WORKER=true" in err, err
    assert "GET /bridgex/identity" in plain.paths and plain.completions() == 0  # asked, then nothing measured
    assert not list((tmp_path / "artifacts").glob("*/probes/*/*.json"))
    assert not list(r.scan_iter("bridgex:bridge:*"))  # nothing published


def test_the_setting_lets_the_job_run_unverified(
    tmp_path: Path, tiny_model_dir: Path, plain: PlainVllm, r: redis.Redis, redis_url: str, monkeypatch
) -> None:
    settings = _settings(tmp_path, tiny_model_dir, plain.url, redis_url, BRIDGEX_ALLOW_UNVERIFIED_WORKER="true")
    rec = _run(settings, r, monkeypatch, "allowed")
    assert rec.state == JobState.succeeded, rec.error
    assert plain.completions() > 0  # the gold filter used the worker
    ranking = json.loads(Path(rec.result["artifacts"]["ranking"]).read_text())
    assert ranking["provenance"]["worker_weights"] == "unverified"
    assert rec.result["cache_key"] and r.exists(rec.result["cache_key"])


def test_every_check_is_strict(tmp_path: Path, tiny_model_dir: Path, plain: PlainVllm) -> None:
    """The gold filter, the dev validation and the check before publishing (which tolerates a worker that is
    down: the ranking was made without it) all refuse a worker that answers without saying its weights."""
    settings = _settings(tmp_path, tiny_model_dir, plain.url, "redis://127.0.0.1:1/0")
    lm = stages.load_lm(settings)
    for what, needs in (("gold filter", True), ("dev validation", True), ("published ranking", False)):
        with pytest.raises(stages.AnalysisFailed, match="BRIDGEX_ALLOW_UNVERIFIED_WORKER=true"):
            stages.check_worker_weights(settings, lm, what, needs_worker=needs)
    allowed = settings.model_copy(update={"allow_unverified_worker": True})
    assert stages.check_worker_weights(allowed, lm, "gold filter") == "unverified"
    down = settings.model_copy(update={"worker_url": "http://127.0.0.1:9"})
    assert stages.check_worker_weights(down, lm, "published ranking", needs_worker=False) == "unreachable"
