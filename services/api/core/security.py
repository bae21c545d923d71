"""API keys with scopes, a per-key rate limit in Redis, and a lockout for clients that guess keys.

Keys come from `settings.api_keys` ({"key": ["translate", "analyze", "admin"]}); they are compared as SHA-256
digests with `hmac.compare_digest` against every configured key, so timing reveals neither a key nor how
much of it matched. `admin` implies the other scopes. Open mode (no keys) exists only when
`settings.auth_open` is true and no keys are configured (both together is refused at start).

Rate limit policy: fixed one-minute windows per principal (the key; the client address in open mode), with a
cost per request (a batch costs one per item). Failed authentications (a wrong key) are counted per client;
past `auth_fail_limit` in a minute the client is refused with 429 for `auth_lockout_s`, valid key or not, so
guessing stops paying. The client address is the peer's, or X-Forwarded-For's only from trusted proxies
(services.api.server). When Redis is down both FAIL OPEN: the request is served (a metric and a log line
record it) because refusing every translation while the cache is down would turn a cache outage into a
full outage; the worker's own caps still protect the model.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from services.common import redis_keys as keys

from .errors import ApiError
from .observability import Metrics
from .redis import RedisGate, RedisUnavailable

log = logging.getLogger("bridgex.api")

SCOPES = ("translate", "analyze", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key id (a digest prefix, never the key) and its scopes."""

    key_id: str
    scopes: frozenset[str]
    open_mode: bool = False

    def has(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(key: str) -> str:
    """The name of a key that does not reveal it (a digest prefix): Principal.key_id, in usage and quotas."""
    return _digest(key).hex()[:12]


class KeyRing:
    """The configured keys, held as digests."""

    def __init__(self, api_keys: Mapping[str, list[str]] | None, open_mode: bool) -> None:
        if open_mode and api_keys:
            raise ValueError(
                "BRIDGEX_AUTH_OPEN=true together with BRIDGEX_API_KEYS is refused: a request "
                "without a key would get every scope. Unset one of them."
            )
        self.open_mode = open_mode
        self._keys: list[tuple[bytes, Principal]] = []
        for key, scopes in (api_keys or {}).items():
            unknown = set(scopes) - set(SCOPES)
            if unknown:
                raise ValueError(f"BRIDGEX_API_KEYS: unknown scope(s) {sorted(unknown)}; known: {list(SCOPES)}")
            d = _digest(key)
            self._keys.append((d, Principal(key_id=d.hex()[:12], scopes=frozenset(scopes))))

    @property
    def key_ids(self) -> list[str]:
        """The configured keys' ids, in configuration order."""
        return [principal.key_id for _, principal in self._keys]

    @staticmethod
    def presented_key(headers: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        key = headers.get("x-api-key")
        return key.strip() if key and key.strip() else None

    def authenticate(self, headers: Mapping[str, str], scope: str | None, client: str = "anonymous") -> Principal:
        """The caller's principal, or 401 (no/unknown key) / 403 (key lacks `scope`; None: checked later with
        `authorize`, after the lockout, so a locked-out client cannot tell a valid key from a wrong one)."""
        presented = self.presented_key(headers)
        if presented is None:
            if self.open_mode:
                return Principal(key_id=f"open:{client}", scopes=frozenset(SCOPES), open_mode=True)
            hint = (
                "no API keys are configured on this server: set BRIDGEX_API_KEYS (JSON) or "
                "BRIDGEX_AUTH_OPEN=true for local development"
                if not self._keys
                else "send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            )
            raise ApiError(
                401, "unauthenticated", f"an API key is required; {hint}", headers={"WWW-Authenticate": "Bearer"}
            )
        digest = _digest(presented)
        found: Principal | None = None
        for known, principal in self._keys:
            if hmac.compare_digest(known, digest):
                found = principal
        if found is None:
            raise ApiError(
                401,
                "invalid_api_key",
                "the API key is not valid",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if scope is not None:
            self.authorize(found, scope)
        return found

    @staticmethod
    def authorize(principal: Principal, scope: str) -> None:
        """403 when the principal's key lacks `scope` (the message names the key's scopes)."""
        if not principal.has(scope):
            raise ApiError(
                403,
                "insufficient_scope",
                f"this API key lacks the '{scope}' scope (it has: {', '.join(sorted(principal.scopes))})",
            )


class RateLimiter:
    """Fixed-window per-principal limit and the failed-auth lockout; fail open without Redis (module doc)."""

    def __init__(
        self,
        client: aioredis.Redis,
        gate: RedisGate,
        metrics: Metrics,
        per_minute: int,
        auth_fail_limit: int = 20,
        lockout_s: int = 300,
    ) -> None:
        self.client, self.gate, self.metrics, self.per_minute = client, gate, metrics, per_minute
        self.auth_fail_limit, self.lockout_s = auth_fail_limit, lockout_s
        self._warned_at = 0.0

    def _suspended(self, now: float, exc: Exception) -> None:
        if now - self._warned_at > 30:  # said once per 30 s in the log
            self._warned_at = now
            log.warning("rate limiting suspended (failing open) while Redis is unavailable: %s", exc)

    def _locked_out(self, ttl: int) -> ApiError:
        self.metrics.rate_limited.inc()
        wait = max(1, ttl)
        return ApiError(
            429,
            "locked_out",
            f"too many requests with invalid API keys from this client; retry after {wait}s",
            headers={"Retry-After": str(wait)},
        )

    async def check(
        self, principal: Principal, client: str, cost: int = 1, also: Callable[[Any], None] | None = None
    ) -> list[Any] | None:
        """Charge `cost` requests to the principal's window; 429 over the limit or while `client` is locked.
        `also(pipeline)` may queue reads that ride on the same round trip (the /translate bridge lookup): their
        replies are returned, an error reply as its exception object; None when Redis is unavailable."""
        now = time.time()
        window = int(now // 60)
        key = keys.rate_limit(principal.key_id, window)
        lock = keys.lockout(client)

        async def charge() -> tuple[int, int, list[Any]]:
            pipe = self.client.pipeline(transaction=False)
            pipe.ttl(lock)
            pipe.incrby(key, cost)
            pipe.expire(key, 61)
            if also is not None:
                also(pipe)
            replies = await pipe.execute(raise_on_error=False)
            for reply in replies[:3]:
                if isinstance(reply, Exception):
                    raise reply
            return int(replies[0]), int(replies[1]), replies[3:]

        try:
            locked, count, extra = await self.gate.run("ratelimit", charge)
        except RedisUnavailable as exc:
            self._suspended(now, exc)
            return None
        if locked > 0:
            raise self._locked_out(locked)
        if count > self.per_minute:
            self.metrics.rate_limited.inc()
            retry_after = max(1, int(60 - (now % 60)) + 1)
            raise ApiError(
                429,
                "rate_limited",
                f"rate limit of {self.per_minute} requests per minute for this key exceeded"
                f"{f' (this request costs {cost})' if cost > 1 else ''}; retry after {retry_after}s",
                headers={"Retry-After": str(retry_after)},
            )
        return extra

    async def auth_failed(self, client: str) -> ApiError | None:
        """Count a wrong key from `client`; the 429 to raise instead of the 401 once it is locked out."""
        now = time.time()
        fails = keys.auth_failures(client, int(now // 60))
        lock = keys.lockout(client)

        async def count() -> tuple[int, int]:
            pipe = self.client.pipeline(transaction=False)
            pipe.incr(fails)
            pipe.expire(fails, 61)
            pipe.ttl(lock)
            n, _, ttl = await pipe.execute()
            if int(n) >= self.auth_fail_limit and int(ttl) <= 0:
                await self.client.set(lock, "1", ex=self.lockout_s)
                ttl = self.lockout_s
            return int(n), int(ttl)

        try:
            _n, ttl = await self.gate.run("ratelimit", count)
        except RedisUnavailable as exc:
            self._suspended(now, exc)
            return None
        if ttl > 0:
            log.warning("client %s locked out for %ss after repeated invalid API keys", client, ttl)
            return self._locked_out(ttl)
        return None
