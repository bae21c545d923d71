"""The gold filter against a real CPU generation worker (uvicorn) serving the tiny random model: a random
model translates nothing, so with probe_fallback=fail the probe set cannot be built and the error says what to
do; with the default policy the ranking uses unfiltered probes, labelled as such. And its pipeline against a
scripted worker whose answers arrive out of order: why it stopped, how many requests were in flight, and the
same verdicts whatever the concurrency."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from bridgex.generation.client import Completion
from bridgex.generation.gold_filter import abuild_probe_set
from bridgex.probes import candidate_words

from services.analyzer import stages
from services.common.analysis import AnalysisRequest, AnalysisSpec
from tests.analyzer.conftest import scripted_completion, settings_from, worker_env, write_data_dir
from tests.support import free_port


class _ShuffledWorker:
    """Answers `right` words with their gold (others echo the word) after a delay that depends on the word, so
    answers arrive out of order; counts requests and the most in flight at once."""

    def __init__(self, right: set[str]) -> None:
        self.right, self.asked, self.in_flight, self.max_in_flight = right, [], 0, 0

    async def complete(self, prompt: str, **kw: object) -> Completion:
        word = prompt.rsplit('"', 2)[-2]
        self.asked.append(word)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(hashlib.sha256(word.encode()).digest()[0] / 255 * 0.004)
            return scripted_completion(f'"t{word[1:]}"' if word in self.right else f'"{word}"')
        finally:
            self.in_flight -= 1


def _pairs(n: int) -> list[tuple[str, str]]:
    return [(f"w{i}", f"t{i}") for i in range(n)]


def _order(pairs: list[tuple[str, str]]) -> list[str]:
    return [w for w, _ in candidate_words(pairs, source="en", target="fr")]


async def test_stop_reasons_and_cost() -> None:
    pairs = _pairs(2000)
    order = _order(pairs)
    # every word right: probe_max kept after probe_max words
    w = _ShuffledWorker(set(order))
    ps = await abuild_probe_set(pairs, "en", "fr", client=w, probe_max=40, probe_min=8, concurrency=16)
    assert ps.params["stopped"] == "kept_enough" and ps.kept == ps.tried == 40 and ps.words == order[:40]
    assert ps.params["requests"] == len(w.asked) <= 40 + 16 and w.max_in_flight == 16
    # a model that translates nothing: 4 x probe_min words, not one request more (none in flight past the point)
    w = _ShuffledWorker(set())
    ps = await abuild_probe_set(pairs, "en", "fr", client=w, probe_max=250, probe_min=32, concurrency=16)
    assert ps.params["stopped"] == "hopeless" and ps.tried == 128 and len(w.asked) == ps.params["requests"] == 128
    assert ps.filter == "unfiltered" and ps.params["limit"] == 1000 and w.max_in_flight == 16
    # one word in five right: the whole budget (4 x probe_max) tried, 80 kept
    fifth = set(order[::5])
    ps = await abuild_probe_set(pairs, "en", "fr", client=_ShuffledWorker(fifth), probe_max=100, probe_min=8)
    assert ps.params["stopped"] == "exhausted" and ps.tried == ps.params["limit"] == 400 and ps.filter == "gold"
    assert ps.words == order[:400:5] and ps.kept == 80
    # the budget cannot reach probe_min any more: stop as soon as that is certain
    few = _pairs(40)
    ps = await abuild_probe_set(
        few, "en", "fr", client=_ShuffledWorker({_order(few)[0]}), probe_max=8, probe_min=4, concurrency=4
    )
    assert ps.params["stopped"] == "unreachable" and ps.kept == 1 and ps.tried == 30 and ps.params["limit"] == 32


async def test_verdicts_do_not_depend_on_concurrency() -> None:
    pairs = _pairs(600)
    right = {x for i, x in enumerate(_order(pairs)) if i % 5 in (0, 3)}
    runs = []
    for conc in (1, 4, 16):
        w = _ShuffledWorker(right)
        ps = await abuild_probe_set(pairs, "en", "fr", client=w, probe_max=50, probe_min=8, concurrency=conc)
        assert w.max_in_flight == conc
        runs.append((ps.words, ps.tried, ps.kept, ps.params["stopped"], ps.hash))
    assert runs[0] == runs[1] == runs[2] and runs[0][3] == "kept_enough" and runs[0][2] == 50


class _TokenWorker:
    """Characters as tokens: a word's completion is cut at max_tokens (finish_reason "length"), as a decode cut
    after that many tokens is. Right words answer their gold, near misses a longer word that starts with it
    (`"t12x"`: only the whole decode tells them apart), the rest something else from its first character."""

    def __init__(self, right: set[str], near: set[str]) -> None:
        self.right, self.near, self.decoded, self.requests = right, near, 0, 0

    async def complete(self, prompt: str, *, max_tokens: int = 16, **kw: object) -> Completion:
        word = prompt.rsplit('"', 2)[-2]
        gold = f"t{word[1:]}"
        text = f'"{gold}"' if word in self.right else f'"{gold}x"' if word in self.near else f'"no {word}"'
        self.requests += 1
        self.decoded += min(len(text), max_tokens)
        return scripted_completion(text[:max_tokens], "stop" if len(text) <= max_tokens else "length")


async def test_screening_keeps_the_same_words_for_fewer_decoded_tokens() -> None:
    pairs = _pairs(600)
    order = _order(pairs)
    right = {x for i, x in enumerate(order) if i % 7 == 0}
    near = {x for i, x in enumerate(order) if i % 7 == 3}
    runs, decoded = [], []
    for screen in (0, 2, 3):
        w = _TokenWorker(right, near)
        ps = await abuild_probe_set(
            pairs, "en", "fr", client=w, probe_max=20, probe_min=8, max_examined=600, screen_tokens=screen
        )
        runs.append((ps.words, ps.tried, ps.kept, ps.params["stopped"], [it.answer for it in ps.items]))
        decoded.append(w.decoded)
        assert ps.params["generations"] == w.requests
        if screen:  # the words decoded twice are the ones whose start could still be a gold word
            assert w.requests - ps.params["requests"] == len(
                [x for x in order[: ps.params["requests"]] if x in right | near]
            )
    assert runs[0] == runs[1] == runs[2] and runs[0][2] == 20 and runs[0][4][0] == "t" + order[0][1:]
    assert decoded[1] < decoded[0] * 0.6 and decoded[2] < decoded[0] * 0.7, decoded


@pytest.mark.integration
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
    assert ps.params["stopped"] == "hopeless" and ps.params["requests"] == 16

    # no worker there: the failure names the URL and the way out
    gone = f"http://127.0.0.1:{free_port()}"
    down = settings.model_copy(update={"worker_url": gone, "worker_retries": 0})
    with pytest.raises(stages.AnalysisFailed, match=rf"generation worker at {gone}"):
        stages.probe_set(lm, req, down, force=True)


@pytest.mark.integration
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
