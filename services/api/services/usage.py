"""Usage per key (what DeepL's `GET /v2/usage` gives) and optional daily character quotas.

Counters, per key id (`Principal.key_id`, never the key) in Redis hashes (`redis_keys.usage`): `requests`,
`characters` (of the source `text`, as sent: Python code points), `generated_tokens` (the worker's
`usage.completion_tokens` over every step of the chain) and `analyses`, for the current minute and UTC day
(both expire) and in total (kept).

Policy (README "Usage and quotas"):
- Only what succeeded is counted: a translation that answers 200 (a batch: each item that has a result), and a
  `POST /analyze` the gateway accepted (a new job, one joined while in flight, or a known result; not a replay
  of an earlier Idempotency-Key). Analyses `auto` enqueues are the service's doing and are charged to nobody.
- Counts are written after the response, never awaited before it: those of keys without a quota gather for
  `BATCH_S` and go in one pipeline for every request in that time (one round trip, not one per request, and
  not in the window where the client reads its answer); a key with a quota is written at once, as it gives
  back what failed. A usage read on the same gateway writes what waits first. A key with a quota adds one atomic
  step before it (`RESERVE`, a Lua script): the request's characters are reserved in today's counter only when
  they fit, so concurrent requests never overshoot the quota; what then fails is given back by the same pipeline.
- A request (or a whole batch) that would cross the quota is refused whole: 429 `quota_exceeded`, Retry-After
  the seconds to the next UTC midnight, when the day's counter starts again.
- Best-effort: counting never fails a translation. With Redis down the request is served, neither counted nor
  held to its quota (a metric and a log line record it), as the rate limiter fails open.
- A request is counted in the minute and day it was admitted (one that runs across midnight counts in the day
  its quota was checked).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from services.common import redis_keys as keys

from ..core.config import KeyQuota
from ..core.errors import ApiError
from ..core.observability import Metrics
from ..core.redis import RedisGate, RedisUnavailable
from ..core.security import KeyRing, Principal, key_id

log = logging.getLogger("bridgex.api")

FIELDS = ("requests", "characters", "generated_tokens", "analyses")
MINUTE_TTL_S = 120
DAY_TTL_S = 2 * 86400
BATCH_S = 0.05
"""How long the counts of keys without a quota wait to be written together."""

RESERVE = """
local used = tonumber(redis.call('HGET', KEYS[1], 'characters') or '0')
local want = tonumber(ARGV[1])
if used + want > tonumber(ARGV[2]) then
  return {0, used}
end
used = redis.call('HINCRBY', KEYS[1], 'characters', want)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, used}
"""
"""Check and reserve in one step: KEYS[1] today's hash; ARGV chars, quota, ttl -> {admitted, used}."""


def resolve_quotas(quotas: Mapping[str, KeyQuota], ring: KeyRing) -> dict[str, int]:
    """key id -> characters per day, from BRIDGEX_KEY_QUOTAS entries named by key id or by key. An entry that
    names no configured key is refused (a typo would silently leave a key without its quota)."""
    known = set(ring.key_ids)
    out: dict[str, int] = {}
    for n, (name, quota) in enumerate(quotas.items(), 1):
        kid = name if name in known else key_id(name)
        if kid not in known:
            raise ValueError(
                f"BRIDGEX_KEY_QUOTAS: entry #{n} names no configured key (neither a key of BRIDGEX_API_KEYS nor "
                f"a key id; the key ids are {sorted(known)})"
            )
        if kid in out:
            raise ValueError(f"BRIDGEX_KEY_QUOTAS: key id {kid} has two entries (by key and by key id)")
        out[kid] = quota.chars_per_day
    return out


# ------------------------------------------------------------------------------------------- time windows


@dataclass(frozen=True)
class Window:
    """The minute and UTC day a moment falls in."""

    minute: int
    day_start: datetime

    @classmethod
    def at(cls, now: float) -> Window:
        t = datetime.fromtimestamp(now, UTC)
        return cls(int(now // 60), t.replace(hour=0, minute=0, second=0, microsecond=0))

    @property
    def day_end(self) -> datetime:
        return self.day_start + timedelta(days=1)

    def periods(self, principal_id: str) -> tuple[str, str, str]:
        """(minute, day, total) hash keys of a key id."""
        return (
            keys.usage(principal_id, f"m{self.minute}"),
            keys.usage(principal_id, f"d{self.day_start:%Y%m%d}"),
            keys.usage(principal_id, "total"),
        )


def seconds_to_midnight(now: float) -> int:
    return max(1, int(Window.at(now).day_end.timestamp() - now + 0.999))


# ------------------------------------------------------------------------------------------- tokens


@dataclass
class Tally:
    tokens: int = 0


_TALLY: ContextVar[Tally | None] = ContextVar("bridgex_usage_tally", default=None)


def generated(completion_tokens: int) -> None:
    """Add a completion's tokens to the translation being counted in this task (no-op outside one)."""
    tally = _TALLY.get()
    if tally is not None:
        tally.tokens += max(0, int(completion_tokens))


def generated_by(result: object) -> None:
    """Count what one worker call returned: a Completion, or the completions of one request (beams), which
    share its `usage`; anything else (a token count, a stream's delta) generated nothing to count here."""
    first = result[0] if isinstance(result, list) and result else result
    used = getattr(first, "usage", None)
    if used is not None:
        generated(getattr(used, "completion_tokens", 0) or 0)


# ------------------------------------------------------------------------------------------- one request


@dataclass
class _Item:
    chars: int
    ok: bool = False
    tokens: int = 0


@dataclass
class Charge:
    """The translations of one request (one, or a batch's items): which succeeded, with their tokens."""

    items: list[_Item]
    reserved: int = 0  # characters held in today's counter by the quota check
    window: Window = field(default_factory=lambda: Window.at(time.time()))

    @contextmanager
    def item(self, index: int = 0) -> Iterator[None]:
        """Run one translation inside: counted when the block ends without an exception."""
        tally = Tally()
        token = _TALLY.set(tally)
        try:
            yield
        finally:
            _TALLY.reset(token)
        self.items[index].ok, self.items[index].tokens = True, tally.tokens


class UsageMeter:
    """Counts usage per key and enforces quotas; best-effort without Redis (module doc)."""

    def __init__(
        self, client: aioredis.Redis, gate: RedisGate, metrics: Metrics, ring: KeyRing, quotas: Mapping[str, int]
    ) -> None:
        self.client, self.gate, self.metrics, self.ring = client, gate, metrics, ring
        self.quotas = dict(quotas)
        self._reserve = client.register_script(RESERVE)
        self._warned_at = 0.0
        self._settling: set[asyncio.Future[None]] = set()
        self._batch: dict[tuple[str, str, str, str], list[int]] = {}
        """(key id, minute, day, total hash) -> [requests, characters, generated tokens] not written yet."""
        self._batch_task: asyncio.Future[None] | None = None

    def _suspended(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 30:  # said once per 30 s in the log
            self._warned_at = now
            log.warning("usage %s skipped (best-effort) while Redis is unavailable: %s", what, exc)

    # --------------------------------------------------------------------------------------- writing
    @asynccontextmanager
    async def charge(self, principal: Principal, texts: Sequence[str]) -> AsyncIterator[Charge]:
        """Admit the request's texts against the key's quota (429 when they do not fit), then count what
        succeeded (`Charge.item`) and give back the rest, in one pipeline when the block ends."""
        charge = Charge([_Item(len(t)) for t in texts])
        quota = self.quotas.get(principal.key_id)
        if quota is not None:
            charge.reserved = await self._admit(principal, charge, quota)
        try:
            yield charge
        finally:
            # not awaited (awaited, it cost ~1 ms of every request's latency). A quota's reservation is settled at
            # once, in a task of its own, so a client that goes away cannot cancel it and leave its characters
            # reserved; other counts join the batch. `read` and `drain` write and wait for what is pending.
            if charge.reserved:
                self._track(asyncio.ensure_future(self._settle(principal, charge)))
            else:
                self._add(principal, charge)

    def _track(self, task: asyncio.Future[None]) -> None:
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def _add(self, principal: Principal, charge: Charge) -> None:
        ok = [it for it in charge.items if it.ok]
        if not ok:
            return
        row = self._batch.setdefault((principal.key_id, *charge.window.periods(principal.key_id)), [0, 0, 0])
        row[0] += len(ok)
        row[1] += sum(it.chars for it in ok)
        row[2] += sum(it.tokens for it in ok)
        if self._batch_task is None:
            self._batch_task = asyncio.ensure_future(self._write_batch_after(BATCH_S))
            self._track(self._batch_task)

    async def _write_batch_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._batch_task is asyncio.current_task():
            self._batch_task = None
        await self._write_batch()

    async def _write_batch(self) -> None:
        """Every pending count of keys without a quota, in one pipeline (best-effort, as every count)."""
        batch, self._batch = self._batch, {}
        if not batch:
            return

        async def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for (_, minute, day, total), (n, chars, tokens) in batch.items():
                for key in (minute, day, total):
                    pipe.hincrby(key, "requests", n)
                    pipe.hincrby(key, "generated_tokens", tokens)
                    if chars:
                        pipe.hincrby(key, "characters", chars)
                pipe.expire(minute, MINUTE_TTL_S)
                pipe.expire(day, DAY_TTL_S)
            pipe.sadd(keys.USAGE_KEYS, *sorted({key_id for key_id, *_ in batch}))
            await pipe.execute()

        await self._count(", ".join(sorted({key_id for key_id, *_ in batch})), write)

    async def drain(self) -> None:
        """Write what is pending and wait for the counts still being written (before a read of usage, and at
        shutdown)."""
        if self._batch:
            await self._write_batch()
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def _admit(self, principal: Principal, charge: Charge, quota: int) -> int:
        want = sum(it.chars for it in charge.items)
        day = charge.window.periods(principal.key_id)[1]
        try:
            admitted, used = await self.gate.run(
                "usage", lambda: self._reserve(keys=[day], args=[want, quota, DAY_TTL_S])
            )
        except RedisUnavailable as exc:
            self._suspended("quota check", exc)
            return 0
        except Exception:  # counting must never fail a request: the quota fails open as on an outage
            log.exception("quota check failed for key %s", principal.key_id)
            return 0
        if int(admitted):
            return want
        self.metrics.quota_exceeded.inc()
        now = time.time()
        wait = seconds_to_midnight(now)
        resets = charge.window.day_end.isoformat().replace("+00:00", "Z")
        what = (
            f"this request ({want} characters) is more than the whole daily quota; split it"
            if want > quota
            else f"{int(used)} used today (UTC), this request needs {want}"
        )
        raise ApiError(
            429,
            "quota_exceeded",
            f"daily character quota of {quota} for this key exceeded: {what}; it resets at {resets} (in {wait}s)",
            headers={"Retry-After": str(wait)},
            details={"quota": quota, "used": int(used), "requested": want, "resets_at": resets},
        )

    async def _settle(self, principal: Principal, charge: Charge) -> None:
        """A charge with a quota reservation: what succeeded, and what failed given back, at once."""
        ok = [it for it in charge.items if it.ok]
        n, chars, tokens = len(ok), sum(it.chars for it in ok), sum(it.tokens for it in ok)
        minute, day, total = charge.window.periods(principal.key_id)

        async def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for key in (minute, day, total):
                if n:
                    pipe.hincrby(key, "requests", n)
                    pipe.hincrby(key, "generated_tokens", tokens)
                delta = chars - (charge.reserved if key == day else 0)  # today's: what was reserved is given back
                if delta:
                    pipe.hincrby(key, "characters", delta)
            pipe.expire(minute, MINUTE_TTL_S)
            pipe.expire(day, DAY_TTL_S)
            pipe.sadd(keys.USAGE_KEYS, principal.key_id)
            await pipe.execute()

        await self._count(principal.key_id, write)

    async def analysis(self, principal: Principal) -> None:
        """Count one accepted analysis submission (best-effort)."""
        periods = Window.at(time.time()).periods(principal.key_id)

        async def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for key in periods:
                pipe.hincrby(key, "analyses", 1)
            pipe.expire(periods[0], MINUTE_TTL_S)
            pipe.expire(periods[1], DAY_TTL_S)
            pipe.sadd(keys.USAGE_KEYS, principal.key_id)
            await pipe.execute()

        await self._count(principal.key_id, write)

    async def _count(self, key_ids: str, write: Callable[[], Awaitable[None]]) -> None:
        """Run one counting pipeline, best-effort: counting must never fail a request."""
        try:
            await self.gate.run("usage", write)
        except RedisUnavailable as exc:
            self._suspended("counting", exc)
        except Exception:
            log.exception("usage counting failed for key(s) %s", key_ids)

    # --------------------------------------------------------------------------------------- reading
    async def read(self, key_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Usage of these key ids (raises RedisUnavailable): one pipeline for all of them, after this gateway's
        pending counts (a client reads its own requests; another gateway's land within milliseconds)."""
        await self.drain()
        now = time.time()
        window = Window.at(now)

        async def fetch() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for kid in key_ids:
                for key in window.periods(kid):
                    pipe.hgetall(key)
            return await pipe.execute()

        raw = await self.gate.run("usage", fetch)
        configured = set(self.ring.key_ids)
        out = []
        for i, kid in enumerate(key_ids):
            minute, day, total = ({f: int(h.get(f, 0)) for f in FIELDS} for h in raw[3 * i : 3 * i + 3])
            minute_start = datetime.fromtimestamp(window.minute * 60, UTC)
            quota = self.quotas.get(kid)
            out.append(
                {
                    "key_id": kid,
                    "configured": kid in configured,
                    "minute": {
                        **minute,
                        "period_start": minute_start,
                        "period_resets_at": minute_start + timedelta(minutes=1),
                    },
                    "today": {**day, "period_start": window.day_start, "period_resets_at": window.day_end},
                    "total": total,
                    "quota": None
                    if quota is None
                    else {
                        "chars_per_day": quota,
                        "characters_used": day["characters"],
                        "characters_remaining": max(0, quota - day["characters"]),
                        "period_resets_at": window.day_end,
                    },
                    "period_resets_at": window.day_end,
                }
            )
        return out

    async def known_key_ids(self) -> list[str]:
        """The configured key ids (in order), then every other key id with counters (raises RedisUnavailable)."""
        await self.drain()
        seen = await self.gate.run("usage", lambda: self.client.smembers(keys.USAGE_KEYS))
        configured = self.ring.key_ids
        return configured + sorted(set(seen) - set(configured))
