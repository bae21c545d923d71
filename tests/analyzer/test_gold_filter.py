"""The gold filter against a real CPU generation worker (uvicorn) serving the tiny random model: a random
model translates nothing, so with probe_fallback=fail the probe set cannot be built and the error says what to
do; with the default policy the ranking uses unfiltered probes, labelled as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.analyzer import stages
from services.common.analysis import AnalysisRequest
from tests.analyzer.conftest import settings_from, worker_env, write_data_dir
from tests.support import start_worker

pytestmark = pytest.mark.integration


def test_gold_filter_random_model_fails_clearly(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_data_dir(tmp_path / "data", lines=2)
    svc, url = start_worker(tiny_model_dir, tmp_path, OMP_NUM_THREADS="1")
    try:
        env = worker_env(tmp_path, tiny_model_dir, data, BRIDGEX_WORKER_URL=url, BRIDGEX_GOLD_FILTER="true",
                         BRIDGEX_PROBE_MAX="6", BRIDGEX_PROBE_MIN="4")
        settings = settings_from(env, "redis://127.0.0.1:1/0")
        req = AnalysisRequest(source="sw", target="fi", probe_fallback="fail").normalized(settings)
        assert req["gold_filter"] is True and req["gold_filter_k"] == 3
        lm = stages.load_lm(settings)
        with pytest.raises(stages.AnalysisFailed) as e:
            stages.probe_set(lm, req, settings)
        msg = str(e.value)
        # 4 x probe_min words tried (hopeless: nothing kept), then a message that names the model and the ways out
        assert f"gold filter kept 0 of 16 sw->fi words (model {tiny_model_dir}, 3 demonstrations)" in msg, msg
        assert "gold_filter=false" in msg and "probe_min=4" in msg and "probe_fallback=unfiltered" in msg
        assert not list((tmp_path / "artifacts").glob("*/probes/*/*.json"))
        # the default policy: rank on unfiltered probes, labelled, with the filter's counts
        default = AnalysisRequest(source="sw", target="fi").normalized(settings)
        ps, path = stages.probe_set(lm, default, settings)
        assert ps.filter == "unfiltered" and len(ps) == 6 and ps.tried == 16 and ps.kept == 0 and path.exists()
    finally:
        svc.stop()
    # worker gone: the failure names the URL and the way out
    with pytest.raises(stages.AnalysisFailed, match=rf"generation worker at {url}.*gold_filter=false"):
        stages.probe_set(lm, req, settings)
