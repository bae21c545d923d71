"""Key and id strings shared by the analyzer (writer) and the gateway (reader). Pure functions, no Redis."""

from __future__ import annotations

import hashlib
import json
from typing import Any

PREFIX = "bridgex"


def _model_ref(model: str, revision: str | None) -> str:
    return f"{model}@{revision or 'unknown'}"


def bridge_key(model: str, revision: str | None, src: str, tgt: str, method_version: str, probe_hash: str) -> str:
    """Versioned key of one published ranking (LiteLLM-style cache key)."""
    return f"{PREFIX}:bridge:{_model_ref(model, revision)}:{src}:{tgt}:{method_version}:{probe_hash}"


def latest_key(model: str, revision: str | None, src: str, tgt: str) -> str:
    """Index entry that resolves (model, src, tgt) to the newest versioned key."""
    return f"{PREFIX}:bridge-latest:{_model_ref(model, revision)}:{src}:{tgt}"


def pairs_index_key(model: str, revision: str | None) -> str:
    """Set of "src:tgt" pairs with a published ranking for a model (matrix view)."""
    return f"{PREFIX}:bridge-pairs:{_model_ref(model, revision)}"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def job_id(request: dict[str, Any]) -> str:
    """Content hash of a job request: the same request twice is one job."""
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()[:32]
