"""Usage per key and daily character quotas (services/api/services/usage.py) on a gateway of their own: real
redis-server, the session's vLLM worker on the tiny random model, uvicorn; expected token counts are asked of
the worker directly with the same prompts."""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from bridgex.generation.client import SyncGenerationClient
from bridgex.prompts import word_prompt

from services.api.core.config import KeyQuota
from services.api.core.security import KeyRing, key_id
from services.api.services.usage import resolve_quotas, seconds_to_midnight
from tests.api.conftest import stack_env
from tests.support import RedisServer, Service, start_api

KEYS = {
    "u-one": ["translate", "analyze"],
    "u-two": ["translate"],
    "u-quota": ["translate"],
    "u-conc": ["translate"],
    "u-admin": ["admin"],
}
QUOTA, CONC_QUOTA = 30, 50
QUOTAS = {"u-quota": {"chars_per_day": QUOTA}, key_id("u-conc"): {"chars_per_day": CONC_QUOTA}}  # by key, by id
MAX_TOKENS = 12  # a longer text fails (422) after its characters were reserved: the refund path
LONG = "abcdefghijklmnopqrstuvwxyz"  # 21 tokens of the tiny model
COUNTS = ("requests", "characters", "generated_tokens", "analyses")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def word(text: str, bridge: str = "none", source: str = "en", target: str = "fr") -> dict[str, Any]:
    return {"text": text, "source": source, "target": target, "bridge": bridge}


def next_midnight() -> datetime:
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


# ------------------------------------------------------------------------------------------- unit


async def test_counts_without_a_quota_are_written_together(redis_url: str) -> None:
    """Three requests of two keys within BATCH_S: nothing is written while the responses go out, then one
    pipeline writes all three, exactly; a read (`drain`) writes what waits at once."""
    import asyncio

    import redis

    from services.api.core.observability import Metrics
    from services.api.core.redis import RedisGate, async_client
    from services.api.core.security import Principal
    from services.api.services.usage import BATCH_S, UsageMeter, Window, generated
    from services.common import redis_keys

    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    sync.flushall()
    client = async_client(redis_url)
    metrics = Metrics()
    ring = KeyRing({}, open_mode=True)
    meter = UsageMeter(client, RedisGate(metrics), metrics, ring, {})
    one, two = Principal("id-one", frozenset({"translate"})), Principal("id-two", frozenset({"translate"}))

    async def translate(who: Principal, text: str, tokens: int, ok: bool = True) -> None:
        async with meter.charge(who, [text]) as charge:
            if ok:
                with charge.item():
                    generated(tokens)

    def total(who: Principal) -> dict[str, str]:
        return sync.hgetall(redis_keys.usage(who.key_id, "total"))

    await translate(one, "water", 3)
    await translate(one, "sun", 2)
    await translate(two, "moon", 4)
    await translate(two, "failed", 9, ok=False)  # not counted
    assert total(one) == {} and total(two) == {}  # not written before the responses are out
    await asyncio.sleep(BATCH_S * 4)
    assert total(one) == {"requests": "2", "characters": "8", "generated_tokens": "5"}
    assert total(two) == {"requests": "1", "characters": "4", "generated_tokens": "4"}
    day = Window.at(time.time()).periods(one.key_id)[1]
    assert sync.hget(day, "requests") == "2" and 0 < sync.ttl(day) <= 2 * 86400
    assert sync.smembers(redis_keys.USAGE_KEYS) == {"id-one", "id-two"}
    await translate(one, "tree", 1)
    await meter.drain()  # a read on this gateway: written now, not after BATCH_S
    assert total(one)["requests"] == "3"
    await client.aclose()


def test_quotas_named_by_key_or_key_id() -> None:
    ring = KeyRing({"alpha": ["translate"], "beta": ["admin"]}, open_mode=False)
    got = resolve_quotas({"alpha": KeyQuota(chars_per_day=5), key_id("beta"): KeyQuota(chars_per_day=0)}, ring)
    assert got == {key_id("alpha"): 5, key_id("beta"): 0}
    with pytest.raises(ValueError, match="names no configured key") as e:
        resolve_quotas({"gamma": KeyQuota(chars_per_day=5)}, ring)
    assert "gamma" not in str(e.value)  # an entry may be a key: never echoed
    with pytest.raises(ValueError, match="two entries"):
        resolve_quotas({"alpha": KeyQuota(chars_per_day=5), key_id("alpha"): KeyQuota(chars_per_day=6)}, ring)
    with pytest.raises(ValueError):
        KeyQuota.model_validate({"chars_per_day": 5, "chars_per_month": 9})  # a typo is not ignored


def test_seconds_to_midnight() -> None:
    day = datetime(2025, 3, 1, tzinfo=UTC).timestamp()
    assert seconds_to_midnight(day - 1) == 1
    assert seconds_to_midnight(day - 0.2) == 1
    assert seconds_to_midnight(day) == 86400
    assert seconds_to_midnight(day + 3600.5) == 86400 - 3600


# ------------------------------------------------------------------------------------------- live


@pytest.fixture(scope="module")
def usage_api(
    tiny_model_dir: Path, gen_worker: tuple[Service, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    redis = RedisServer().start()
    env = {
        **stack_env(tiny_model_dir, redis.url, gen_worker[1], tmp_path_factory.mktemp("usage-home")),
        "BRIDGEX_API_KEYS": json.dumps(KEYS),
        "BRIDGEX_KEY_QUOTAS": json.dumps(QUOTAS),
        "BRIDGEX_MAX_TEXT_TOKENS": str(MAX_TOKENS),
    }
    svc, url = start_api(log_dir, **env)
    try:
        yield url
    finally:
        svc.stop()
        redis.stop()


@pytest.fixture
def c(usage_api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=usage_api, timeout=60) as client:
        yield client


def usage(c: httpx.Client, key: str) -> dict[str, Any]:
    r = c.get("/usage", headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()


def delta(after: dict[str, Any], before: dict[str, Any], period: str) -> dict[str, int]:
    return {k: after[period][k] - before[period][k] for k in COUNTS}


def tokens_of(worker: str, *prompts: str) -> int:
    gen = SyncGenerationClient(worker, timeout=30)
    return sum(gen.complete(p, max_tokens=16).usage.completion_tokens for p in prompts)


@pytest.mark.integration
def test_counts_per_key(c: httpx.Client, gen_worker: tuple[Service, str]) -> None:
    worker = gen_worker[1]
    one0, two0 = usage(c, "u-one"), usage(c, "u-two")
    assert one0["key_id"] == key_id("u-one") and one0["quota"] is None
    assert datetime.fromisoformat(one0["period_resets_at"]) == next_midnight()

    r = c.post("/translate", json=word("water"), headers=auth("u-one"))
    assert r.status_code == 200, r.text
    tokens = tokens_of(worker, word_prompt("water", "en", "fr"))
    r = c.post("/translate", json=word("house", bridge="de"), headers=auth("u-one"))
    assert r.status_code == 200, r.text
    out = r.json()
    step2 = (
        word_prompt("house", "en", "fr", bridge="de", bridge_word=out["bridge_text"])
        if out["bridge"] == "de"
        else word_prompt("house", "en", "fr")
    )
    tokens += tokens_of(worker, word_prompt("house", "en", "de"), step2)
    # a batch: each item that has a result counts; the bad one (source = target) is given back
    items = [word("sun"), word("moon"), word("star", target="en")]
    r = c.post("/translate/batch", json={"items": items}, headers=auth("u-one"))
    assert r.status_code == 200 and r.json()["succeeded"] == 2, r.text
    tokens += tokens_of(worker, word_prompt("sun", "en", "fr"), word_prompt("moon", "en", "fr"))
    # a failed translation counts nothing
    assert c.post("/translate", json=word("tree", bridge="en"), headers=auth("u-one")).status_code == 422
    # `auto` on a miss enqueues an analysis: the service's doing, not charged to the caller
    r = c.post("/translate", json=word("dog", bridge="auto", target="it"), headers=auth("u-one"))
    assert r.status_code == 200 and r.json()["analysis_job"], r.text
    tokens += tokens_of(worker, word_prompt("dog", "en", "it"))
    # explicit analyses: each accepted submission counts, an Idempotency-Key replay does not
    body = {"source": "en", "target": "fr"}
    assert c.post("/analyze", json=body, headers=auth("u-one")).status_code in (200, 202)
    idem = {**auth("u-one"), "Idempotency-Key": "usage-1"}
    first = c.post("/analyze", json=body, headers=idem)
    replay = c.post("/analyze", json=body, headers=idem)
    assert first.status_code in (200, 202) and replay.json()["id"] == first.json()["id"]

    one1, two1 = usage(c, "u-one"), usage(c, "u-two")
    want = {"requests": 5, "characters": len("waterhousesunmoondog"), "generated_tokens": tokens, "analyses": 2}
    assert delta(one1, one0, "today") == want
    assert delta(one1, one0, "total") == want
    if one1["minute"]["period_start"] == one0["minute"]["period_start"]:  # not across a minute boundary
        assert delta(one1, one0, "minute") == want
    assert tokens > 0
    # another key's usage is its own
    assert delta(two1, two0, "total") == dict.fromkeys(COUNTS, 0)
    assert c.post("/translate", json=word("cat"), headers=auth("u-two")).status_code == 200
    assert delta(usage(c, "u-two"), two1, "total")["characters"] == 3
    assert delta(usage(c, "u-one"), one1, "total") == dict.fromkeys(COUNTS, 0)


def refused(c: httpx.Client) -> float:
    """bridgex_api_quota_exceeded_total in /metrics."""
    for line in c.get("/metrics").text.splitlines():
        if line.startswith("bridgex_api_quota_exceeded_total "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.integration
def test_quota_exceeded(c: httpx.Client) -> None:
    refused0 = refused(c)
    q = usage(c, "u-quota")["quota"]
    assert q["chars_per_day"] == QUOTA and q["characters_used"] == 0 and q["characters_remaining"] == QUOTA
    assert datetime.fromisoformat(q["period_resets_at"]) == next_midnight()
    # failures after the quota check give their characters back: a text over the token limit (422 in the
    # translate flow) and a batch item that fails
    r = c.post("/translate", json=word(LONG), headers=auth("u-quota"))
    assert r.status_code == 422 and "tokens" in r.json()["message"], r.text
    r = c.post("/translate/batch", json={"items": [word("tea"), word(LONG)]}, headers=auth("u-quota"))
    assert r.status_code == 200 and r.json()["succeeded"] == 1, r.text
    assert usage(c, "u-quota")["quota"]["characters_used"] == 3

    for _ in range(2):
        assert c.post("/translate", json=word("waterwater"), headers=auth("u-quota")).status_code == 200
    # 23 used: a batch that would cross 30 is refused whole, nothing of it counted
    r = c.post("/translate/batch", json={"items": [word("sun"), word("riverriver")]}, headers=auth("u-quota"))
    assert r.status_code == 429, r.text
    err = r.json()
    assert err["error"] == "quota_exceeded"
    assert f"quota of {QUOTA}" in err["message"] and "23 used" in err["message"] and "resets at" in err["message"]
    wait = int(r.headers["retry-after"])
    assert abs(wait - (next_midnight() - datetime.now(UTC)).total_seconds()) < 5
    assert c.post("/translate", json=word("riverriver"), headers=auth("u-quota")).status_code == 429
    assert c.post("/translate", json=word("sun"), headers=auth("u-quota")).status_code == 200  # 26 <= 30 fits
    # other keys are not affected
    assert c.post("/translate", json=word("riverriver"), headers=auth("u-two")).status_code == 200

    u = usage(c, "u-quota")
    assert u["today"]["characters"] == 26 and u["today"]["requests"] == 4
    assert u["quota"]["characters_used"] == 26 and u["quota"]["characters_remaining"] == QUOTA - 26
    assert refused(c) - refused0 == 2


@pytest.mark.integration
def test_quota_holds_under_concurrency(c: httpx.Client, usage_api: str) -> None:
    """12 requests of 10 characters at once against a quota of 50: exactly 5 pass (the check and the reservation
    are one atomic step), the rest get 429."""

    def one(_: int) -> int:
        with httpx.Client(base_url=usage_api, timeout=60) as own:
            return own.post("/translate", json=word("waterwater"), headers=auth("u-conc")).status_code

    with cf.ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(one, range(12)))
    assert sorted(codes) == [200] * 5 + [429] * 7, codes
    u = usage(c, "u-conc")
    assert u["today"]["characters"] == CONC_QUOTA and u["quota"]["characters_remaining"] == 0


@pytest.mark.integration
def test_admin_lists_key_ids_only(c: httpx.Client) -> None:
    r = c.get("/usage/keys", headers=auth("u-admin"))
    assert r.status_code == 200, r.text
    listed = r.json()["keys"]
    assert [k["key_id"] for k in listed][: len(KEYS)] == [key_id(k) for k in KEYS]
    assert all(k["configured"] for k in listed[: len(KEYS)])
    for key in KEYS:
        assert key not in r.text  # never the key itself
    by_id = {k["key_id"]: k for k in listed}
    assert by_id[key_id("u-quota")]["quota"]["chars_per_day"] == QUOTA
    assert by_id[key_id("u-one")]["quota"] is None
    # a non-admin key cannot list every key, but sees its own usage
    r = c.get("/usage/keys", headers=auth("u-one"))
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert c.get("/usage", headers=auth("u-admin")).json()["key_id"] == key_id("u-admin")
    assert c.get("/usage").status_code == 401
    assert c.get("/usage", headers=auth("nope")).status_code == 401


@pytest.mark.integration
def test_redis_down_translation_still_answers(
    own_redis: RedisServer, gen_worker: tuple[Service, str], tiny_model_dir: Path, log_dir: Path, tmp_path: Path
) -> None:
    env = {
        **stack_env(tiny_model_dir, own_redis.url, gen_worker[1], tmp_path),
        "BRIDGEX_API_KEYS": json.dumps(KEYS),
        "BRIDGEX_KEY_QUOTAS": json.dumps(QUOTAS),
    }
    svc, api = start_api(log_dir, **env)
    try:
        with httpx.Client(base_url=api, timeout=30) as c:
            assert c.post("/translate", json=word("water"), headers=auth("u-quota")).status_code == 200
            assert usage(c, "u-quota")["today"]["characters"] == 5

            own_redis.stop()

            for key in ("u-one", "u-quota"):  # quota or not: served, uncounted (best-effort)
                t0 = time.perf_counter()
                r = c.post("/translate", json=word("water"), headers=auth(key))
                assert r.status_code == 200 and time.perf_counter() - t0 < 5, r.text
            r = c.post("/translate/batch", json={"items": [word("sun"), word("moon")]}, headers=auth("u-quota"))
            assert r.status_code == 200 and r.json()["succeeded"] == 2, r.text
            r = c.get("/usage", headers=auth("u-one"))
            assert r.status_code == 503 and r.json()["error"] == "redis_unavailable", r.text
            assert c.get("/usage/keys", headers=auth("u-admin")).status_code == 503
    finally:
        svc.stop()
