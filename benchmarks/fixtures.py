"""What several benchmarks share: a percentile, and a cached ranking the gateway serves."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.api.core.config import ApiSettings
from tests.support import RedisServer, Service, publish_served, start_api, start_worker


def gateway_env(model: str, redis_url: str, worker_url: str, home: Path, key: str, **extra: str) -> dict[str, str]:
    """Environment of a benchmark gateway: one translate key, no rate limit in the way."""
    return {
        "BRIDGEX_MODEL": model,
        "BRIDGEX_REDIS_URL": redis_url,
        "BRIDGEX_WORKER_URL": worker_url,
        "BRIDGEX_API_KEYS": json.dumps({key: ["translate"]}),
        "BRIDGEX_RATE_LIMIT_PER_MINUTE": "100000000",
        "BRIDGEX_HOME": str(home),
        **extra,
    }


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def publish_fixture(redis_url: str, env: dict[str, str], source: str, target: str) -> None:
    """A ranking for (source, target) under the configuration the gateway with `env` serves, so `/bridges`
    and `auto` are cache hits (the analysis itself is not what this measures)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = ApiSettings(_env_file=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    ranking = {
        "ranked": [{"code": "de", "score": 0.71, "rank": 1}, {"code": "it", "score": 0.52, "rank": 2}],
        "best": "de",
        "provenance": {"note": "benchmark fixture"},
    }
    publish_served(redis_url, settings, source, target, ranking)


@dataclass
class GatewayStack:
    api: str
    worker: str
    env: dict[str, str]
    api_svc: Service


@contextmanager
def gateway_stack(
    model: str, tmp: Path, key: str, *, worker_env: dict[str, str] | None = None, **gateway_extra: str
) -> Iterator[GatewayStack]:
    """A private Redis, the generation worker and the gateway, with an en->fr ranking published (a cache hit);
    all stopped on exit, in reverse order."""
    with ExitStack() as started:
        rs = RedisServer().start()
        started.callback(rs.stop)
        wsvc, worker = start_worker(model, tmp, **(worker_env or {}))
        started.callback(wsvc.stop)
        env = gateway_env(model, rs.url, worker, tmp, key, **gateway_extra)
        asvc, api = start_api(tmp, **env)
        started.callback(asvc.stop)
        publish_fixture(rs.url, env, "en", "fr")
        yield GatewayStack(api, worker, env, asvc)
