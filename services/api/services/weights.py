"""Which weights the generation worker serves, as the gateway last heard, and whether a ranking was made on them.

A published ranking records the weights it was measured on (`provenance.weight_hash`); the worker says which it
serves (`GET /bridgex/identity`). Keys name the model and revision of the request, not the weights, so after the
weights behind one model name change (a fine-tune redeployed to the same folder), the cache still holds rankings
of the old ones. `auto` serves a ranking only while the worker serves the weights it was made on.

The identity is asked at most once per `ttl_s` (one caller at a time); when the worker does not answer, the last
known hash stays in use and the question is asked again soon. A ranking that does not say which weights it was
measured on checks nothing. A worker whose weights are not known (it does not report them: a plain `vllm serve`
without `/bridgex/identity`; or it was never reached) is treated as stale: `auto` does not serve a measured
bridge beside it, and says why, unless BRIDGEX_ALLOW_UNVERIFIED_WORKER is on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from bridgex.generation.client import GenerationClient, GenerationError, WorkerMismatch

log = logging.getLogger("bridgex.api")

IDENTITY_TTL_S = 60.0
IDENTITY_TIMEOUT_S = 2.0
START_CHECK_S = 10.0
"""How long the gateway's start waits for its workers' identities (workers still starting are checked as they
join the pool instead)."""
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
        self.state = "unknown"
        """"verified" (the worker reported a weight hash), "unverified" (it answered without one), "unknown"
        (it was never reached), or "mismatch" (two workers of BRIDGEX_WORKER_URLS serve different weights)."""
        self.problem = ""
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
            except WorkerMismatch as exc:  # no weights to vouch for: auto serves no measured bridge
                log.error("%s", exc)
                self._hash, self.state, self.problem = None, "mismatch", str(exc)
                self._expires = time.monotonic() + RETRY_AFTER_ERROR_S
                return None
            except (GenerationError, TimeoutError) as exc:
                log.info("worker identity unavailable (%s); keeping %s", exc, self._hash)
                self._expires = time.monotonic() + RETRY_AFTER_ERROR_S
                return self._hash
            self._hash = _known((ident or {}).get("weight_hash"))
            self.state = "verified" if self._hash else "unverified"
            self._expires = time.monotonic() + self.ttl_s
            return self._hash

    async def report(self, *, allow_unverified: bool) -> dict[str, Any]:
        """What /ready says about the worker's weights (reported there, not a readiness condition: translation
        works without a measured bridge)."""
        try:
            whash = await self.current()
        except Exception as exc:  # /ready answers whatever the worker does
            log.info("worker identity unavailable for /ready: %s", exc)
            whash = self._hash
        state = "verified" if whash else self.state
        if whash:
            detail = "the worker reports its weights: auto serves the rankings measured on them"
        elif state == "mismatch":
            detail = f"{self.problem}; auto serves no measured bridge meanwhile"
        else:
            why = (
                "does not report its weights (GET /bridgex/identity: a plain `vllm serve`)"
                if state == "unverified"
                else "has not been asked which weights it serves (it did not answer)"
            )
            detail = f"the generation worker {why}: " + (
                "auto serves measured bridges unverified (BRIDGEX_ALLOW_UNVERIFIED_WORKER is on)"
                if allow_unverified
                else "auto serves no measured bridge; run the worker with `python -m services.worker`, or set "
                "BRIDGEX_ALLOW_UNVERIFIED_WORKER=true"
            )
        return {"state": state, "weight_hash": whash, "allow_unverified_worker": allow_unverified, "detail": detail}


async def refuse_mixed_weights(client: GenerationClient) -> None:
    """At the gateway's start, with several workers: RuntimeError (the process exits) when two that answer serve
    different weights, naming both URLs and hashes. Workers not answering yet are checked as they join the pool
    (a joining worker with other weights is kept out, and /ready's `generation_workers` says why)."""
    if len(client.base_urls) < 2:
        return
    try:
        await asyncio.wait_for(client.identity(), START_CHECK_S)
    except WorkerMismatch as exc:
        log.error("refusing to start: %s", exc)
        raise RuntimeError(f"refusing to start: {exc}") from None
    except (GenerationError, TimeoutError) as exc:
        log.warning("worker weights not compared at start (%s): checked as each worker joins", exc)


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


def unverified_note(
    ranking: dict[str, Any], served: str | None, state: str, source: str, target: str, *, allow: bool
) -> str | None:
    """Why the ranking must not be served because the worker's weights are not known (so nothing shows the
    ranking was measured on them), or None (they are known, or BRIDGEX_ALLOW_UNVERIFIED_WORKER is on)."""
    if served is not None or allow:
        return None
    ours = made_on(ranking)
    measured = f"measured on weights {ours[:12]}" if ours else "measured on weights it does not name"
    why = (
        "does not report which weights it serves (GET /bridgex/identity: a plain `vllm serve`)"
        if state == "unverified"
        else "workers of BRIDGEX_WORKER_URLS report different weights (see /ready)"
        if state == "mismatch"
        else "has not said yet which weights it serves (it could not be asked)"
    )
    return (
        f"the published ranking of {source}->{target} was {measured}, but the generation worker {why}, so "
        "nothing shows they are the same: the ranking is not served. Run the worker with `python -m "
        "services.worker`, or set BRIDGEX_ALLOW_UNVERIFIED_WORKER=true to serve measured bridges beside an "
        "unverified worker"
    )
