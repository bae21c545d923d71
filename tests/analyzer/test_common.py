"""JobStore, BridgeStore and request normalisation against a real redis-server (no Celery)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis
from bridgex.fingerprint import config_fingerprint

from services.common import redis_keys
from services.common.analysis import (
    AnalysisRequest,
    InvalidAnalysisRequest,
    alias_after_data,
    data_hash,
    job_id_for,
    served_config,
    submit_analysis,
)
from services.common.bridges import LATEST_SCRIPT, BridgeStore, FailureStore, decode_ranking, latest_found
from services.common.config import ServiceSettings
from services.common.jobs import JobState, JobStore


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_job_lifecycle(r: redis.Redis) -> None:
    store = JobStore(r, ttl_s=60)
    rec, created = store.create("j1", {"a": 1}, request_id="rid")
    assert created and rec.state == JobState.queued and rec.request == {"a": 1}
    again, created2 = store.create("j1", {"a": 2})
    assert not created2 and again.request == {"a": 1}
    rec = store.start("j1")
    assert rec.state == JobState.running and rec.attempts == 1 and rec.started_at is not None
    store.progress("j1", "profile", 3, 4, percent=30)
    got = store.get("j1")
    assert got is not None and got.progress.stage == "profile" and got.progress.percent == 30
    store.succeed("j1", {"best": "en"})
    done = store.get("j1")
    assert done is not None and done.state == JobState.succeeded and done.progress.percent == 100
    # terminal states are never overwritten by late writers
    store.fail("j1", "late")
    store.progress("j1", "x", 0, 1)
    assert store.get("j1").state == JobState.succeeded  # type: ignore[union-attr]
    assert store.start("j1").state == JobState.succeeded
    assert r.ttl(JobStore.key("j1")) > 0
    assert store.get("nope") is None


def test_cancel_queued_and_running(r: redis.Redis) -> None:
    store = JobStore(r)
    store.create("q", {})
    rec = store.request_cancel("q")
    assert rec is not None and rec.state == JobState.cancelled
    store.create("run", {})
    store.start("run")
    rec = store.request_cancel("run")
    assert rec is not None and rec.state == JobState.running and store.cancel_requested("run")
    assert store.cancelled("run").state == JobState.cancelled
    assert not store.cancel_requested("run")
    assert store.request_cancel("missing") is None


def test_list_and_reset(r: redis.Redis) -> None:
    store = JobStore(r)
    for i in range(5):
        store.create(f"j{i}", {"i": i})
    store.start("j2")
    store.fail("j2", "boom")
    assert [j.id for j in store.list(limit=3)] == ["j4", "j3", "j2"]
    assert [j.id for j in store.list(state="failed")] == ["j2"]
    assert store.reset("j2", only_if={JobState.running}) is None
    rec = store.reset("j2", only_if={JobState.failed})
    assert rec is not None and rec.state == JobState.queued and rec.error is None and rec.attempts == 0
    r.delete(JobStore.key("j0"))  # expired record: pruned from the index
    assert "j0" not in [j.id for j in store.list()]


def test_concurrent_progress_keeps_record_valid(r: redis.Redis) -> None:
    store = JobStore(r)
    store.create("c", {})
    store.start("c")

    def spam(stage: str) -> None:
        for i in range(50):
            store.progress("c", stage, i, 50)

    threads = [threading.Thread(target=spam, args=(s,)) for s in ("a", "b")]
    for t in threads:
        t.start()
    store.request_cancel("c")
    for t in threads:
        t.join()
    rec = store.get("c")
    assert rec is not None and rec.state == JobState.running and rec.progress.current == 49


def test_bridge_store(r: redis.Redis) -> None:
    bs = BridgeStore(r)
    ranking = {
        "ranked": [{"code": "fr", "score": 0.9, "rank": 1}, {"code": "en", "score": 0.5, "rank": 2}],
        "best": "fr",
        "served": {"bridge": None, "policy": "validated", "reason": "none won"},
    }
    kw = {"model": "m", "revision": "r1", "source": "sw", "target": "fi", "method_version": "v1"}
    key = bs.publish(ranking, config="cfgA", params={"k": 64}, probe_hash="p1", **kw)
    assert key == "bridgex:bridge:m@r1:sw:fi:v1:cfgA:p1"
    got = bs.latest("m", "r1", "cfgA", "sw", "fi")
    assert got is not None and got["cache_key"] == key and got["best_code"] == "fr"
    assert got["served_bridge"] is None and got["served_reason"] == "none won"  # HSIC best is not what is served
    assert got["provenance"]["probe_hash"] == "p1" and got["config"] == "cfgA"
    key2 = bs.publish(
        {**ranking, "best": "en", "served": {"bridge": "en", "reason": "r"}},
        config="cfgA",
        params={"k": 64},
        probe_hash="p2",
        **kw,
    )
    assert r.get(redis_keys.bridge_latest("m", "r1", "cfgA", "sw", "fi")).decode() == key2
    assert bs.pairs("m", "r1", "cfgA") == [
        {
            "source": "sw",
            "target": "fi",
            "best": "en",
            "score": 0.5,
            "served": "en",
            "served_reason": "r",
            "cache_key": key2,
            "published_at": bs.latest("m", "r1", "cfgA", "sw", "fi")["provenance"]["published_at"],
        }
    ]
    # another configuration of the same pair is stored beside it and changes nothing of cfgA
    key3 = bs.publish({**ranking, "best": "fr"}, config="cfgB", params={"k": 1}, probe_hash="p3", **kw)
    assert bs.latest("m", "r1", "cfgA", "sw", "fi")["cache_key"] == key2
    assert bs.latest("m", "r1", "cfgB", "sw", "fi")["cache_key"] == key3
    assert bs.configs("m", "r1") == {"cfgA": {"k": 64}, "cfgB": {"k": 1}}
    assert bs.delete("m", "r1", "cfgA", "sw", "fi") is True
    assert bs.latest("m", "r1", "cfgA", "sw", "fi") is None and bs.pairs("m", "r1", "cfgA") == []
    assert bs.latest("m", "r1", "cfgB", "sw", "fi") is not None
    assert bs.delete("m", "r1", "cfgA", "sw", "fi") is False
    # every publish is counted per configuration and pair; an invalidation does not reset the count
    assert bs.publish_counts("m", "r1", "cfgA") == {"sw:fi": 2}
    assert bs.publish_counts("m", "r1", "cfgB") == {"sw:fi": 1} and bs.publish_counts("m", "r2", "cfgA") == {}


def test_gateway_reads_what_the_store_publishes(r: redis.Redis, redis_url: str) -> None:
    """The gateway's async path (decode_responses or not) and BridgeStore read one format the same way."""
    import asyncio

    import redis.asyncio as aioredis

    bs = BridgeStore(r)
    key = bs.publish(
        {
            "ranked": [{"code": "es", "score": 0.3, "rank": 1}],
            "best": "es",
            "served": {"bridge": "es", "reason": "won"},
        },
        model="m",
        revision=None,
        config="c",
        params={},
        source="en",
        target="fi",
        probe_hash="p",
        method_version="v1",
    )
    assert bs.latest_raw("m", None, "c", "en", "fi") == (key, r.get(key))

    async def read(decode: bool) -> dict | None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=decode)
        try:
            found = latest_found(
                await client.register_script(LATEST_SCRIPT)(keys=[redis_keys.bridge_latest("m", None, "c", "en", "fi")])
            )
            return None if found is None else decode_ranking(*found)
        finally:
            await client.aclose()

    want = bs.latest("m", None, "c", "en", "fi")
    assert want is not None and want["served_bridge"] == "es" and want["cache_key"] == key
    assert asyncio.run(read(False)) == want == asyncio.run(read(True))
    r.delete(key)  # a dangling latest pointer reads as a miss on both paths
    assert bs.latest("m", None, "c", "en", "fi") is None and asyncio.run(read(False)) is None


def test_redis_keys_are_distinct_per_kind() -> None:
    built = [
        redis_keys.bridge("m", "r", "s", "t", "v", "c", "p"),
        redis_keys.bridge_latest("m", "r", "c", "s", "t"),
        redis_keys.bridge_pairs("m", "r", "c"),
        redis_keys.bridge_configs("m", "r"),
        redis_keys.bridge_publishes("m", "r", "c"),
        redis_keys.auto_lock("m", "r", "c", "s", "t"),
        redis_keys.analysis_failure("m", "r", "c", "s", "t"),
        redis_keys.job("x"),
        redis_keys.job_cancel("x"),
        redis_keys.job_alias("x"),
        redis_keys.job_inflight("x"),
        redis_keys.job_lease("x"),
        redis_keys.JOBS_INDEX,
        redis_keys.rate_limit("x", 1),
        redis_keys.auth_failures("x", 1),
        redis_keys.lockout("x"),
        redis_keys.idempotency("x", "y"),
    ]
    kinds = [k.split(":")[1] for k in built]
    assert all(k.startswith("bridgex:") for k in built) and len(set(kinds)) == len(kinds)
    assert redis_keys.bridge_latest("m", None, "c", "s", "t") == "bridgex:bridge-latest:m@unknown:c:s:t"
    assert len(redis_keys.lockout("a" * 10_000)) < 64  # client strings are digested, keys stay bounded


def test_failure_backoff(r: redis.Redis) -> None:
    fs = FailureStore(r, base_s=300, max_s=3600)
    args = ("m", "r1", "cfgA", "sw", "fi")
    first = fs.record(*args, error="boom", job_id="j1", now=1000.0)
    assert first["attempts"] == 1 and first["retry_at"] == 1300.0
    second = fs.record(*args, error="boom again", job_id="j2", now=1400.0)
    assert second["attempts"] == 2 and second["retry_at"] == 2000.0  # doubled
    for _ in range(6):
        last = fs.record(*args, error="x", job_id="j", now=5000.0)
    assert last["retry_at"] == 5000.0 + 3600  # capped
    assert fs.get(*args)["error"] == "x" and fs.get("m", "r1", "cfgB", "sw", "fi") is None
    BridgeStore(r).publish(
        {"ranked": [], "best": None},
        model="m",
        revision="r1",
        config="cfgA",
        params={},
        source="sw",
        target="fi",
        probe_hash="p",
        method_version="v1",
    )
    assert fs.get(*args) is None  # a success forgets the failures


def test_served_config_isolates_method_parameters(tmp_path: Path) -> None:
    s = ServiceSettings(data_dir=tmp_path, model="tiny")
    served = served_config(s, "en", "fr")
    assert served == config_fingerprint(AnalysisRequest(source="en", target="fr").normalized(s))
    assert served == served_config(s, "en", "fr")
    other = AnalysisRequest(source="en", target="fr", candidates=["sw"], k=1).normalized(s)
    assert config_fingerprint(other) != served
    for change in (
        {"selection": "lape"},
        {"bridge_set": "full"},
        {"gold_filter": False},
        {"gold_filter_k": 0},
        {"serve_policy": "hsic"},
        {"window": (0.2, 0.8)},
        {"top_rate": 0.02},
        {"hsic_variant": "cka"},
    ):
        norm = AnalysisRequest(source="en", target="fr", **change).normalized(s)
        assert config_fingerprint(norm) != served, change
    # the data hash is not a method parameter: re-prepared data keeps the configuration
    norm = AnalysisRequest(source="en", target="fr").normalized(s)
    assert config_fingerprint({**norm, "data_hash": "x"}) == served


def test_request_normalisation(tmp_path: Path) -> None:
    s = ServiceSettings(data_dir=tmp_path, model="tiny", candidates=("en", "de", "fr"))
    norm = AnalysisRequest(source="swh", target="FI").normalized(s)
    assert norm["source"] == "sw" and norm["target"] == "fi" and norm["candidates"] == ["en", "de", "fr"]
    assert norm["k"] == s.bridge_k and norm["model"] == "tiny" and norm["gold_filter"] is True
    assert AnalysisRequest(source="en", target="fi").normalized(s)["candidates"] == ["de", "fr"]
    with pytest.raises(InvalidAnalysisRequest, match="same language"):
        AnalysisRequest(source="en", target="eng").normalized(s)
    with pytest.raises(InvalidAnalysisRequest, match="unknown language"):
        AnalysisRequest(source="xx-nonsense", target="fi").normalized(s)
    with pytest.raises(InvalidAnalysisRequest, match="no candidate"):
        AnalysisRequest(source="en", target="fi", candidates=["en", "fi"]).normalized(s)
    with pytest.raises(ValueError, match="window"):
        AnalysisRequest(source="en", target="fi", window=(0.8, 0.2))
    a = job_id_for(AnalysisRequest(source="sw", target="fi"), s, "d1")
    assert a == job_id_for(AnalysisRequest(source="swh", target="fi", k=s.bridge_k), s, "d1")
    assert a != job_id_for(AnalysisRequest(source="sw", target="fi", k=7), s, "d1")
    assert a != job_id_for(AnalysisRequest(source="sw", target="fi"), s, "d2")


def test_data_hash_tracks_relevant_files(tmp_path: Path) -> None:
    s = ServiceSettings(data_dir=tmp_path)
    norm = AnalysisRequest(source="sw", target="fi", candidates=["en"]).normalized(s)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "sw.txt").write_text("habari")
    (tmp_path / "text" / "de.txt").write_text("hallo")
    h1 = data_hash(s, norm)
    (tmp_path / "text" / "de.txt").write_text("hallo welt")
    assert data_hash(s, norm) == h1
    (tmp_path / "text" / "sw.txt").write_text("habari dunia")
    h2 = data_hash(s, norm)
    assert h2 != h1
    (tmp_path / "dict" / "fi-sw").mkdir(parents=True)
    (tmp_path / "dict" / "fi-sw" / "all.tsv").write_text("kissa\tpaka\tx\n")
    assert data_hash(s, norm) != h2


class _FakeCelery:
    """Records send_task calls (unit test of the once-only logic; the real worker is tested elsewhere)."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send_task(self, name: str, **kw: object) -> None:
        self.sent.append({"name": name, **kw})


def test_submit_once_per_job_id(r: redis.Redis, tmp_path: Path) -> None:
    s = ServiceSettings(data_dir=tmp_path, model="tiny")
    app = _FakeCelery()
    req = AnalysisRequest(source="sw", target="fi")
    rec1, new1 = submit_analysis(req, settings=s, redis=r, celery_app=app, request_id="r1")
    rec2, new2 = submit_analysis(req, settings=s, redis=r, celery_app=app, request_id="r2")
    assert new1 and not new2 and rec1.id == rec2.id and len(app.sent) == 1
    sent = app.sent[0]
    assert sent["name"] == "bridgex.analyze_pair" and sent["queue"] == "analyze"
    assert sent["args"] == [rec1.id] and sent["headers"] == {"request_id": "r1"}
    store = JobStore(r)
    store.start(rec1.id)
    store.fail(rec1.id, "x")
    rec3, new3 = submit_analysis(req, settings=s, redis=r, celery_app=app)
    assert new3 and rec3.state == JobState.queued and len(app.sent) == 2
    # force never double-runs a queued job
    _, new4 = submit_analysis(req, settings=s, redis=r, celery_app=app, force=True)
    assert not new4 and len(app.sent) == 2
    # the data moved under a queued job (the gateway gathered the pair's demo data): still that one job
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "sw.txt").write_text("maji\n", encoding="utf-8")
    rec5, new5 = submit_analysis(req, settings=s, redis=r, celery_app=app)
    assert not new5 and rec5.id == rec3.id and len(app.sent) == 2
    # once it finished, the new data is a new job, unless the job itself gathered it (an alias)
    store.start(rec3.id)
    alias = alias_after_data(store, s, rec3.id, rec3.request)
    store.succeed(rec3.id, {})
    rec6, new6 = submit_analysis(req, settings=s, redis=r, celery_app=app)
    assert alias is not None and not new6 and rec6.id == rec3.id and rec6.state == JobState.succeeded
    (tmp_path / "text" / "fi.txt").write_text("vesi\n", encoding="utf-8")  # re-prepared after it finished
    rec7, new7 = submit_analysis(req, settings=s, redis=r, celery_app=app)
    assert new7 and rec7.id != rec3.id and len(app.sent) == 3


def test_rerun_succeeded_reruns_only_a_finished_job_with_force(r: redis.Redis, tmp_path: Path) -> None:
    """The gateway's auto path (ranking gone from the cache) in one call: succeeded -> rerun with force."""
    s = ServiceSettings(data_dir=tmp_path, model="tiny")
    app = _FakeCelery()
    req = AnalysisRequest(source="sw", target="fi")
    rec, new = submit_analysis(req, settings=s, redis=r, celery_app=app, rerun_succeeded=True)
    assert new and app.sent[-1]["kwargs"]["force"] is False
    # queued: never enqueued twice
    _, again = submit_analysis(req, settings=s, redis=r, celery_app=app, rerun_succeeded=True)
    assert not again and len(app.sent) == 1
    store = JobStore(r)
    store.start(rec.id)
    store.fail(rec.id, "x")
    # failed: rerun as any failed job is, without force
    _, new2 = submit_analysis(req, settings=s, redis=r, celery_app=app, rerun_succeeded=True)
    assert new2 and app.sent[-1]["kwargs"]["force"] is False
    store.start(rec.id)
    store.succeed(rec.id, {})
    # succeeded: returned as it is without the flag, rerun with force with it
    same, new3 = submit_analysis(req, settings=s, redis=r, celery_app=app)
    assert not new3 and same.state == JobState.succeeded and len(app.sent) == 2
    rerun, new4 = submit_analysis(req, settings=s, redis=r, celery_app=app, rerun_succeeded=True)
    assert new4 and rerun.id == rec.id and rerun.state == JobState.queued
    assert app.sent[-1]["kwargs"]["force"] is True and len(app.sent) == 3


def test_concurrent_submits_with_moving_data_are_one_job(r: redis.Redis, tmp_path: Path, monkeypatch) -> None:
    """Issue 22 item 6: the in-flight check and mark are one atomic step. Each submitter sees another data hash
    (as when a pair's data is being gathered), so each computes another job id; exactly one job is enqueued and
    every submitter gets it."""
    import itertools
    import threading

    import services.common.analysis as analysis

    counter = itertools.count()
    monkeypatch.setattr(analysis, "data_hash", lambda *a, **k: f"h{next(counter)}")
    s = ServiceSettings(data_dir=tmp_path, model="tiny")
    app = _FakeCelery()
    req = AnalysisRequest(source="sw", target="fi")
    start = threading.Barrier(12)
    got: list[tuple[str, bool]] = []

    def submit() -> None:
        start.wait()
        rec, new = submit_analysis(req, settings=s, redis=r, celery_app=app)  # redis-py clients are thread-safe
        got.append((rec.id, new))

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 12 and len(app.sent) == 1, (got, app.sent)
    assert {i for i, _ in got} == {app.sent[0]["args"][0]} and sum(new for _, new in got) == 1
    # once that job finished, the next submission is a new job again (a stale claim does not block it)
    store = JobStore(r)
    store.start(got[0][0])
    store.fail(got[0][0], "x")
    rec, new = submit_analysis(req, settings=s, redis=r, celery_app=app)
    assert new and len(app.sent) == 2 and rec.id != got[0][0]
