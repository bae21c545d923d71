"""Stage functions in-process on the tiny model: artifact reuse, the model cache bound, cooperative cancel."""

from __future__ import annotations

from pathlib import Path

import pytest
from bridgex.cancel import Cancelled
from bridgex.models import tiny_random_llama

from services.analyzer import models as model_cache
from services.analyzer import stages
from services.common.analysis import AnalysisRequest, AnalysisSpec
from tests.analyzer.conftest import settings_from, worker_env, write_data_dir


@pytest.fixture
def settings(tmp_path: Path, tiny_model_dir: Path):
    data = write_data_dir(tmp_path / "data", lines=6)
    return settings_from(worker_env(tmp_path, tiny_model_dir, data), "redis://127.0.0.1:1/0")


def test_run_analysis_reuses_artifacts(settings) -> None:
    req = AnalysisSpec.from_request(AnalysisRequest(source="sw", target="fi").normalized(settings))
    seen: list[tuple[str, float]] = []
    ctx = stages.JobContext(settings=settings, on_progress=lambda st, c, t, pct: seen.append((st, pct)))
    res = stages.run_analysis(req, ctx, publish=False)
    assert res["best"] in req.candidates and res["cache_key"] is None
    pcts = [p for _, p in seen]
    assert pcts == sorted(pcts) and pcts[-1] == 100  # overall percent never goes back
    assert seen[0][0] == "data" and {"model", "profile", "validate"} <= {s for s, _ in seen}
    root = Path(res["artifacts"]["root"])
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    again = stages.run_analysis(req, stages.JobContext(settings=settings), publish=False)
    assert again["ranking"] == res["ranking"] and again["probe_hash"] == res["probe_hash"]
    changed = [p.name for p, m in mtimes.items() if p.stat().st_mtime_ns != m]
    assert all(n.startswith("ranking-") for n in changed), changed  # profiles, probes, acts reused


def test_cancel_between_batches(settings) -> None:
    req = AnalysisSpec.from_request(AnalysisRequest(source="sw", target="fi").normalized(settings))
    ctx = stages.JobContext(settings=settings, force=True)
    ctx._cancelled = True  # as if the flag had been read from Redis
    with pytest.raises(Cancelled):
        stages.run_analysis(req, ctx, publish=False)


def test_model_cache_is_bounded(tmp_path: Path, tiny_model_dir: Path) -> None:
    other = tiny_random_llama(tmp_path / "other", seed=1)
    kw = {"revision": None, "device": "cpu", "dtype": "float32", "keep": 1}
    a = model_cache.get_model(str(tiny_model_dir), **kw)
    assert model_cache.get_model(str(tiny_model_dir), **kw) is a
    model_cache.get_model(str(other), **kw)
    assert [k[0] for k in model_cache.loaded()] == [str(other)]


def test_rank_runs_hsic_on_the_model_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """stages.rank hands the model's device to the ranking, so HSIC runs on the GPU when the model is there
    (activations are loaded from disk on the CPU and moved by rank_bridges)."""
    from types import SimpleNamespace

    import torch
    from bridgex import pipeline

    seen: dict = {}

    class Ranked:
        pair_set_sizes: dict = {}

        def model_dump(self, mode: str) -> dict:
            return {"best": "de", "ranked": [], "params": {}}

    def fake_rank_pair(*args, **kwargs):
        seen.update(kwargs)
        return Ranked()

    monkeypatch.setattr(pipeline, "rank_pair", fake_rank_pair)

    class Probes:
        hash, filter, tried, kept, errors, available = "h", "gold", 1, 1, 0, 1

        def __len__(self) -> int:
            return 1

    lm = SimpleNamespace(device=torch.device("cuda", 1), model_id="m", revision="r")
    req = AnalysisSpec.from_request(
        {
            "model": "m",
            "revision": "r",
            "source": "en",
            "target": "fr",
            "candidates": ["de"],
            "selection": "top_rate",
            "top_rate": 0.01,
            "bridge_set": "specific",
            "k": 8,
            "hsic_variant": "reference",
            "window": [0.3, 0.7],
            "reduce": "mean",
            "gold_filter": True,
            "probe_max": 8,
            "probe_min": 1,
        }
    )
    ctx = stages.JobContext(settings=stages.AnalyzerSettings(_env_file=None))
    out = stages.rank(lm, {}, torch.zeros(1, 1, 1), [0], Probes(), req, ctx)
    assert seen["device"] == torch.device("cuda", 1) and out["best"] == "de"


def test_two_analyzers_compute_a_shared_profile_once(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs that need the same language's profile at once (two analyzers on one queue: the candidates are in
    every pair): one computes it, the other waits for it and reuses it."""
    import threading
    import time

    from services.analyzer.stages import profiles

    lm = stages.load_lm(settings)
    real = profiles.pipeline.profile_language
    computed: list[str] = []

    def slow(*args, **kwargs):
        computed.append(args[2])
        time.sleep(0.5)  # long enough that the other job asks while this one computes
        return real(*args, **kwargs)

    monkeypatch.setattr(profiles.pipeline, "profile_language", slow)
    out: list[object] = []
    barrier = threading.Barrier(2)

    def job() -> None:
        barrier.wait()
        out.append(profiles.profile_language(lm, "fi", settings, stages.JobContext(settings=settings)))

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert computed == ["fi"] and len(out) == 2
    assert out[0].n_tokens == out[1].n_tokens and bool((out[0].count == out[1].count).all())
