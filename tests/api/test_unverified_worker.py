"""The gateway beside a generation worker that does not report its weights (a plain `vllm serve`, no
`/bridgex/identity`): by default `auto` does not serve a measured bridge as if it had been checked against the
worker's weights; it translates with the fallback, says why and what to do, and enqueues nothing (an analysis
cannot make the worker report its weights). /ready reports the weights as unverified. With
BRIDGEX_ALLOW_UNVERIFIED_WORKER the measured bridge is served. A real gateway process on its own Redis, with
tests.plain_vllm standing in for the worker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.api.core.config import ApiSettings
from services.api.services.weights import ServedWeights, stale_note, unverified_note
from services.common.analysis import served_config
from services.common.bridges import BridgeStore
from tests.api.conftest import T, stack_env
from tests.plain_vllm import PlainVllm, plain_vllm
from tests.support import RedisServer, start_api

MEASURED = "ab" * 32
AUTO = {"text": "water", "source": "en", "target": "fr", "bridge": "auto"}
RANKING = {
    "ranked": [{"code": "de", "score": 0.9, "rank": 1}, {"code": "it", "score": 0.1, "rank": 2}],
    "best": "de",
    "served": {"bridge": "de", "reason": "measured: de beats direct translation on the dev split"},
    "provenance": {"weight_hash": MEASURED, "worker_weights": "verified"},
}


@pytest.fixture
def plain() -> Iterator[PlainVllm]:
    with plain_vllm() as server:
        yield server


@pytest.fixture
def setup(tmp_path: Path, tiny_model_dir: Path, plain: PlainVllm) -> Iterator[tuple[RedisServer, dict[str, str]]]:
    """Own Redis with a measured en->fr ranking published where the gateway looks for it."""
    server = RedisServer().start()
    env = {**stack_env(tiny_model_dir, server.url, plain.url, tmp_path / "home"), "BRIDGEX_WORKER_RETRIES": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = ApiSettings(_env_file=None)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    r = redis.Redis.from_url(server.url)
    BridgeStore(r).publish(
        RANKING,
        model=settings.model,
        revision=settings.model_revision,
        config=served_config(settings, "en", "fr"),
        params={},
        source="en",
        target="fr",
        probe_hash="p1",
        method_version="v1",
    )
    r.close()
    try:
        yield server, env
    finally:
        server.stop()


def _gateway(tmp_path: Path, env: dict[str, str], **extra: str):
    log_dir = tmp_path / f"logs-{len(extra)}"
    log_dir.mkdir(exist_ok=True)
    return start_api(log_dir, **env, **extra)


@pytest.mark.integration
def test_auto_does_not_serve_a_measured_bridge_beside_an_unverified_worker(
    tmp_path: Path, plain: PlainVllm, setup: tuple[RedisServer, dict[str, str]]
) -> None:
    server, env = setup
    svc, api = _gateway(tmp_path, env)
    try:
        with httpx.Client(base_url=api, timeout=30) as c:
            out = c.post("/translate", json=AUTO, headers=T)
            assert out.status_code == 200, out.text
            body = out.json()
            assert body["bridge_source"] == "fallback" and body["bridge"] is None, body
            assert "unverified worker" in body["bridge_reason"], body
            note = next((w for w in body["warnings"] if "/bridgex/identity" in w), None)
            assert note is not None, body["warnings"]
            assert "python -m services.worker" in note and "BRIDGEX_ALLOW_UNVERIFIED_WORKER=true" in note
            assert MEASURED[:12] in note and "en->fr" in note
            # nothing enqueued: an analysis cannot make the worker report its weights
            assert body["analysis_job"] is None
            r = redis.Redis.from_url(server.url)
            assert not list(r.scan_iter("bridgex:job:*")) and r.llen("analyze") == 0
            r.close()
            assert "GET /bridgex/identity" in plain.paths and plain.completions() >= 1  # it did translate

            ready = c.get("/ready")
            assert ready.status_code == 200, ready.text
            weights = ready.json()["worker_weights"]
            assert weights["state"] == "unverified" and weights["weight_hash"] is None, weights
            assert weights["allow_unverified_worker"] is False
            assert "BRIDGEX_ALLOW_UNVERIFIED_WORKER=true" in weights["detail"]
    finally:
        svc.stop()


@pytest.mark.integration
def test_the_setting_serves_it(tmp_path: Path, setup: tuple[RedisServer, dict[str, str]]) -> None:
    _, env = setup
    svc, api = _gateway(tmp_path, env, BRIDGEX_ALLOW_UNVERIFIED_WORKER="true")
    try:
        with httpx.Client(base_url=api, timeout=30) as c:
            body = c.post("/translate", json=AUTO, headers=T).json()
            assert (body["bridge_source"], body["bridge"]) == ("cache", "de"), body
            assert not any("/bridgex/identity" in w for w in body["warnings"]), body["warnings"]
            weights = c.get("/ready").json()["worker_weights"]
            assert weights["state"] == "unverified" and weights["allow_unverified_worker"] is True, weights
    finally:
        svc.stop()


class _Identity:
    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)

    async def identity(self) -> object:
        a = self.answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a


def test_unknown_worker_weights_are_not_verified() -> None:
    from bridgex.generation.client import WorkerUnavailable

    ranking = {"provenance": {"weight_hash": MEASURED}}
    # the worker's hash unknown: not stale (nothing to compare), but not served either, unless allowed
    assert stale_note(ranking, None, "en", "fr") is None
    note = unverified_note(ranking, None, "unverified", "en", "fr", allow=False)
    assert note is not None and "/bridgex/identity" in note and "BRIDGEX_ALLOW_UNVERIFIED_WORKER=true" in note
    assert unverified_note(ranking, None, "unverified", "en", "fr", allow=True) is None
    assert unverified_note(ranking, MEASURED, "verified", "en", "fr", allow=False) is None
    assert "could not be asked" in (unverified_note(ranking, None, "unknown", "en", "fr", allow=False) or "")

    async def go() -> list[tuple[str | None, str]]:
        fake = _Identity(WorkerUnavailable("down"), None, {"weight_hash": "A" * 64})
        w = ServedWeights(fake, ttl_s=60)  # type: ignore[arg-type]
        seen = []
        for _ in range(3):
            w._expires = 0.0
            seen.append((await w.current(), w.state))
        report = await w.report(allow_unverified=False)  # cached: not asked again
        assert report["state"] == "verified" and report["weight_hash"] == "a" * 64 and not fake.answers
        return seen

    assert asyncio.run(go()) == [(None, "unknown"), (None, "unverified"), ("a" * 64, "verified")]
