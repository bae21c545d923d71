"""The bridge cache: published rankings in Redis (LiteLLM-style versioned keys plus a "latest" index), and the
memory of failed analyses.

Writer: the analyzer after a finished ranking (or a failure). Readers: the gateway (translate, /bridges).
Everything is per *configuration* (`bridgex.fingerprint.config_fingerprint` of the request's method parameters):
Keys (services.common.redis_keys):
- `bridge(...)` -> the ranked artifact JSON with provenance and the served choice; kept, not expired.
- `bridge_latest(...)` -> the versioned key of the newest ranking for (model, revision, config, source, target).
- `bridge_pairs(...)` -> set of "src:tgt" pairs with a published ranking (matrix view).
- `bridge_configs(...)` -> the method parameters of every configuration published (so /bridges can list them).
- `bridge_publishes(...)` -> per pair, how many rankings were published (one per finished job: counted, so a
  double publish shows).
- `analysis_failure(...)` -> the last failure of a pair: error, attempts, and when `auto` may enqueue again.
Keys use the model + revision of the *request* (settings.model / settings.model_revision), so the gateway
finds them with its own settings; the weight hash actually loaded is in the provenance.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import redis
from redis.commands.core import Script

from services.common import redis_keys as keys


def _s(v: bytes | str | None) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


LATEST_SCRIPT = """
local key = redis.call('GET', KEYS[1])
if not key then return false end
local value = redis.call('GET', key)
if not value then return false end
return {key, value}
"""
"""The one read of a pair's newest ranking: `bridge_latest` -> versioned key -> stored JSON, in one round trip
(single Redis: the second key is the first's value). BridgeStore and the gateway's async path both run it."""


def latest_found(found: object) -> tuple[str, bytes] | None:
    """(versioned key, stored JSON bytes) from LATEST_SCRIPT's reply, or None."""
    if not found:
        return None
    key, raw = found  # type: ignore[misc]
    return _s(key) or "", (raw.encode() if isinstance(raw, str) else raw)


def decode_ranking(key: str, raw: bytes | str) -> dict[str, Any]:
    """A stored ranking as a dict, with the key it was read under as `cache_key` (the format's one reader)."""
    out = json.loads(raw)
    out["cache_key"] = key
    return out


def best_of(ranking: dict[str, Any]) -> tuple[str | None, float | None]:
    """(code, score) of the HSIC best candidate, whatever shape `best` has (code string or candidate dict)."""
    ranked = ranking.get("ranked") or []
    best = ranking.get("best")
    if isinstance(best, dict):
        return best.get("code"), best.get("score")
    if isinstance(best, str):
        score = next((c.get("score") for c in ranked if c.get("code") == best), None)
        return best, score
    if ranked:
        top = min(ranked, key=lambda c: c.get("rank", 0))
        return top.get("code"), top.get("score")
    return None, None


def served_of(ranking: dict[str, Any]) -> tuple[str | None, str]:
    """(bridge or None for direct translation, reason) that `auto` serves from a published ranking."""
    served = ranking.get("served")
    if isinstance(served, dict):
        return served.get("bridge"), str(served.get("reason") or "")
    code, _ = best_of(ranking)
    return code, "HSIC argmax (ranking without a serving decision)"


def served_demos(ranking: dict[str, Any]) -> tuple[list[str] | None, str]:
    """(demonstration source words the dev validation measured, how they were chosen); (None, "frequent") for
    a ranking from before they were recorded."""
    served = ranking.get("served")
    served = served if isinstance(served, dict) else {}
    words = served.get("demo_words")
    return ([str(w) for w in words] if isinstance(words, list) else None), str(served.get("demo_choice") or "frequent")


class BridgeStore:
    def __init__(self, redis: redis.Redis) -> None:
        self.redis = redis
        self._latest: Script | None = None

    def publish(
        self,
        ranking: dict[str, Any],
        *,
        model: str,
        revision: str | None,
        config: str,
        params: dict[str, Any],
        source: str,
        target: str,
        probe_hash: str,
        method_version: str,
    ) -> str:
        """Store the ranking under its versioned key and point "latest" at it, atomically; clear the pair's
        failure record. Returns the key."""
        key = keys.bridge(model, revision, source, target, method_version, config, probe_hash)
        code, score = best_of(ranking)
        served, reason = served_of(ranking)
        value = {
            **ranking,
            "cache_key": key,
            "config": config,
            "best_code": code,
            "best_score": score,
            "served_bridge": served,
            "served_reason": reason,
            "provenance": {
                **(ranking.get("provenance") or {}),
                "model": model,
                "revision": revision,
                "source": source,
                "target": target,
                "probe_hash": probe_hash,
                "method_version": method_version,
                "config": config,
                "published_at": datetime.now(UTC).isoformat(),
            },
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, json.dumps(value, ensure_ascii=False, default=str))
        pipe.set(keys.bridge_latest(model, revision, config, source, target), key)
        pipe.sadd(keys.bridge_pairs(model, revision, config), f"{source}:{target}")
        pipe.hset(keys.bridge_configs(model, revision), config, json.dumps(params, sort_keys=True, default=str))
        pipe.delete(keys.analysis_failure(model, revision, config, source, target))
        pipe.hincrby(keys.bridge_publishes(model, revision, config), f"{source}:{target}", 1)
        pipe.execute()
        return key

    def publish_counts(self, model: str, revision: str | None, config: str) -> dict[str, int]:
        """Per "src:tgt", how many rankings of that pair were published in this configuration (`publish` counts
        each one in its transaction; an invalidation does not reset it)."""
        raw = self.redis.hgetall(keys.bridge_publishes(model, revision, config))
        return {_s(k) or "": int(v) for k, v in raw.items()}

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.redis.get(key)
        return None if raw is None else decode_ranking(key, raw)

    def latest_raw(
        self, model: str, revision: str | None, config: str, source: str, target: str
    ) -> tuple[str, bytes] | None:
        """(versioned key, stored JSON) of the pair's newest ranking, or None (LATEST_SCRIPT)."""
        if self._latest is None:
            self._latest = self.redis.register_script(LATEST_SCRIPT)
        return latest_found(self._latest(keys=[keys.bridge_latest(model, revision, config, source, target)]))

    def latest(self, model: str, revision: str | None, config: str, source: str, target: str) -> dict[str, Any] | None:
        found = self.latest_raw(model, revision, config, source, target)
        return None if found is None else decode_ranking(*found)

    def configs(self, model: str, revision: str | None) -> dict[str, dict[str, Any]]:
        """Every configuration with a published ranking: fingerprint -> method parameters."""
        raw = self.redis.hgetall(keys.bridge_configs(model, revision))
        return {_s(k) or "": json.loads(v) for k, v in raw.items()}

    def pairs(self, model: str, revision: str | None, config: str) -> list[dict[str, Any]]:
        """Served and HSIC-best bridge per published pair of one configuration."""
        out: list[dict[str, Any]] = []
        members = self.redis.smembers(keys.bridge_pairs(model, revision, config))
        for member in sorted(_s(m) or "" for m in members):
            source, _, target = member.partition(":")
            ranking = self.latest(model, revision, config, source, target)
            if ranking is None:
                continue
            code, score = best_of(ranking)
            served, reason = served_of(ranking)
            out.append(
                {
                    "source": source,
                    "target": target,
                    "best": code,
                    "score": score,
                    "served": served,
                    "served_reason": reason,
                    "cache_key": ranking["cache_key"],
                    "published_at": (ranking.get("provenance") or {}).get("published_at"),
                }
            )
        return out

    def delete(self, model: str, revision: str | None, config: str, source: str, target: str) -> bool:
        """Invalidate the pair: its latest ranking (versioned value too), its index entry, its failure record."""
        lkey = keys.bridge_latest(model, revision, config, source, target)
        key = _s(self.redis.get(lkey))
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(lkey)
        if key is not None:
            pipe.delete(key)
        pipe.srem(keys.bridge_pairs(model, revision, config), f"{source}:{target}")
        pipe.delete(keys.analysis_failure(model, revision, config, source, target))
        removed = pipe.execute()
        return bool(removed[0])


class FailureStore:
    """Failed analyses, remembered so `auto` retries with exponential backoff instead of on every lock expiry.

    The record says why (`error`), how often (`attempts`) and when `auto` may enqueue again (`retry_at`, epoch
    seconds): base * 2**(attempts-1), capped. A success (BridgeStore.publish) deletes it.
    """

    def __init__(self, redis: redis.Redis, *, base_s: float = 300.0, max_s: float = 86400.0) -> None:
        self.redis, self.base_s, self.max_s = redis, base_s, max_s

    def get(self, model: str, revision: str | None, config: str, source: str, target: str) -> dict[str, Any] | None:
        raw = self.redis.get(keys.analysis_failure(model, revision, config, source, target))
        return None if raw is None else json.loads(raw)

    def record(
        self,
        model: str,
        revision: str | None,
        config: str,
        source: str,
        target: str,
        *,
        error: str,
        job_id: str | None,
        now: float | None = None,
    ) -> dict[str, Any]:
        key = keys.analysis_failure(model, revision, config, source, target)
        now = time.time() if now is None else now
        prev = self.get(model, revision, config, source, target) or {}
        attempts = int(prev.get("attempts", 0)) + 1
        wait = min(self.max_s, self.base_s * 2 ** (attempts - 1))
        rec = {
            "error": error,
            "job_id": job_id,
            "attempts": attempts,
            "failed_at": now,
            "retry_at": now + wait,
            "retry_in_s": round(wait, 1),
        }
        # kept a little longer than the wait, so the attempt count survives until the next retry
        self.redis.set(key, json.dumps(rec), ex=int(wait + self.max_s))
        return rec

    def clear(self, model: str, revision: str | None, config: str, source: str, target: str) -> None:
        self.redis.delete(keys.analysis_failure(model, revision, config, source, target))
