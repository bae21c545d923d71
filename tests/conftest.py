"""Shared fixtures: a private real Redis, the tiny random model folder, and the default model when asked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RedisServer, Service, start_worker


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis only this test uses (tests that stop Redis mid-test)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bridgex.models import tiny_random_llama

    return tiny_random_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def gen_worker(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    """One real vLLM generation worker serving the tiny random model, shared by the session's integration
    tests (a vLLM start costs ~30 s here); tests that stop a worker start their own."""
    svc, url = start_worker(
        tiny_model_dir, tmp_path_factory.mktemp("worker-logs"), BRIDGEX_WORKER_ARGS="--enable-log-requests"
    )  # request ids in its log
    yield svc, url
    svc.stop()


@pytest.fixture(scope="session")
def default_model():
    """The real default model (Gemma-3-270M from its wheel), loaded once per session."""
    from bridgex.models import load_model

    return load_model(None, device="cpu", dtype="float32")
