"""Redis access for the gateway: short timeouts, no retry storms, and a brief circuit breaker.

A stopped Redis must cost a request milliseconds, not seconds: connects and reads time out fast, and after a
connection failure every Redis call fails at once for `cooldown_s` (then one call tries again). Callers turn
`RedisUnavailable` into their own policy (503 for /analyze, fallback for auto-bridge, fail-open rate limit).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from starlette.concurrency import run_in_threadpool

from .observability import Metrics

T = TypeVar("T")

SOCKET_TIMEOUT_S = 0.5
COOLDOWN_S = 1.0
_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisUnavailable(RuntimeError):
    """Redis could not be reached (or was reached too slowly) just now."""


def async_client(url: str, timeout: float = SOCKET_TIMEOUT_S) -> aioredis.Redis:
    from redis.asyncio.retry import Retry

    return aioredis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1), decode_responses=True
    )


def sync_client(url: str, timeout: float = SOCKET_TIMEOUT_S) -> redis.Redis:
    from redis.retry import Retry

    return redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1)
    )


class RedisGate:
    """Runs Redis operations (async, or sync ones in the thread pool) behind one circuit breaker."""

    def __init__(self, metrics: Metrics, cooldown_s: float = COOLDOWN_S) -> None:
        self.metrics = metrics
        self.cooldown_s = cooldown_s
        self._down_until = 0.0
        self.last_error: str | None = None

    @property
    def open(self) -> bool:
        """True while the breaker is open (Redis recently failed)."""
        return time.monotonic() < self._down_until

    def _check(self, op: str) -> None:
        if self.open:
            raise RedisUnavailable(f"Redis is unavailable ({self.last_error}); retry shortly")

    def _failed(self, op: str, exc: BaseException) -> RedisUnavailable:
        self.metrics.redis_errors.labels(op).inc()
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        self._down_until = time.monotonic() + self.cooldown_s
        return RedisUnavailable(f"Redis is unavailable ({self.last_error})")

    async def run(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        self._check(op)
        try:
            out = await fn()
        except _ERRORS as exc:
            raise self._failed(op, exc) from exc
        self._down_until = 0.0
        return out

    async def run_sync(self, op: str, fn: Callable[[], T]) -> T:
        self._check(op)
        try:
            out = await run_in_threadpool(fn)
        except _ERRORS as exc:
            raise self._failed(op, exc) from exc
        self._down_until = 0.0
        return out
