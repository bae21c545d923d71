"""Names of the gateway's short-lived Redis keys (rate-limit windows, failed-auth counters, lockouts,
idempotency records), built in one place so that readers and writers agree."""

from __future__ import annotations

import hashlib

PREFIX = "bridgex"


def _client(client: str) -> str:
    # addresses are short, but keep keys bounded and free of odd characters whatever the peer string is
    return hashlib.sha256(client.encode()).hexdigest()[:24]


def rate_limit(principal_id: str, window: int) -> str:
    return f"{PREFIX}:ratelimit:{principal_id}:{window}"


def auth_failures(client: str, window: int) -> str:
    return f"{PREFIX}:authfail:{_client(client)}:{window}"


def lockout(client: str) -> str:
    return f"{PREFIX}:lockout:{_client(client)}"


def idempotency(principal_id: str, idempotency_key: str) -> str:
    return f"{PREFIX}:idem:{principal_id}:{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}"
