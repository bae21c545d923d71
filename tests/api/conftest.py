"""Real stack for the gateway tests: a private redis-server, the CPU generation worker on the tiny random
model, a Celery analyzer worker, and uvicorn running the gateway, all shared by the tests of this package.

The stack uses its own Redis (not the session `redis_server`), so its Celery worker never takes jobs queued by
other packages' tests.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RedisServer, Service, Stack, running_stack

KEYS = {
    "k-translate": ["translate"],
    "k-analyze": ["translate", "analyze"],
    "k-admin": ["admin"],
    "k-jobs-only": ["analyze"],  # a valid key without the translate scope
}
T = {"Authorization": "Bearer k-translate"}
A = {"X-API-Key": "k-analyze"}
ADMIN = {"Authorization": "Bearer k-admin"}
LANGS = ("en", "fr", "de", "it", "fi")
CANDIDATES = "de,it"
MAX_TEXT = 200

_WORDS = [
    "water",
    "house",
    "dog",
    "cat",
    "tree",
    "sun",
    "moon",
    "book",
    "hand",
    "eye",
    "river",
    "stone",
    "bread",
    "milk",
    "fire",
    "wind",
    "night",
    "day",
    "city",
    "road",
    "bird",
    "fish",
    "apple",
    "door",
    "window",
    "table",
    "chair",
    "school",
    "friend",
    "mother",
    "father",
    "child",
    "king",
    "queen",
    "star",
    "sea",
    "mountain",
    "rain",
    "snow",
    "green",
    "red",
    "blue",
    "black",
    "white",
]


def write_data_dir(root: Path, langs: tuple[str, ...] = LANGS, pairs: tuple[tuple[str, str], ...] = ()) -> Path:
    """A small data directory in bridgex.data.layout's format: text/<lang>.txt (+ UDHR), dict/<s>-<t>/."""
    rng = random.Random(0)
    (root / "text").mkdir(parents=True, exist_ok=True)
    for lang in langs:
        lines = [" ".join(f"{rng.choice(_WORDS)}{lang}" for _ in range(12)) for _ in range(30)]
        (root / "text" / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        arts = {str(n): [f"article {n} in {lang}: {lines[n]}"] for n in range(0, 6)}
        (root / "text" / f"{lang}.udhr.json").write_text(json.dumps(arts), encoding="utf-8")
    for s, t in pairs:
        d = root / "dict" / f"{s}-{t}"
        d.mkdir(parents=True, exist_ok=True)
        rows = [f"{w}{s}\t{w}{t}\ttest" for w in _WORDS]
        (d / "all.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        (d / "probe.tsv").write_text("\n".join(rows[::2]) + "\n", encoding="utf-8")
        (d / "eval.tsv").write_text("\n".join(rows[1::2]) + "\n", encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps({"params": {"seed": 0, "eval_fraction": 0.5}}))
    return root


def stack_env(model: Path, redis_url: str, worker_url: str, home: Path) -> dict[str, str]:
    data = write_data_dir(home / "data", pairs=(("en", "fr"), ("en", "fi"), ("en", "de"), ("en", "it"), ("fr", "de")))
    return {
        "BRIDGEX_MODEL": str(model),
        "BRIDGEX_REDIS_URL": redis_url,
        "BRIDGEX_WORKER_URL": worker_url,
        "BRIDGEX_HOME": str(home),
        "BRIDGEX_DATA_DIR": str(data),
        "BRIDGEX_DEVICE": "cpu",
        "BRIDGEX_DTYPE": "float32",
        "BRIDGEX_CANDIDATES": json.dumps(CANDIDATES.split(",")),
        "BRIDGEX_GOLD_FILTER": "false",
        "BRIDGEX_DATA_AUTO": "false",
        "BRIDGEX_DEV_MIN": "2",
        "BRIDGEX_DEV_SIZE": "6",
        "BRIDGEX_PROBE_MIN": "4",
        "BRIDGEX_PROBE_MAX": "16",
        "BRIDGEX_PROFILE_MAX_TOKENS": "2000",
        "BRIDGEX_TOP_RATE": "0.1",
        "BRIDGEX_BRIDGE_K": "8",
        "BRIDGEX_K_SHOT": "0",  # expected() recomputes zero-shot prompts; k-shot has its own test
        "BRIDGEX_API_KEYS": json.dumps(KEYS),
        "BRIDGEX_MAX_TEXT_CHARS": str(MAX_TEXT),
        "BRIDGEX_WORKER_TIMEOUT_S": "20",
        "BRIDGEX_RATE_LIMIT_PER_MINUTE": "100000",
    }


@pytest.fixture(scope="package")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-logs")


@pytest.fixture(scope="package")
def stack(
    tiny_model_dir: Path, gen_worker: tuple[Service, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis = RedisServer().start()
    env = stack_env(tiny_model_dir, redis.url, gen_worker[1], tmp_path_factory.mktemp("api-home"))
    with running_stack(redis, env, log_dir, gen_worker) as s:
        yield s
