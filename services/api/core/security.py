"""API keys with scopes, and a per-key rate limit in Redis.

Keys come from `settings.api_keys` ({"key": ["translate", "analyze", "admin"]}); they are compared as SHA-256
digests with `hmac.compare_digest` against every configured key, so timing reveals neither a key nor how
much of it matched. `admin` implies the other scopes. Open mode (no keys) exists only when
`settings.auth_open` is true; it is logged loudly at start.

Rate limit policy: fixed one-minute windows per key (`INCR` + `EXPIRE` in one round trip). When Redis is down
the limiter FAILS OPEN: the request is served (a metric and a log line record it) because refusing every
translation while the cache is down would turn a cache outage into a full outage; the generation worker's own
bounded queue (429) still protects the model.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis

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


class KeyRing:
    """The configured keys, held as digests."""

    def __init__(self, api_keys: Mapping[str, list[str]] | None, open_mode: bool) -> None:
        self.open_mode = open_mode
        self._keys: list[tuple[bytes, Principal]] = []
        for key, scopes in (api_keys or {}).items():
            unknown = set(scopes) - set(SCOPES)
            if unknown:
                raise ValueError(f"BRIDGEX_API_KEYS: unknown scope(s) {sorted(unknown)}; "
                                 f"known: {list(SCOPES)}")
            d = _digest(key)
            self._keys.append((d, Principal(key_id=d.hex()[:12], scopes=frozenset(scopes))))

    @staticmethod
    def presented_key(headers: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        key = headers.get("x-api-key")
        return key.strip() if key and key.strip() else None

    def authenticate(self, headers: Mapping[str, str], scope: str, client: str = "anonymous") -> Principal:
        """The caller's principal, or 401 (no/unknown key) / 403 (key lacks `scope`)."""
        presented = self.presented_key(headers)
        if presented is None:
            if self.open_mode:
                return Principal(key_id=f"open:{client}", scopes=frozenset(SCOPES), open_mode=True)
            hint = ("no API keys are configured on this server: set BRIDGEX_API_KEYS (JSON) or "
                    "BRIDGEX_AUTH_OPEN=true for local development"
                    if not self._keys else "send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
            raise ApiError(401, "unauthenticated", f"an API key is required; {hint}",
                           headers={"WWW-Authenticate": "Bearer"})
        digest = _digest(presented)
        found: Principal | None = None
        for known, principal in self._keys:
            if hmac.compare_digest(known, digest):
                found = principal
        if found is None:
            raise ApiError(401, "invalid_api_key", "the API key is not valid",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if not found.has(scope):
            raise ApiError(403, "insufficient_scope",
                           f"this API key lacks the '{scope}' scope "
                           f"(it has: {', '.join(sorted(found.scopes))})")
        return found


class RateLimiter:
    """Fixed-window per-key limit; fails open when Redis is unavailable (see module docstring)."""

    def __init__(self, client: aioredis.Redis, gate: RedisGate, metrics: Metrics, per_minute: int) -> None:
        self.client, self.gate, self.metrics, self.per_minute = client, gate, metrics, per_minute
        self._warned_at = 0.0

    async def check(self, principal: Principal) -> None:
        now = time.time()
        window = int(now // 60)
        key = f"bridgex:ratelimit:{principal.key_id}:{window}"

        async def incr() -> int:
            pipe = self.client.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 61)
            count, _ = await pipe.execute()
            return int(count)

        try:
            count = await self.gate.run("ratelimit", incr)
        except RedisUnavailable as exc:  # fail open (module docstring), said once per 30 s in the log
            if now - self._warned_at > 30:
                self._warned_at = now
                log.warning("rate limiting suspended (failing open) while Redis is unavailable: %s", exc)
            return
        if count > self.per_minute:
            self.metrics.rate_limited.inc()
            retry_after = max(1, int(60 - (now % 60)) + 1)
            raise ApiError(429, "rate_limited",
                           f"rate limit of {self.per_minute} requests per minute for this key exceeded; "
                           f"retry after {retry_after}s",
                           headers={"Retry-After": str(retry_after)})
