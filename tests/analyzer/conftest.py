"""Analyzer fixtures: a small data directory in bridgex.data.layout's format, settings and env for workers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from bridgex.generation.client import Completion, Usage

from services.analyzer.config import AnalyzerSettings

LANGS = ("sw", "fi", "en", "de", "fr")
SYLLABLES = {
    "sw": "ma ji ku wa ki ta mu na ha ri ba to",
    "fi": "ta lo ki ssa vä ke ly hy ää ne en po",
    "en": "th er an in ou ea st wa ho se re on",
    "de": "sch ei en au ch ge be un de ss ie er",
    "fr": "eau ou le la ai on re de que ui ment es",
}


def scripted_completion(text: str, finish_reason: str = "stop") -> Completion:
    """What a scripted worker answers: the client's own Completion ("length": cut by max_tokens)."""
    return Completion(text=text, finish_reason=finish_reason, usage=Usage(0, 0, 0))


def make_words(lang: str, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(f"{lang}-{seed}")
    syl = SYLLABLES[lang].split()
    words: list[str] = []
    while len(words) < n:
        w = "".join(rng.choice(syl) for _ in range(rng.randint(2, 3)))
        if w not in words:
            words.append(w)
    return words


def write_data_dir(
    root: Path, *, lines: int = 40, pairs: int = 60, small_pair: tuple[str, str] = ("sw", "de"), small_size: int = 5
) -> Path:
    """text/<lang>.txt (one paragraph per line) and dict/<src>-<tgt>/{probe,all}.tsv, as DataLayout reads."""
    (root / "text").mkdir(parents=True, exist_ok=True)
    for lang in LANGS:
        rng = random.Random(lang)
        vocab = make_words(lang, 80)
        paras = [" ".join(rng.choice(vocab) for _ in range(30)) + "." for _ in range(lines)]
        (root / "text" / f"{lang}.txt").write_text("\n".join(paras) + "\n", encoding="utf-8")
    src_words, tgt_words = make_words("sw", pairs, 1), make_words("fi", pairs, 1)
    rows = [f"{s}\t{t}\ttest" for s, t in zip(src_words, tgt_words, strict=True)]
    d = root / "dict" / "sw-fi"
    d.mkdir(parents=True, exist_ok=True)
    (d / "probe.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (d / "all.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    s, t = small_pair
    d = root / "dict" / f"{s}-{t}"
    d.mkdir(parents=True, exist_ok=True)
    small = [f"{a}\t{b}\ttest" for a, b in zip(make_words(s, small_size, 2), make_words(t, small_size, 2), strict=True)]
    (d / "probe.tsv").write_text("\n".join(small) + "\n", encoding="utf-8")
    (d / "all.tsv").write_text("\n".join(small) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data_dir(tmp_path_factory.mktemp("analyzer-data"))


@pytest.fixture(scope="session")
def big_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough text that a job runs for several seconds on the tiny model (cancel / kill -9 tests)."""
    return write_data_dir(tmp_path_factory.mktemp("analyzer-big-data"), lines=1500)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def worker_env(tmp: Path, model: Path, data: Path, **extra: str) -> dict[str, str]:
    """Environment of a Celery worker process (and the Settings the test submits with)."""
    return {
        "BRIDGEX_HOME": str(tmp / "home"),
        "BRIDGEX_DATA_DIR": str(data),
        "BRIDGEX_ARTIFACTS_DIR": str(tmp / "artifacts"),
        "BRIDGEX_MODEL": str(model),
        "BRIDGEX_DEVICE": "cpu",
        "BRIDGEX_DTYPE": "float32",
        "BRIDGEX_CANDIDATES": '["en", "de", "fr"]',  # JSON: pydantic-settings decodes tuples
        "BRIDGEX_GOLD_FILTER": "false",
        # these tests exercise the pipeline's mechanics on a data dir they write; the default path (data
        # gathered on first need, gold filter, dev validation) has its own end-to-end test (test_default_path)
        "BRIDGEX_DATA_AUTO": "false",
        "BRIDGEX_SERVE_POLICY": "hsic",
        # no generation worker: the check before publishing finds the port closed (never a worker that a
        # developer's `make run` serves on the default port, with other weights)
        "BRIDGEX_WORKER_URL": "http://127.0.0.1:9",
        "BRIDGEX_PROBE_MIN": "8",
        "BRIDGEX_PROBE_MAX": "32",
        "BRIDGEX_TOP_RATE": "0.1",
        "BRIDGEX_BRIDGE_K": "8",
        # one torch thread: on a shared 2-core box, 2 threads per process under load make a tiny forward
        # pass ~40x slower (measured: 0.22 s vs 5 ms for 1 x 64 tokens)
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **extra,
    }


def settings_from(env: dict[str, str], redis_url: str) -> AnalyzerSettings:
    """The Settings a process with `env` would build (the submitting side must agree with the worker)."""
    import os

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return AnalyzerSettings(redis_url=redis_url, _env_file=None)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def mod_redis() -> Iterator[str]:
    """A Redis for one module whose Celery worker outlives single tests (never flushed under the worker:
    flushing would drop kombu's queue bindings)."""
    from tests.support import RedisServer

    server = RedisServer().start()
    yield server.url
    server.stop()


def wait_state(store: object, job_id: str, states: set[str], timeout: float = 120.0, log: Path | None = None):
    """Poll the job record until its state is one of `states`."""
    import time

    deadline = time.monotonic() + timeout
    rec = None
    while time.monotonic() < deadline:
        rec = store.get(job_id)  # type: ignore[attr-defined]
        if rec is not None and rec.state.value in states:
            return rec
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"job {job_id} not in {states} after {timeout}s: {rec}\n{tail}")
