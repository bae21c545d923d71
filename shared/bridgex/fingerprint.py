"""Content fingerprints of analysis requests (configuration and job ids), shared by the analyzer and the gateway.
Pure functions: the Redis keys built from them are in services.common.redis_keys.

A published ranking belongs to one *configuration*: the fingerprint of every method parameter of the
normalised analysis request (selection, bridge set, k, window, candidates, top_rate, HSIC variant, gold filter
settings, validation and serving policy, profile and capture parameters, method version): every field of
services.common.analysis.AnalysisSpec except the key fields below. The "latest" pointer and the pairs index are per
configuration, so an analysis with other parameters is stored and readable but never changes what `auto`
serves under the configured one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

NOT_METHOD_PARAMS = frozenset({"source", "target", "model", "revision", "data_hash"})
"""Request fields that are not method parameters: the pair and the model are parts of the key themselves, and
the data hash changes with every re-preparation (the probe hash in the key already says which data was used)."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def method_params(request: Mapping[str, Any]) -> dict[str, Any]:
    """The method parameters of a normalised analysis request (what the configuration fingerprint covers)."""
    return {k: v for k, v in request.items() if k not in NOT_METHOD_PARAMS}


def config_fingerprint(request: Mapping[str, Any]) -> str:
    """Short hash of a normalised request's method parameters: equal iff every method parameter is equal."""
    return hashlib.sha256(canonical_json(method_params(request)).encode()).hexdigest()[:12]


def job_id(request: dict[str, Any]) -> str:
    """Content hash of a job request: the same request twice is one job."""
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()[:32]
