"""Every Redis key BridgeX reads or writes, built in this one module so that writers and readers agree.

Bridge cache (analyzer writes, gateway reads), per model + revision of the request and per configuration
(`bridgex.fingerprint.config_fingerprint`): `bridge` (one published ranking), `bridge_latest` (-> newest
`bridge` key), `bridge_pairs` (matrix index), `bridge_configs` (parameters per configuration),
`bridge_publishes` (how often each pair was published), `auto_lock` (one analysis enqueued by `auto` misses),
`analysis_failure` (backoff memory).
Jobs: `job`, `job_cancel`, `job_alias`, `job_inflight`, `JOBS_INDEX`, `job_lease`.
Gateway: `rate_limit`, `auth_failures`, `lockout`, `idempotency`; usage: `usage`, `USAGE_KEYS`.
Data: `data_gather`. Configuration: `served_config`. Glossaries: `glossary`, `glossary_owner`, `GLOSSARIES_INDEX`.
"""

from __future__ import annotations

import hashlib

PREFIX = "bridgex"
JOBS_INDEX = f"{PREFIX}:jobs"
"""Sorted set of job ids by creation time."""
GLOSSARIES_INDEX = f"{PREFIX}:glossaries"
"""Set of every glossary id (an admin key's GET /glossaries)."""


def model_ref(model: str, revision: str | None) -> str:
    return f"{model}@{revision or 'unknown'}"


def _digest(text: str, n: int) -> str:
    # keep keys bounded and free of odd characters whatever the caller's string is
    return hashlib.sha256(text.encode()).hexdigest()[:n]


# ------------------------------------------------------------------------------------------- bridge cache


def bridge(
    model: str, revision: str | None, src: str, tgt: str, method_version: str, config: str, probe_hash: str
) -> str:
    """Versioned key of one published ranking (LiteLLM-style cache key)."""
    return f"{PREFIX}:bridge:{model_ref(model, revision)}:{src}:{tgt}:{method_version}:{config}:{probe_hash}"


def bridge_latest(model: str, revision: str | None, config: str, src: str, tgt: str) -> str:
    """Resolves (model, configuration, src, tgt) to the newest `bridge` key."""
    return f"{PREFIX}:bridge-latest:{model_ref(model, revision)}:{config}:{src}:{tgt}"


def bridge_pairs(model: str, revision: str | None, config: str) -> str:
    """Set of "src:tgt" pairs with a published ranking for a model and configuration (matrix view)."""
    return f"{PREFIX}:bridge-pairs:{model_ref(model, revision)}:{config}"


def bridge_configs(model: str, revision: str | None) -> str:
    """Hash: configuration fingerprint -> its method parameters (JSON), for every configuration published."""
    return f"{PREFIX}:bridge-configs:{model_ref(model, revision)}"


def bridge_publishes(model: str, revision: str | None, config: str) -> str:
    """Hash: "src:tgt" -> how many times a ranking of the pair was published (HINCRBY in the publish
    transaction; never reset, not even by an invalidation): exactly-once publishing is counted here."""
    return f"{PREFIX}:bridge-publishes:{model_ref(model, revision)}:{config}"


def auto_lock(model: str, revision: str | None, config: str, src: str, tgt: str) -> str:
    """`SET NX` lock: at most one analysis enqueued by `auto` misses per pair and configuration."""
    return f"{PREFIX}:auto-analysis:{model_ref(model, revision)}:{config}:{src}:{tgt}"


def analysis_failure(model: str, revision: str | None, config: str, src: str, tgt: str) -> str:
    """The last failed analysis of a pair and configuration (error, attempts, when auto may retry)."""
    return f"{PREFIX}:analysis-failure:{model_ref(model, revision)}:{config}:{src}:{tgt}"


# ------------------------------------------------------------------------------------------------- jobs


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def job_cancel(job_id: str) -> str:
    return f"{PREFIX}:job-cancel:{job_id}"


def job_alias(job_id: str) -> str:
    return f"{PREFIX}:job-alias:{job_id}"


def job_inflight(request_hash: str) -> str:
    return f"{PREFIX}:job-inflight:{request_hash}"


def job_lease(job_id: str) -> str:
    """`SET NX EX` lease held (and renewed) by the analyzer process running the job."""
    return f"{PREFIX}:job-lease:{job_id}"


# ---------------------------------------------------------------------------------------------- gateway


def rate_limit(principal_id: str, window: int) -> str:
    return f"{PREFIX}:ratelimit:{principal_id}:{window}"


def auth_failures(client: str, window: int) -> str:
    return f"{PREFIX}:authfail:{_digest(client, 24)}:{window}"


def lockout(client: str) -> str:
    return f"{PREFIX}:lockout:{_digest(client, 24)}"


def idempotency(principal_id: str, idempotency_key: str) -> str:
    return f"{PREFIX}:idem:{principal_id}:{_digest(idempotency_key, 32)}"


USAGE_KEYS = f"{PREFIX}:usage-keys"
"""Set of the key ids (principal ids) that have usage counters (the admin listing adds the configured ones)."""


def usage(principal_id: str, period: str) -> str:
    """Hash of one key's usage counters (requests, characters, generated_tokens, analyses) in one period:
    `m<minute since the epoch>` and `d<YYYYMMDD>` (UTC; both expire) or `total` (kept)."""
    return f"{PREFIX}:usage:{principal_id}:{period}"


# ------------------------------------------------------------------------------------------------- data


def data_gather(data_dir: str, pairs: list[tuple[str, str]], languages: list[str]) -> str:
    """State of one asked-for data gathering (JSON: queued | running | failed), set by the gateway (`SET NX`),
    updated by the analyzer's `bridgex.gather_data` task and deleted when the data is there."""
    what = ",".join(sorted(f"{s}-{t}" for s, t in pairs)) + "|" + ",".join(sorted(languages))
    return f"{PREFIX}:data-gather:{_digest(data_dir, 12)}:{_digest(what, 24)}"


# ------------------------------------------------------------------------------------------ configuration


def served_config(model: str, revision: str | None, role: str) -> str:
    """The configuration a process serves (JSON: fingerprint, parameters, host, time), published by each
    analyzer worker and gateway at start so that /ready and /bridges can say when the two disagree."""
    return f"{PREFIX}:served-config:{model_ref(model, revision)}:{role}"


# ------------------------------------------------------------------------------------------- glossaries


def glossary(glossary_id: str) -> str:
    """One glossary as JSON (id, name, pair, entries, owner, created_at); no TTL: it lives until deleted."""
    return f"{PREFIX}:glossary:{glossary_id}"


def glossary_owner(principal_id: str) -> str:
    """Set of the glossary ids one key owns (its GET /glossaries, and the per-key count limit)."""
    return f"{PREFIX}:glossary-owner:{_digest(principal_id, 24)}"
