"""The reliability suite's stack: a generation worker that requires its API key (vLLM behind our guard), a
gateway with keys in front of it, its own Redis and a Celery analyzer, all real processes.

Kept apart from the other packages' stacks: these tests kill things, lock clients out and fill rate limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import KEYS, stack_env
from tests.support import RedisServer, Service, Stack, running_stack, start_worker

WORKER_KEY = "worker-test-key"
WH = {"Authorization": f"Bearer {WORKER_KEY}"}
T = {"Authorization": "Bearer k-translate"}
A = {"X-API-Key": "k-analyze"}
ADMIN = {"Authorization": "Bearer k-admin"}
A2_KEY = "k-analyze-2"
A2 = {"X-API-Key": A2_KEY}
RKEYS = {**KEYS, A2_KEY: ["translate", "analyze"]}


@pytest.fixture(scope="package")
def rlog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability-logs")


@pytest.fixture(scope="package")
def keyed_worker(tiny_model_dir: Path, rlog_dir: Path) -> Iterator[tuple[Service, str]]:
    """vLLM on the tiny model, started by our launcher with BRIDGEX_WORKER_API_KEY (guard on); prompts are
    logged so tests can read what the worker was sent."""
    svc, url = start_worker(
        tiny_model_dir,
        rlog_dir,
        BRIDGEX_WORKER_API_KEY=WORKER_KEY,
        BRIDGEX_WORKER_ARGS="--enable-log-requests --max-log-len 400",
    )
    yield svc, url
    svc.stop()


def reliability_env(model: Path, redis_url: str, worker_url: str, home: Path, **extra: str) -> dict[str, str]:
    env = stack_env(model, redis_url, worker_url, home)
    env |= {
        "BRIDGEX_API_KEYS": json.dumps(RKEYS),
        "BRIDGEX_WORKER_API_KEY": WORKER_KEY,
        "BRIDGEX_MAX_TEXT_TOKENS": "128",
        "BRIDGEX_API_HEADER_TIMEOUT_S": "2",
        "BRIDGEX_API_MAX_BODY_BYTES": str(256 * 1024),
    }
    return env | extra


@pytest.fixture(scope="package")
def rstack(
    tiny_model_dir: Path, keyed_worker: tuple[Service, str], rlog_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis = RedisServer(persist=True).start()
    env = reliability_env(tiny_model_dir, redis.url, keyed_worker[1], tmp_path_factory.mktemp("rel-home"))
    with running_stack(redis, env, rlog_dir, keyed_worker, timeout=60) as s:
        yield s
