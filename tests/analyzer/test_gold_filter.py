"""The gold filter against a real CPU generation worker (uvicorn) serving the tiny random model: a random
model translates nothing, so with probe_fallback=fail the probe set cannot be built and the error says what to
do; with the default policy the ranking uses unfiltered probes, labelled as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.analyzer import stages
from services.common.analysis import AnalysisRequest, AnalysisSpec
from tests.analyzer.conftest import settings_from, worker_env, write_data_dir
from tests.support import free_port

pytestmark = pytest.mark.integration


def test_gold_filter_random_model_fails_clearly(tmp_path: Path, tiny_model_dir: Path, gen_worker) -> None:
    data = write_data_dir(tmp_path / "data", lines=2)
    env = worker_env(
        tmp_path,
        tiny_model_dir,
        data,
        BRIDGEX_WORKER_URL=gen_worker[1],
        BRIDGEX_GOLD_FILTER="true",
        BRIDGEX_PROBE_MAX="6",
        BRIDGEX_PROBE_MIN="4",
    )
    settings = settings_from(env, "redis://127.0.0.1:1/0")
    req = AnalysisSpec.from_request(
        AnalysisRequest(source="sw", target="fi", probe_fallback="fail").normalized(settings)
    )
    assert req.gold_filter is True and req.gold_filter_k == 3
    lm = stages.load_lm(settings)
    with pytest.raises(stages.AnalysisFailed) as e:
        stages.probe_set(lm, req, settings)
    msg = str(e.value)
    # 4 x probe_min words tried (hopeless: nothing kept), then a message that names the model and the ways out
    assert f"gold filter kept 0 of 16 sw->fi words (model {tiny_model_dir}, 3 demonstrations)" in msg, msg
    assert "gold_filter=false" in msg and "probe_min=4" in msg and "probe_fallback=unfiltered" in msg
    assert not list((tmp_path / "artifacts").glob("*/probes/*/*.json"))
    # the default policy: rank on unfiltered probes, labelled, with the filter's counts
    default = AnalysisSpec.from_request(AnalysisRequest(source="sw", target="fi").normalized(settings))
    ps, path = stages.probe_set(lm, default, settings)
    assert ps.filter == "unfiltered" and len(ps) == 6 and ps.tried == 16 and ps.kept == 0 and path.exists()

    # no worker there: the failure names the URL and the way out
    gone = f"http://127.0.0.1:{free_port()}"
    down = settings.model_copy(update={"worker_url": gone, "worker_retries": 0})
    with pytest.raises(stages.AnalysisFailed, match=rf"generation worker at {gone}"):
        stages.probe_set(lm, req, down, force=True)


def test_gold_filter_refuses_a_worker_with_other_weights(tmp_path: Path, tiny_model_dir: Path, gen_worker) -> None:
    """The worker serves the tiny model; an analysis of another model (same shape, other weights) must not
    filter its probes with it, and says which weights each side has."""
    from bridgex.models import tiny_random_llama

    other = tiny_random_llama(tmp_path / "other", seed=1)
    data = write_data_dir(tmp_path / "data", lines=2)
    env = worker_env(
        tmp_path,
        other,
        data,
        BRIDGEX_WORKER_URL=gen_worker[1],
        BRIDGEX_GOLD_FILTER="true",
        BRIDGEX_PROBE_MAX="6",
        BRIDGEX_PROBE_MIN="4",
    )
    settings = settings_from(env, "redis://127.0.0.1:1/0")
    lm = stages.load_lm(settings)
    req = AnalysisSpec.from_request(AnalysisRequest(source="sw", target="fi").normalized(settings))
    with pytest.raises(stages.AnalysisFailed) as e:
        stages.probe_set(lm, req, settings)
    msg = str(e.value)
    assert f"serves {tiny_model_dir}" in msg and f"loaded {other}" in msg and "same folder" in msg, msg
    assert lm.weight_hash[:12] in msg
    assert not list((tmp_path / "artifacts").glob("*/probes/*/*.json"))
    # nor may it publish a ranking that `auto` would serve beside these weights, even without the worker's help
    with pytest.raises(stages.AnalysisFailed, match="restart the analyzer"):
        stages.check_worker_weights(settings, lm, "published ranking", needs_worker=False)
    down = settings.model_copy(update={"worker_url": "http://127.0.0.1:9"})
    assert stages.check_worker_weights(down, lm, "published ranking", needs_worker=False) == "unreachable"
    with pytest.raises(stages.AnalysisFailed, match="cannot reach"):
        stages.check_worker_weights(down, lm, "gold filter")
    # the same weights pass the check
    assert (
        stages.check_worker_weights(
            settings.model_copy(update={"model": str(tiny_model_dir)}),
            stages.load_lm(settings.model_copy(update={"model": str(tiny_model_dir)})),
            "gold filter",
        )
        == "verified"
    )
