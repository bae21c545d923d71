"""The bridge cache: published rankings in Redis (LiteLLM-style versioned keys plus a "latest" index), and the
memory of failed analyses.

Writer: the analyzer after a finished ranking (or a failure). Readers: the gateway (translate, /bridges).
Everything is per *configuration* (`bridgex.cache_keys.config_fingerprint` of the request's method parameters):
- `bridge_key(...)` -> the ranked artifact JSON with provenance and the served choice; kept, not expired.
- `latest_key(...)` -> the versioned key of the newest ranking for (model, revision, config, source, target).
- `pairs_index_key(...)` -> set of "src:tgt" pairs with a published ranking (matrix view).
- `configs_key(...)` -> the method parameters of every configuration published (so /bridges can list them).
- `failure_key(...)` -> the last failure of a pair: error, attempts, and when `auto` may enqueue again.
Keys use the model + revision of the *request* (settings.model / settings.model_revision), so the gateway
finds them with its own settings; the weight hash actually loaded is in the provenance.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import redis
from bridgex.cache_keys import bridge_key, configs_key, failure_key, latest_key, pairs_index_key


def _s(v: bytes | str | None) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


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


class BridgeStore:
    def __init__(self, redis: redis.Redis) -> None:
        self.redis = redis

    def publish(
        self, ranking: dict[str, Any], *, model: str, revision: str | None, config: str,
        params: dict[str, Any], source: str, target: str, probe_hash: str, method_version: str,
    ) -> str:
        """Store the ranking under its versioned key and point "latest" at it, atomically; clear the pair's
        failure record. Returns the key."""
        key = bridge_key(model, revision, source, target, method_version, config, probe_hash)
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
        pipe.set(latest_key(model, revision, config, source, target), key)
        pipe.sadd(pairs_index_key(model, revision, config), f"{source}:{target}")
        pipe.hset(configs_key(model, revision), config, json.dumps(params, sort_keys=True, default=str))
        pipe.delete(failure_key(model, revision, config, source, target))
        pipe.execute()
        return key

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.redis.get(key)
        if raw is None:
            return None
        out = json.loads(raw)
        out["cache_key"] = key
        return out

    def latest(self, model: str, revision: str | None, config: str, source: str,
               target: str) -> dict[str, Any] | None:
        key = _s(self.redis.get(latest_key(model, revision, config, source, target)))
        return None if key is None else self.get(key)

    def configs(self, model: str, revision: str | None) -> dict[str, dict[str, Any]]:
        """Every configuration with a published ranking: fingerprint -> method parameters."""
        raw = self.redis.hgetall(configs_key(model, revision))
        return {_s(k) or "": json.loads(v) for k, v in raw.items()}

    def pairs(self, model: str, revision: str | None, config: str) -> list[dict[str, Any]]:
        """Served and HSIC-best bridge per published pair of one configuration."""
        out: list[dict[str, Any]] = []
        members = self.redis.smembers(pairs_index_key(model, revision, config))
        for member in sorted(_s(m) or "" for m in members):
            source, _, target = member.partition(":")
            ranking = self.latest(model, revision, config, source, target)
            if ranking is None:
                continue
            code, score = best_of(ranking)
            served, reason = served_of(ranking)
            out.append({
                "source": source, "target": target, "best": code, "score": score, "served": served,
                "served_reason": reason, "cache_key": ranking["cache_key"],
                "published_at": (ranking.get("provenance") or {}).get("published_at"),
            })
        return out

    def delete(self, model: str, revision: str | None, config: str, source: str, target: str) -> bool:
        """Invalidate the pair: its latest ranking (versioned value too), its index entry, its failure record."""
        lkey = latest_key(model, revision, config, source, target)
        key = _s(self.redis.get(lkey))
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(lkey)
        if key is not None:
            pipe.delete(key)
        pipe.srem(pairs_index_key(model, revision, config), f"{source}:{target}")
        pipe.delete(failure_key(model, revision, config, source, target))
        removed = pipe.execute()
        return bool(removed[0])


class FailureStore:
    """Failed analyses, remembered so `auto` retries with exponential backoff instead of on every lock expiry.

    The record says why (`error`), how often (`attempts`) and when `auto` may enqueue again (`retry_at`, epoch
    seconds): base * 2**(attempts-1), capped. A success (BridgeStore.publish) deletes it.
    """

    def __init__(self, redis: redis.Redis, *, base_s: float = 300.0, max_s: float = 86400.0) -> None:
        self.redis, self.base_s, self.max_s = redis, base_s, max_s

    def get(self, model: str, revision: str | None, config: str, source: str,
            target: str) -> dict[str, Any] | None:
        raw = self.redis.get(failure_key(model, revision, config, source, target))
        return None if raw is None else json.loads(raw)

    def record(self, model: str, revision: str | None, config: str, source: str, target: str, *,
               error: str, job_id: str | None, now: float | None = None) -> dict[str, Any]:
        key = failure_key(model, revision, config, source, target)
        now = time.time() if now is None else now
        prev = self.get(model, revision, config, source, target) or {}
        attempts = int(prev.get("attempts", 0)) + 1
        wait = min(self.max_s, self.base_s * 2 ** (attempts - 1))
        rec = {"error": error, "job_id": job_id, "attempts": attempts, "failed_at": now, "retry_at": now + wait,
               "retry_in_s": round(wait, 1)}
        # kept a little longer than the wait, so the attempt count survives until the next retry
        self.redis.set(key, json.dumps(rec), ex=int(wait + self.max_s))
        return rec

    def clear(self, model: str, revision: str | None, config: str, source: str, target: str) -> None:
        self.redis.delete(failure_key(model, revision, config, source, target))
