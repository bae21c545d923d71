"""Several generation workers behind the one client: which replica gets the next request, and which are out.

Why here: on one host or in compose nothing else balances BRIDGEX_WORKER_URLS (in Kubernetes the Service does, and
the client gets its one URL; deploy/README.md). The rule is least outstanding requests, ties taken in turn, so a
slow replica gets less and an idle pair alternates. A replica that refuses connections, times out connecting,
answers 503 or fails its health probe is out of service; one background task per pool probes `/health` every
`interval_s` and takes a replica back once it answers and reports the weights of the replicas in service
(`/bridgex/identity`): a replica restarted with other weights stays out, and says why. With one URL nothing of
this runs: `pick` returns the one replica and no task is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("bridgex.generation")

IDENTITY_PATH = "/bridgex/identity"
"""Where our worker launcher's middleware says which weights it serves (services.worker.identity)."""
PROBE_INTERVAL_S = 1.0
"""Seconds between health probes: a dead replica stops getting requests within about this (a failed request takes
it out at once), and a recovered one rejoins within about this."""
PROBE_TIMEOUT_S = 2.0
"""A `/health` slower than this counts as failed (vLLM answers it from its API process, not behind the batch)."""


def weights_of(ident: dict[str, Any] | None) -> str | None:
    """The weight hash an identity reports, None when it reports none (a plain `vllm serve`, or "unknown")."""
    text = str((ident or {}).get("weight_hash") or "").strip().lower()
    return text if text and text != "unknown" else None


def _short(weights: str | None) -> str:
    return f"weights {weights[:12]}" if weights else "no weight hash (it does not report its weights)"


def mismatch_message(a_url: str, a: str | None, b_url: str, b: str | None) -> str:
    """Why two workers may not serve side by side: both URLs and what each serves, and the fix."""
    return (
        f"the generation workers serve different weights: {a_url} serves {_short(a)}, {b_url} serves {_short(b)}. "
        "Every URL of BRIDGEX_WORKER_URLS must serve the same weights (one BRIDGEX_MODEL and "
        "BRIDGEX_MODEL_REVISION, one model cache); restart the odd one out with the right model"
    )


@dataclass(eq=False)
class Replica:
    """One worker URL: its HTTP client (made by GenerationClient), load and state."""

    url: str
    http: httpx.AsyncClient | None = None
    outstanding: int = 0
    """Requests sent to it and not finished (streams until closed)."""
    up: bool = True
    """In service. Replicas start in service: the first failed request or probe takes a dead one out."""
    reason: str = ""
    """Why it is out of service ("" while up)."""
    since: float = field(default_factory=time.monotonic)
    """When `up` last changed."""
    sent: int = 0
    """Requests sent to it in this process (status only)."""

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "up": self.up,
            "outstanding": self.outstanding,
            "sent": self.sent,
            "reason": self.reason,
        }


class WorkerPool:
    """The replicas of one client and the rule that picks one; see the module docstring."""

    def __init__(self, urls: Sequence[str], *, interval_s: float = PROBE_INTERVAL_S) -> None:
        if not urls:
            raise ValueError("a generation client needs at least one worker URL")
        self.replicas: tuple[Replica, ...] = tuple(Replica(u) for u in urls)
        self.single = len(self.replicas) == 1
        self.interval_s = interval_s
        self.weights: str | None = None
        """The weights the replicas in service serve, once known (`weights_known`); a rejoining replica must
        serve them. Forgotten when no replica is in service, so a fleet restarted on new weights comes back."""
        self.weights_known = False
        self._weights_from = ""
        self._turn = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._http: httpx.AsyncClient | None = None

    # ---------------------------------------------------------------------------------------- choice
    def pick(self, avoid: Collection[Replica] = ()) -> Replica:
        """The replica for the next request: one not in `avoid` (those this request already failed on) first, in
        service before out of service; among them the fewest outstanding, ties in turn."""
        if self.single:
            return self.replicas[0]
        reps, n = self.replicas, len(self.replicas)
        start, self._turn = self._turn, (self._turn + 1) % n
        best, best_key = reps[start], (4, 0)
        for i in range(n):
            r = reps[(start + i) % n]
            key = ((r in avoid) * 2 + (not r.up), r.outstanding)
            if key < best_key:
                best, best_key = r, key
        return best

    def untried(self, tried: Collection[Replica]) -> bool:
        """Whether a replica is left that this request has not failed on (it fails over there; `pick` prefers
        those in service, but one marked out may have recovered since its last probe)."""
        return any(r not in tried for r in self.replicas)

    def in_service(self) -> list[Replica]:
        return [r for r in self.replicas if r.up]

    def mark_down(self, r: Replica, reason: str) -> None:
        """Take `r` out of service (no-op with one URL: there is nowhere else to send)."""
        if self.single:
            return
        if r.up:
            r.up, r.since = False, time.monotonic()
            log.warning("generation worker %s out of service: %s", r.url, reason)
            if not any(x.up for x in self.replicas):
                self.weights_known, self.weights, self._weights_from = False, None, ""
        r.reason = reason

    def suspect(self, r: Replica) -> None:
        """A request to `r` broke mid-way (connection reset): probe it now rather than at the next interval."""
        if self._wake is not None:
            self._wake.set()

    def _mark_up(self, r: Replica) -> None:
        if not r.up:
            log.warning(
                "generation worker %s back in service (out %.1fs: %s)", r.url, time.monotonic() - r.since, r.reason
            )
            r.up, r.since = True, time.monotonic()
        r.reason = ""

    def pin(self, weights: str | None, url: str) -> None:
        """The replicas in service serve `weights` (the client's `identity` found them agreeing)."""
        self.weights, self.weights_known, self._weights_from = weights, True, url

    def status(self) -> list[dict[str, Any]]:
        return [r.status() for r in self.replicas]

    # ---------------------------------------------------------------------------------------- probing
    def start(self, http: httpx.AsyncClient) -> None:
        """Start the probe task on the running loop (idempotent; nothing with one URL). `http` sends the probes
        with absolute URLs, apart from the request clients so a full connection pool never fails a probe."""
        if self.single or (self._task is not None and not self._task.done()):
            return
        self._http, self._wake = http, asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bridgex-worker-probe")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            try:
                await self.probe_all()
            except Exception:  # a probe bug must not end probing
                log.exception("generation worker probe failed")

    async def probe_all(self) -> None:
        """One round: every replica's `/health`; failures go out, recovered ones rejoin (one at a time, so two
        coming back together are compared with each other)."""
        results = await asyncio.gather(*(self._health(r) for r in self.replicas))
        for r, why in zip(self.replicas, results, strict=True):
            if why is not None:
                self.mark_down(r, why)
            elif not r.up:
                await self._rejoin(r)

    async def _health(self, r: Replica) -> str | None:
        assert self._http is not None
        try:
            resp = await self._http.get(f"{r.url}/health", timeout=PROBE_TIMEOUT_S)
        except httpx.TimeoutException:
            return f"health probe: no answer within {PROBE_TIMEOUT_S:g}s"
        except httpx.HTTPError as e:
            return f"health probe: {type(e).__name__}: {e}"
        return None if resp.is_success else f"health probe: /health answered {resp.status_code}"

    async def fetch_weights(self, r: Replica) -> str | None:
        """The weights `r` reports (GET /bridgex/identity; 404: none). Raises httpx errors and ValueError."""
        assert self._http is not None
        resp = await self._http.get(f"{r.url}{IDENTITY_PATH}", timeout=PROBE_TIMEOUT_S)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        body = resp.json()
        return weights_of(body if isinstance(body, dict) else None)

    async def _rejoin(self, r: Replica) -> None:
        """Back in service if it serves the weights of the replicas in service (or none is in service)."""
        try:
            theirs = await self.fetch_weights(r)
            if not self.weights_known:
                for other in self.in_service():
                    self.pin(await self.fetch_weights(other), other.url)
                    break
        except (httpx.HTTPError, ValueError) as e:
            r.reason = f"answers /health, but its weights could not be checked: {type(e).__name__}: {e}"
            return
        if self.weights_known and theirs != self.weights:
            ref = next((o.url for o in self.in_service() if o is not r), self._weights_from)
            why = "refused: " + mismatch_message(r.url, theirs, ref, self.weights)
            if r.reason != why:
                log.error("generation worker %s %s", r.url, why)
            r.reason = why
            return
        if not self.weights_known:
            self.pin(theirs, r.url)
        self._mark_up(r)


__all__ = ["IDENTITY_PATH", "PROBE_INTERVAL_S", "Replica", "WorkerPool", "mismatch_message", "weights_of"]
