"""Key and id strings shared by the analyzer (writer) and the gateway (reader). Pure functions, no Redis.

A published ranking belongs to one *configuration*: the fingerprint of every method parameter of the
normalised analysis request (selection, bridge set, k, window, candidates, top_rate, HSIC variant, gold filter
settings, validation and serving policy, method version). The "latest" pointer and the pairs index are per
configuration, so an analysis with other parameters is stored and readable but never changes what `auto`
serves under the configured one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

PREFIX = "bridgex"

NOT_METHOD_PARAMS = frozenset({"source", "target", "model", "revision", "data_hash"})
"""Request fields that are not method parameters: the pair and the model are parts of the key themselves, and
the data hash changes with every re-preparation (the probe hash in the key already says which data was used)."""


def _model_ref(model: str, revision: str | None) -> str:
    return f"{model}@{revision or 'unknown'}"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def method_params(request: Mapping[str, Any]) -> dict[str, Any]:
    """The method parameters of a normalised analysis request (what the configuration fingerprint covers)."""
    return {k: v for k, v in request.items() if k not in NOT_METHOD_PARAMS}


def config_fingerprint(request: Mapping[str, Any]) -> str:
    """Short hash of a normalised request's method parameters: equal iff every method parameter is equal."""
    return hashlib.sha256(canonical_json(method_params(request)).encode()).hexdigest()[:12]


def bridge_key(model: str, revision: str | None, src: str, tgt: str, method_version: str, config: str,
               probe_hash: str) -> str:
    """Versioned key of one published ranking (LiteLLM-style cache key)."""
    return f"{PREFIX}:bridge:{_model_ref(model, revision)}:{src}:{tgt}:{method_version}:{config}:{probe_hash}"


def latest_key(model: str, revision: str | None, config: str, src: str, tgt: str) -> str:
    """Index entry that resolves (model, configuration, src, tgt) to the newest versioned key."""
    return f"{PREFIX}:bridge-latest:{_model_ref(model, revision)}:{config}:{src}:{tgt}"


def pairs_index_key(model: str, revision: str | None, config: str) -> str:
    """Set of "src:tgt" pairs with a published ranking for a model and configuration (matrix view)."""
    return f"{PREFIX}:bridge-pairs:{_model_ref(model, revision)}:{config}"


def configs_key(model: str, revision: str | None) -> str:
    """Hash: configuration fingerprint -> its method parameters (JSON), for every configuration published."""
    return f"{PREFIX}:bridge-configs:{_model_ref(model, revision)}"


def auto_lock_key(model: str, revision: str | None, config: str, src: str, tgt: str) -> str:
    """`SET NX` lock: at most one analysis enqueued by `auto` misses per pair and configuration."""
    return f"{PREFIX}:auto-analysis:{_model_ref(model, revision)}:{config}:{src}:{tgt}"


def failure_key(model: str, revision: str | None, config: str, src: str, tgt: str) -> str:
    """The last failed analysis of a pair and configuration (error, attempts, when auto may retry)."""
    return f"{PREFIX}:analysis-failure:{_model_ref(model, revision)}:{config}:{src}:{tgt}"


def job_id(request: dict[str, Any]) -> str:
    """Content hash of a job request: the same request twice is one job."""
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()[:32]
