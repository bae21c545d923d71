"""Which weights the generation worker serves, as the gateway last heard, and whether a ranking was made on them.

A published ranking records the weights it was measured on (`provenance.weight_hash`); the worker says which it
serves (`GET /bridgex/identity`). Keys name the model and revision of the request, not the weights, so after the
weights behind one model name change (a fine-tune redeployed to the same folder), the cache still holds rankings
of the old ones. `auto` serves a ranking only while the worker serves the weights it was made on.

The identity is asked at most once per `ttl_s` (one caller at a time); when the worker does not answer, the last
known hash stays in use and the question is asked again soon. An unknown hash on either side checks nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from bridgex.generation.client import GenerationClient, GenerationError

log = logging.getLogger("bridgex.api")

IDENTITY_TTL_S = 60.0
IDENTITY_TIMEOUT_S = 2.0
RETRY_AFTER_ERROR_S = 5.0
_MIN_PREFIX = 12  # artifacts and logs abbreviate hashes to 12 hex digits


def _known(value: object) -> str | None:
    text = str(value or "").strip().lower()
    return text if text and text != "unknown" else None


class ServedWeights:
    """A small TTL cache of the worker's weight hash."""

    def __init__(self, client: GenerationClient, ttl_s: float = IDENTITY_TTL_S) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._hash: str | None = None
        self._expires = -math.inf
        self._lock = asyncio.Lock()

    async def current(self) -> str | None:
        """The weight hash the worker serves, or None when it is not known."""
        if time.monotonic() < self._expires:
            return self._hash
        async with self._lock:
            if time.monotonic() < self._expires:
                return self._hash
            try:
                ident = await asyncio.wait_for(self.client.identity(), IDENTITY_TIMEOUT_S)
            except (GenerationError, TimeoutError) as exc:
                log.info("worker identity unavailable (%s); keeping %s", exc, self._hash)
                self._expires = time.monotonic() + RETRY_AFTER_ERROR_S
                return self._hash
            self._hash = _known((ident or {}).get("weight_hash"))
            self._expires = time.monotonic() + self.ttl_s
            return self._hash


def made_on(ranking: dict[str, Any]) -> str | None:
    """The weight hash a published ranking was measured on, or None when it does not say."""
    prov = ranking.get("provenance")
    return _known(prov.get("weight_hash")) if isinstance(prov, dict) else None


def same_weights(a: str, b: str) -> bool:
    """Equal hashes, where one side may be abbreviated (at least 12 hex digits)."""
    if len(a) == len(b):
        return a == b
    n = min(len(a), len(b))
    return n >= _MIN_PREFIX and a[:n] == b[:n]


def stale_note(ranking: dict[str, Any], served: str | None, source: str, target: str) -> str | None:
    """Why the ranking must not be served (it was measured on other weights than the worker's), or None."""
    ours = made_on(ranking)
    if ours is None or served is None or same_weights(ours, served):
        return None
    return (
        f"the published ranking of {source}->{target} was measured on weights {ours[:12]}, but the generation "
        f"worker now serves {served[:12]}: it is not served, and the pair is analysed again for these weights"
    )
