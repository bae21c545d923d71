"""POST /translate's bridge lookup rides on the rate limiter's round trip (services.api.services.bridge_cache
.Prefetch, deps.require(bridge_prefetch=True)): real Redis, a published ranking, no generation. The lookup's own
round trip is made to fail, so a ranking found proves it came with the rate limit."""

from __future__ import annotations

import pytest
import redis

from services.api.core.config import ApiSettings
from services.api.core.security import Principal
from services.api.deps import AppContext
from services.api.services import bridge_cache
from services.common import redis_keys
from tests.support import publish_served


class Body:
    """What the dependency reads of a request: its parsed JSON."""

    def __init__(self, value: object) -> None:
        self.value = value

    async def json(self) -> object:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def publish(redis_url: str, settings: ApiSettings, source: str, target: str) -> None:
    ranking = {"ranked": [{"code": "de", "score": 0.7, "rank": 1}], "best": "de"}
    publish_served(redis_url, settings, source, target, ranking)


@pytest.fixture
def ctx(redis_url: str) -> AppContext:
    redis.Redis.from_url(redis_url).flushall()
    return AppContext.build(ApiSettings(_env_file=None, redis_url=redis_url, auth_open=True))


async def test_which_bodies_prefetch(ctx: AppContext) -> None:
    got = await bridge_cache.prefetch(Body({"text": "w", "source": "EN", "target": " fr "}), ctx)
    assert got is not None and (got.source, got.target) == ("en", "fr") and not got.done  # codes as validated
    assert (await bridge_cache.prefetch(Body({"source": "en", "target": "fr", "bridge": "AUTO"}), ctx)) is not None
    for body in (
        {"source": "en", "target": "fr", "bridge": "none"},  # no lookup
        {"source": "en", "target": "fr", "bridge": "de"},
        {"source": "en", "target": "fr", "use_cache": False},
        {"source": "auto", "target": "fr"},  # the pair is known only after detection
        {"source": "en", "target": "en"},  # refused by the validation, which says why
        {"source": "xx-not-a-language", "target": "fr"},
        {"source": 3, "target": "fr"},
        ["en", "fr"],
        ValueError("not JSON"),
    ):
        assert await bridge_cache.prefetch(Body(body), ctx) is None, body
    await ctx.aclose()


async def test_lookup_in_the_rate_limit_round_trip(
    ctx: AppContext, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(redis_url, ctx.settings, "en", "fr")
    me = Principal("k1", frozenset({"translate"}))

    async def no_second_trip(*a: object, **k: object) -> None:
        raise AssertionError("the lookup made its own round trip")

    assert await bridge_cache.latest(ctx, "en", "fr") is not None  # a first lookup on its own loads the script
    hit = await bridge_cache.prefetch(Body({"source": "en", "target": "fr"}), ctx)
    miss = await bridge_cache.prefetch(Body({"source": "en", "target": "de"}), ctx)
    assert hit is not None and miss is not None
    for pending in (hit, miss):
        pending.receive(await ctx.limiter.check(me, "c", also=lambda p, x=pending: x.queue(p, ctx)))
        assert pending.done
    monkeypatch.setattr(bridge_cache, "_lookup", no_second_trip)
    ranking = await bridge_cache.latest(ctx, "en", "fr", prefetched=hit)
    assert ranking is not None and ranking["best"] == "de" and ranking["cache_key"]
    assert await bridge_cache.latest(ctx, "en", "de", prefetched=miss) is None  # a miss is an answer too
    with pytest.raises(AssertionError, match="own round trip"):  # another pair than the prefetched one
        await bridge_cache.latest(ctx, "en", "de", prefetched=hit)
    counted = redis.Redis.from_url(redis_url).keys(redis_keys.rate_limit("k1", 0).rsplit(":", 1)[0] + ":*")
    assert [int(redis.Redis.from_url(redis_url).get(k)) for k in counted] == [2]  # both checks were counted
    await ctx.aclose()


async def test_a_script_lost_by_a_restarted_redis_falls_back(ctx: AppContext, redis_url: str) -> None:
    """After SCRIPT FLUSH (what a Redis restart does) the prefetch's EVALSHA fails alone: the rate limit still
    counts, and the lookup is made on its own (which loads the script again)."""
    publish(redis_url, ctx.settings, "en", "fr")
    me = Principal("k1", frozenset({"translate"}))
    assert await bridge_cache.latest(ctx, "en", "fr") is not None  # the script loaded
    pending = await bridge_cache.prefetch(Body({"source": "en", "target": "fr"}), ctx)
    assert pending is not None
    redis.Redis.from_url(redis_url).script_flush()
    pending.receive(await ctx.limiter.check(me, "c", also=lambda p: pending.queue(p, ctx)))
    assert not pending.done
    counted = redis.Redis.from_url(redis_url).keys(redis_keys.rate_limit("k1", 0).rsplit(":", 1)[0] + ":*")
    assert [int(redis.Redis.from_url(redis_url).get(k)) for k in counted] == [1]
    ranking = await bridge_cache.latest(ctx, "en", "fr", prefetched=pending)
    assert ranking is not None and ranking["best"] == "de"
    await ctx.aclose()
