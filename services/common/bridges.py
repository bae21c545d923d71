"""The bridge cache: published rankings in Redis (LiteLLM-style versioned keys plus a "latest" index).

Writer: the analyzer after a finished ranking. Readers: the gateway (translate, /bridges).
- `bridge_key(...)` -> the ranked artifact JSON with provenance (never a bare string); kept, not expired.
- `latest_key(...)` -> the versioned key of the newest ranking for (model, revision, source, target).
- `pairs_index_key(...)` -> set of "src:tgt" pairs with a published ranking (matrix view).
Keys use the model + revision of the *request* (settings.model / settings.model_revision), so the gateway
finds them with its own settings; the weight hash actually loaded is in the provenance.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import redis
from bridgex.cache_keys import bridge_key, latest_key, pairs_index_key


def _s(v: bytes | str | None) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


def best_of(ranking: dict[str, Any]) -> tuple[str | None, float | None]:
    """(code, score) of the best candidate, whatever shape `best` has (code string or candidate dict)."""
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


class BridgeStore:
    def __init__(self, redis: redis.Redis) -> None:
        self.redis = redis

    def publish(
        self, ranking: dict[str, Any], *, model: str, revision: str | None, source: str, target: str,
        probe_hash: str, method_version: str,
    ) -> str:
        """Store the ranking under its versioned key and point "latest" at it, atomically. Returns the key."""
        key = bridge_key(model, revision, source, target, method_version, probe_hash)
        code, score = best_of(ranking)
        value = {
            **ranking,
            "cache_key": key,
            "best_code": code,
            "best_score": score,
            "provenance": {
                **(ranking.get("provenance") or {}),
                "model": model,
                "revision": revision,
                "source": source,
                "target": target,
                "probe_hash": probe_hash,
                "method_version": method_version,
                "published_at": datetime.now(UTC).isoformat(),
            },
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(key, json.dumps(value, ensure_ascii=False, default=str))
        pipe.set(latest_key(model, revision, source, target), key)
        pipe.sadd(pairs_index_key(model, revision), f"{source}:{target}")
        pipe.execute()
        return key

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.redis.get(key)
        if raw is None:
            return None
        out = json.loads(raw)
        out["cache_key"] = key
        return out

    def latest(self, model: str, revision: str | None, source: str, target: str) -> dict[str, Any] | None:
        key = _s(self.redis.get(latest_key(model, revision, source, target)))
        return None if key is None else self.get(key)

    def pairs(self, model: str, revision: str | None) -> list[dict[str, Any]]:
        """Best bridge per published pair: [{source, target, best, score, cache_key, published_at}]."""
        out: list[dict[str, Any]] = []
        for member in sorted(_s(m) or "" for m in self.redis.smembers(pairs_index_key(model, revision))):
            source, _, target = member.partition(":")
            ranking = self.latest(model, revision, source, target)
            if ranking is None:
                continue
            code, score = best_of(ranking)
            out.append({
                "source": source, "target": target, "best": code, "score": score,
                "cache_key": ranking["cache_key"],
                "published_at": (ranking.get("provenance") or {}).get("published_at"),
            })
        return out

    def delete(self, model: str, revision: str | None, source: str, target: str) -> bool:
        """Invalidate the pair: its latest ranking (versioned value too) and its index entries."""
        lkey = latest_key(model, revision, source, target)
        key = _s(self.redis.get(lkey))
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(lkey)
        if key is not None:
            pipe.delete(key)
        pipe.srem(pairs_index_key(model, revision), f"{source}:{target}")
        removed = pipe.execute()
        return bool(removed[0])
