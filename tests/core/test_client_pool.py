"""bridgex.generation.pool and GenerationClient over several worker URLs, on httpx.MockTransport: the choice
(least outstanding, ties in turn, skip the out-of-service), failover of a request that failed before any answer,
the health probe taking a replica out and back, and the same-weights rule. The real thing (two vLLM workers, one
SIGKILLed under load) is tests/reliability/test_worker_pool.py."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import httpx
import pytest
from bridgex.generation.client import (
    GenerationClient,
    GenerationFailed,
    WorkerMismatch,
    WorkerUnavailable,
)
from bridgex.generation.pool import Replica, WorkerPool
from bridgex.settings import CoreSettings

A, B = "http://a.test:8001", "http://b.test:8001"
HASH_1, HASH_2 = "1" * 64, "2" * 64


def completion(text: str) -> dict:
    return {
        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@dataclass
class FakeWorker:
    """One fake worker: what it answers, and what it was asked."""

    name: str
    weights: str | None = HASH_1
    mode: str = "ok"
    """ok | refuse (connection refused) | 503 | reset (connection broken before an answer) | fault (the HTTP
    stack itself raises something that is not an httpx error) | mid (stream breaks after its first delta)."""
    completions: int = 0
    health: int = 0
    hold: asyncio.Event | None = None
    paths: list[str] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths.append(f"{request.method} {path}")
        if self.mode == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if path == "/health":
            self.health += 1
            return httpx.Response(503 if self.mode == "503" else 200)
        if self.mode == "503":
            return httpx.Response(503, json={"error": {"message": "engine dead"}})
        if path == "/bridgex/identity":
            if self.weights is None:
                return httpx.Response(404, json={"detail": "Not Found"})
            return httpx.Response(200, json={"model_id": "m", "revision": None, "weight_hash": self.weights})
        if path == "/v1/completions":
            if self.mode == "reset":
                raise httpx.RemoteProtocolError("peer closed connection", request=request)
            if self.mode == "fault":
                raise AttributeError("'NoneType' object has no attribute 'read'")
            self.completions += 1
            if self.hold is not None:
                await self.hold.wait()
            body = json.loads(request.content)
            if body.get("stream"):
                return self._stream()
            return httpx.Response(200, json=completion(f"{self.name}:{body['prompt']}"))
        return httpx.Response(404, json={"detail": "Not Found"})

    def _stream(self) -> httpx.Response:
        worker = self

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self):  # type: ignore[override]
                yield b'data: {"choices": [{"index": 0, "text": "he"}]}\n\n'
                if worker.mode == "mid":
                    raise httpx.ReadError("peer died mid-stream")
                yield b'data: {"choices": [{"index": 0, "text": "llo"}]}\n\n'
                yield b"data: [DONE]\n\n"

        return httpx.Response(200, stream=Body(), headers={"content-type": "text/event-stream"})


def fleet(*workers: FakeWorker) -> httpx.MockTransport:
    by_host = {w.name: w for w in workers}
    return httpx.MockTransport(lambda request: by_host[request.url.host.split(".")[0]].handle(request))


def client(*workers: FakeWorker, **kw: object) -> GenerationClient:
    urls = [f"http://{w.name}.test:8001" for w in workers]
    opts: dict = {"model": "m", "retries": 1, "backoff": 0.01, "probe_interval_s": 0.02, **kw}
    return GenerationClient(urls, transport=fleet(*workers), **opts)


async def until(check, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------- choice alone
def test_pick_least_outstanding_ties_in_turn_and_skips_the_out_of_service() -> None:
    pool = WorkerPool([A, B, "http://c.test:8001"])
    a, b, c = pool.replicas
    assert [pool.pick().url for _ in range(6)] == [A, B, c.url] * 2  # idle: in turn
    a.outstanding, b.outstanding, c.outstanding = 3, 1, 2
    assert {pool.pick() for _ in range(6)} == {b}  # fewest outstanding, whatever the turn
    pool.mark_down(b, "test")
    assert {pool.pick() for _ in range(6)} == {c}
    assert {pool.pick(avoid=[c]) for _ in range(6)} == {a}  # this request failed on c already
    assert {pool.pick(avoid=[a, c]) for _ in range(6)} == {b}  # out of service, but not tried yet
    pool.mark_down(a, "test")
    pool.mark_down(c, "test")
    # none in service: still one (the request's own retries decide), fewest outstanding first
    assert pool.pick() is b and pool.untried([a, b]) and not pool.untried([a, b, c])


def test_one_url_is_never_taken_out() -> None:
    pool = WorkerPool([A])
    (a,) = pool.replicas
    pool.mark_down(a, "refused")
    assert a.up and pool.pick() is a and pool.single


def test_mark_down_forgets_the_weights_when_none_is_left() -> None:
    pool = WorkerPool([A, B])
    pool.pin(HASH_1, A)
    pool.mark_down(pool.replicas[0], "x")
    assert pool.weights_known
    pool.mark_down(pool.replicas[1], "x")
    assert not pool.weights_known  # a fleet restarted on new weights may come back


# ---------------------------------------------------------------------------------------- the client
async def test_spreads_by_least_outstanding() -> None:
    a, b = FakeWorker("a", hold=asyncio.Event()), FakeWorker("b")
    async with client(a, b) as c:
        held = asyncio.create_task(c.complete("p0"))  # a (first in turn) holds it
        await until(lambda: a.completions == 1)
        outs = [await c.complete(f"p{i}") for i in range(1, 5)]  # a has one outstanding: all to b
        assert [o.text for o in outs] == [f"b:p{i}" for i in range(1, 5)]
        a.hold.set()
        assert (await held).text == "a:p0"
        outs = [await c.complete(f"q{i}") for i in range(4)]  # both idle again: in turn
        assert sorted(o.text[0] for o in outs) == ["a", "a", "b", "b"]
        assert all(r["outstanding"] == 0 for r in c.workers())


@pytest.mark.parametrize("mode", ["refuse", "503", "reset", "fault"])
async def test_failed_replica_is_failed_over_at_once_and_left_out(mode: str) -> None:
    a, b = FakeWorker("a", mode=mode), FakeWorker("b")
    async with client(a, b, retries=0, probe_interval_s=60) as c:
        outs = [await c.complete(f"p{i}") for i in range(6)]
    assert [o.text for o in outs] == [f"b:p{i}" for i in range(6)]  # retries=0: the failover spends no retry
    asked_a = a.paths.count("POST /v1/completions")
    if mode in ("reset", "fault"):  # a broken connection only makes a suspect (the probe decides): asked again maybe
        assert asked_a >= 1
    else:
        assert asked_a == 1  # out of service after its first failure
    assert b.completions == 6


async def test_probe_takes_a_dead_replica_out_and_a_recovered_one_back() -> None:
    a, b = FakeWorker("a"), FakeWorker("b")
    async with client(a, b) as c:
        await until(lambda: a.health > 0 and b.health > 0)  # the probe runs in the background
        a.mode = "503"  # its /health fails: out before any request hits it
        await until(lambda: not c.workers()[0]["up"])
        assert "503" in c.workers()[0]["reason"]
        sent = a.completions
        outs = [await c.complete(f"p{i}") for i in range(4)]
        assert a.completions == sent and all(o.text.startswith("b:") for o in outs)
        a.mode = "ok"
        await until(lambda: c.workers()[0]["up"])
        outs = [await c.complete(f"q{i}") for i in range(4)]
        assert sum(o.text.startswith("a:") for o in outs) == 2  # back in turn
    assert "GET /bridgex/identity" in a.paths  # rejoined only after its weights were checked


async def test_all_down_is_unavailable_after_retries() -> None:
    a, b = FakeWorker("a", mode="refuse"), FakeWorker("b", mode="refuse")
    async with client(a, b, retries=1, probe_interval_s=60) as c:
        with pytest.raises(WorkerUnavailable, match="cannot reach") as ei:
            await c.complete("x")
    # each tried once, then once more in the one retry after the backoff
    assert "after 4 attempts" in str(ei.value)
    assert len(a.paths) == len(b.paths) == 2


async def test_a_fault_of_the_http_stack_is_a_worker_failure_not_a_crash() -> None:
    """One URL: an exception of the HTTP stack that is not an httpx error (a library bug on a dropped
    connection) is retried, then reported as the worker being unavailable (the gateway's 503; a stream, which
    is not retried, as a failed generation: 424), never raised as itself (the gateway's 500)."""
    (a,) = workers = (FakeWorker("a", mode="fault"),)
    async with client(*workers, retries=1) as c:
        with pytest.raises(WorkerUnavailable, match="AttributeError"):
            await c.complete("x")
        assert a.paths.count("POST /v1/completions") == 2  # the one retry
        with pytest.raises(GenerationFailed, match="AttributeError"):
            _ = [d async for d in c.stream_complete("x")]


@pytest.mark.parametrize("mode", ["refuse", "fault"])
async def test_stream_fails_over_only_before_its_first_delta(mode: str) -> None:
    a, b = FakeWorker("a", mode=mode), FakeWorker("b")
    async with client(a, b, probe_interval_s=60) as c:
        assert [d async for d in c.stream_complete("x")] == ["he", "llo"]
        assert b.completions == 1

    a, b = FakeWorker("a", mode="mid"), FakeWorker("b")
    async with client(a, b, probe_interval_s=60) as c:
        got: list[str] = []
        with pytest.raises(GenerationFailed, match="broke the stream"):
            async for d in c.stream_complete("x"):
                got.append(d)
        assert got == ["he"] and b.completions == 0  # a delta was out: not retried elsewhere
        assert all(r["outstanding"] == 0 for r in c.workers())


async def test_identity_of_two_workers_must_agree() -> None:
    a, b = FakeWorker("a"), FakeWorker("b")
    async with client(a, b, probe_interval_s=60) as c:
        assert (await c.identity())["weight_hash"] == HASH_1
    a, b = FakeWorker("a"), FakeWorker("b", weights=HASH_2)
    async with client(a, b, probe_interval_s=60) as c:
        with pytest.raises(WorkerMismatch) as ei:
            await c.identity()
    msg = str(ei.value)
    assert A in msg and B in msg and HASH_1[:12] in msg and HASH_2[:12] in msg
    # one that does not report its weights beside one that does: not the same either
    a, b = FakeWorker("a"), FakeWorker("b", weights=None)
    async with client(a, b, probe_interval_s=60) as c:
        with pytest.raises(WorkerMismatch, match="does not report"):
            await c.identity()


async def test_a_replica_back_with_other_weights_stays_out() -> None:
    a, b = FakeWorker("a"), FakeWorker("b")
    async with client(a, b) as c:
        await c.identity()  # both serve HASH_1
        a.mode = "refuse"
        await until(lambda: not c.workers()[0]["up"])
        a.mode, a.weights = "ok", HASH_2  # restarted on other weights
        await until(lambda: "different weights" in c.workers()[0]["reason"])
        reason = c.workers()[0]["reason"]
        assert A in reason and B in reason and HASH_2[:12] in reason and HASH_1[:12] in reason
        await asyncio.sleep(0.1)
        assert not c.workers()[0]["up"]
        sent = a.completions
        outs = [await c.complete(f"p{i}") for i in range(3)]
        assert all(o.text.startswith("b:") for o in outs) and a.completions == sent
        a.weights = HASH_1  # fixed: it rejoins
        await until(lambda: c.workers()[0]["up"])


async def test_one_url_starts_no_probe() -> None:
    a = FakeWorker("a")
    async with client(a) as c:
        await c.complete("x")
        await asyncio.sleep(0.1)
        assert c._pool._task is None and a.health == 0


def test_settings_list_wins_over_the_single_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGEX_WORKER_URL", "http://one:8001")
    assert CoreSettings(_env_file=None).worker_endpoints == ("http://one:8001",)
    monkeypatch.setenv("BRIDGEX_WORKER_URLS", "http://a:8001/, http://b:8001,http://a:8001")
    assert CoreSettings(_env_file=None).worker_endpoints == ("http://a:8001", "http://b:8001")
    monkeypatch.setenv("BRIDGEX_WORKER_URLS", '["http://a:8001", "http://c:8001"]')
    s = CoreSettings(_env_file=None)
    assert s.worker_endpoints == ("http://a:8001", "http://c:8001")
    assert GenerationClient.from_settings(s).base_urls == s.worker_endpoints
    monkeypatch.setenv("BRIDGEX_WORKER_URLS", "")  # empty: the single URL again
    assert CoreSettings(_env_file=None).worker_endpoints == ("http://one:8001",)
    monkeypatch.setenv("BRIDGEX_WORKER_URLS", "a:8001")
    with pytest.raises(ValueError, match="http://"):
        CoreSettings(_env_file=None)


def test_replica_status_shape() -> None:
    assert set(Replica(A).status()) == {"url", "up", "outstanding", "sent", "reason"}
