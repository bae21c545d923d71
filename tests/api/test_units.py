"""Unit tests of the gateway's own parts: key ring, input checks, Redis breaker, rate limiter, demos."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis
from bridgex.demos import text_demos, word_demos

from services.api.core.config import ApiSettings
from services.api.core.errors import ApiError
from services.api.core.observability import Metrics, clean_request_id
from services.api.core.redis import RedisGate, RedisUnavailable, async_client
from services.api.core.security import KeyRing, Principal, RateLimiter
from services.api.services import validation
from tests.api.conftest import write_data_dir
from tests.support import free_port

KEYS = {"t0ken-a": ["translate"], "t0ken-b": ["analyze"], "t0ken-c": ["admin"]}


def status_of(fn, *a) -> int:
    with pytest.raises(ApiError) as e:
        fn(*a)
    return e.value.status


def test_keyring_headers_scopes_and_open_mode() -> None:
    ring = KeyRing(KEYS, open_mode=False)
    p = ring.authenticate({"authorization": "Bearer t0ken-a"}, "translate")
    assert p.has("translate") and not p.has("analyze") and p.key_id != "t0ken-a" and len(p.key_id) == 12
    assert ring.authenticate({"x-api-key": "t0ken-b"}, "analyze").has("analyze")
    assert ring.authenticate({"authorization": "Bearer t0ken-c"}, "analyze").has("analyze")  # admin implies
    assert status_of(ring.authenticate, {}, "translate") == 401
    assert status_of(ring.authenticate, {"authorization": "Basic t0ken-a"}, "translate") == 401
    assert status_of(ring.authenticate, {"authorization": "Bearer t0ken-"}, "translate") == 401
    assert status_of(ring.authenticate, {"x-api-key": "t0ken-a"}, "analyze") == 403
    with pytest.raises(ApiError) as e:
        KeyRing({}, open_mode=False).authenticate({}, "translate")
    assert "BRIDGEX_AUTH_OPEN" in e.value.message  # says how to configure it
    opened = KeyRing({}, open_mode=True).authenticate({}, "admin", "1.2.3.4")
    assert opened.open_mode and opened.has("admin") and opened.key_id == "open:1.2.3.4"
    with pytest.raises(ValueError, match="unknown scope"):
        KeyRing({"k": ["root"]}, open_mode=False)


def test_validation_messages() -> None:
    s = ApiSettings(max_text_chars=10, max_tokens_limit=64)
    assert validation.pair("EN", "fra") == ("en", "fr")
    assert status_of(validation.pair, "en", "eng") == 422
    assert validation.bridge("Auto", "en", "fr") == "auto" and validation.bridge("deu", "en", "fr") == "de"
    with pytest.raises(ApiError, match="is the target language"):
        validation.bridge("fr", "en", "fr")
    with pytest.raises(ApiError, match="Paper languages"):
        validation.language("not a language", "source")
    with pytest.raises(ApiError, match="limit is 10"):
        validation.text("x" * 11, s)
    assert validation.max_tokens(None, "word", s) == 16 and validation.max_tokens(None, "text", s) == 64
    with pytest.raises(ApiError, match="over the limit of 64"):
        validation.max_tokens(65, "word", s)


def test_request_id_cleaning() -> None:
    assert clean_request_id("abc-1.2:x_y") == "abc-1.2:x_y"
    for bad in (None, "", "a b", "x" * 200, "ä"):
        assert len(clean_request_id(bad)) == 32


async def test_gate_breaker_fails_fast_then_recovers() -> None:
    gate = RedisGate(Metrics(), cooldown_s=0.2)
    calls = []

    async def down() -> None:
        calls.append(1)
        raise redis.exceptions.ConnectionError("refused")

    async def up() -> str:
        calls.append(1)
        return "ok"

    with pytest.raises(RedisUnavailable):
        await gate.run("x", down)
    assert gate.open
    with pytest.raises(RedisUnavailable):
        await gate.run("x", up)  # breaker open: not even tried
    assert len(calls) == 1
    with pytest.raises(RedisUnavailable):
        await gate.run_sync("x", lambda: calls.append(1))
    assert len(calls) == 1
    await asyncio.sleep(0.25)
    assert await gate.run("x", up) == "ok" and not gate.open


async def test_rate_limiter_real_redis_and_fail_open(redis_url: str) -> None:
    metrics = Metrics()
    client = async_client(redis_url)
    limiter = RateLimiter(client, RedisGate(metrics), metrics, per_minute=3)
    who = Principal("abc", frozenset({"translate"}))
    if time.time() % 60 > 58:  # keep the calls inside one window
        await asyncio.sleep(2.5)
    await limiter.check(who, "c1")
    await limiter.check(who, "c2", cost=2)  # a batch of 3 items: 1 + 2
    with pytest.raises(ApiError) as e:
        await limiter.check(who, "c1")
    assert e.value.status == 429 and 1 <= int(e.value.headers["Retry-After"]) <= 61
    await limiter.check(Principal("other", frozenset()), "c1")  # per key, not per client
    await client.aclose()

    dead = async_client(f"redis://127.0.0.1:{free_port()}/0")
    down = RateLimiter(dead, RedisGate(metrics), metrics, per_minute=1)
    t0 = time.perf_counter()
    for _ in range(5):
        await down.check(who, "c1")  # fails open: no exception
        assert await down.auth_failed("c1") is None
    assert time.perf_counter() - t0 < 2
    await dead.aclose()


async def test_failed_auth_lockout_per_client(redis_url: str) -> None:
    metrics = Metrics()
    client = async_client(redis_url)
    await client.flushdb()
    limiter = RateLimiter(client, RedisGate(metrics), metrics, per_minute=100, auth_fail_limit=3, lockout_s=30)
    who = Principal("good", frozenset({"translate"}))
    if time.time() % 60 > 58:
        await asyncio.sleep(2.5)
    assert await limiter.auth_failed("10.0.0.9") is None
    assert await limiter.auth_failed("10.0.0.9") is None
    locked = await limiter.auth_failed("10.0.0.9")  # the third wrong key locks the client out
    assert locked is not None and locked.status == 429 and locked.error == "locked_out"
    assert 1 <= int(locked.headers["Retry-After"]) <= 30
    with pytest.raises(ApiError) as e:  # a valid key from the locked client is refused too
        await limiter.check(who, "10.0.0.9")
    assert e.value.error == "locked_out"
    await limiter.check(who, "10.0.0.10")  # other clients are not affected
    await client.aclose()


def test_open_mode_with_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="AUTH_OPEN"):
        KeyRing(KEYS, open_mode=True)


def test_demonstrations_from_data_dir(tmp_path: Path) -> None:
    root = str(write_data_dir(tmp_path, pairs=(("en", "fr"), ("en", "de"))))
    step1, step2 = word_demos(root, "en", "fr", "de", 3, "wateren")
    assert len(step1) == len(step2) == 3
    assert all(d.source_text != "wateren" for d in step1 + step2)
    assert all(d.bridge_text and d.bridge_text.endswith("de") and d.target_text.endswith("fr") for d in step2)
    _, direct = word_demos(root, "en", "fr", None, 2, "x")
    assert len(direct) == 2 and direct[0].bridge_text is None
    s1, s2 = text_demos(root, "en", "fr", "de", 2)
    assert len(s1) == len(s2) == 2 and "in de" in s2[0].bridge_text
    with pytest.raises(FileNotFoundError, match="en-sw"):  # the gateway gathers it, or answers 503 / zero-shot
        word_demos(root, "en", "sw", None, 2, "x")


# ------------------------------------------------------------------------------------- served weights
class _Identity:
    """Stands in for the generation client: answers `identity()` from a script of values or exceptions."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def identity(self) -> object:
        self.calls += 1
        a = self.answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a


def test_served_weights_cached_kept_on_errors_and_unknown_is_none() -> None:
    from bridgex.generation.client import WorkerUnavailable

    from services.api.services.weights import ServedWeights

    async def go() -> None:
        fake = _Identity({"weight_hash": "A" * 64}, WorkerUnavailable("down"), {"weight_hash": "unknown"}, None)
        w = ServedWeights(fake, ttl_s=0.2)  # type: ignore[arg-type]
        assert await w.current() == "a" * 64
        assert await asyncio.gather(*(w.current() for _ in range(5))) == ["a" * 64] * 5 and fake.calls == 1
        await asyncio.sleep(0.25)
        assert await w.current() == "a" * 64 and fake.calls == 2  # worker down: the last known hash stays
        w._expires = 0.0  # the retry after an error, without waiting for it
        assert await w.current() is None  # "unknown": nothing to check against
        w._expires = 0.0
        assert await w.current() is None and fake.calls == 4  # a server without the identity endpoint

    asyncio.run(go())


def test_stale_note_only_for_known_different_weights() -> None:
    from services.api.services.weights import same_weights, stale_note

    full, other = "ab" * 32, "cd" * 32
    ranking = {"provenance": {"weight_hash": full}}
    assert stale_note(ranking, full, "en", "fr") is None
    assert stale_note(ranking, full[:12], "en", "fr") is None  # an abbreviated hash of the same weights
    assert stale_note(ranking, None, "en", "fr") is None  # the worker does not say
    assert stale_note({"provenance": {"weight_hash": "unknown"}}, other, "en", "fr") is None
    assert stale_note({}, other, "en", "fr") is None  # a ranking that does not say
    note = stale_note(ranking, other, "en", "fr")
    assert note is not None and full[:12] in note and other[:12] in note and "en->fr" in note
    assert not same_weights(full[:11], full)  # too short a prefix proves nothing
