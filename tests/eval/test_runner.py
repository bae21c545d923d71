"""The harness logic against a scripted OpenAI-style server (httpx.MockTransport; unit tests of the runner):
scoring per condition, sharing of the bridge step, oracle/Spearman, caching, resumption, errors."""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path

import httpx
import pytest
from bridgex.evaluation.runner import EvalConfig, HarnessError, evaluate, parse_pairs
from bridgex.evaluation.tasks import TaskData
from bridgex.ranking import CandidateScore, Ranking

from tests.eval.conftest import WORDS

NAMES = {"English": "en", "kiswahili": "sw", "suomi": "fi", "Deutsch": "de", "Français": "fr"}
CHAIN = re.compile(r'([^\s:"→]+):"([^"]*)"')


class ScriptedModel:
    """Answers word prompts by rule: through Deutsch always right, through suomi right for even-indexed words,
    through Français never, without a bridge it echoes the word. Records every prompt it sees."""

    def __init__(self, fail_first: int = 0, reject: str | None = None) -> None:
        self.prompts: list[str] = []
        self.fail_first, self.reject = fail_first, reject

    def answer(self, prompt: str) -> str:
        last = prompt.split("\n")[-1]
        parts = CHAIN.findall(last)
        target = NAMES[last.rsplit("→", 1)[-1].rstrip(":")]
        src_lang, word = NAMES[parts[0][0]], parts[0][1]
        if word not in WORDS[src_lang]:
            return f' "{word}"'  # MT segments: echo
        idx = WORDS[src_lang].index(word)
        right = f' "{WORDS[target][idx]}"\n'
        if len(parts) == 1:
            return right if target not in ("sw", "fi") else f' "{word}"'
        bridge = NAMES[parts[1][0]]
        if bridge == "de" or (bridge == "fi" and idx % 2 == 0):
            return right
        return ' "nope"'

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "scripted"}]})
        body = json.loads(request.content)
        self.prompts.append(body["prompt"])
        if self.fail_first > 0:
            self.fail_first -= 1
            return httpx.Response(500, json={"error": {"message": "boom"}})
        if self.reject and self.reject in body["prompt"]:
            return httpx.Response(400, json={"error": {"message": "prompt too long"}})
        choice = {"text": self.answer(body["prompt"]), "finish_reason": "stop"}
        usage = {"prompt_tokens": 1, "completion_tokens": 1}
        return httpx.Response(200, json={"choices": [choice], "usage": usage})


def _write_ranking(path: Path, src: str, tgt: str, order: list[str]) -> None:
    ranked = [
        CandidateScore(code=c, score=1.0 - 0.1 * i, rank=i + 1, per_layer={2: 0.9 - 0.1 * i, 3: 0.5}, coverage=1.0)
        for i, c in enumerate(order)
    ]
    r = Ranking(
        ranked=ranked,
        best=order[0],
        layers=[2, 3],
        pair_set_sizes={2: 4, 3: 4},
        params={"selection": "top_rate", "bridge_set": "specific"},
        src=src,
        tgt=tgt,
    )
    path.write_text(json.dumps(r.model_dump(mode="json")))


def _cfg(tmp_path: Path, data_dir: Path, model: ScriptedModel, **kw) -> EvalConfig:
    base = dict(
        worker_url="http://scripted",
        out_dir=tmp_path / "out",
        pairs=[("en", "sw"), ("en", "fi")],
        tasks=["bli"],
        k_shots=[0],
        data=TaskData(data_dir=data_dir),
        candidates=["de", "fi", "fr"],
        progress=False,
        typology=False,
        transport=httpx.MockTransport(model.handler),
    )
    base.update(kw)
    return EvalConfig(**base)


def _cond(res: dict, pair: str, name: str, k: int = 0, task: str = "bli") -> dict:
    return next(
        r
        for r in res["conditions"]
        if r["pair"] == pair and r["condition"] == name and r["k"] == k and r["task"] == task
    )


def test_scores_conditions_oracle_and_spearman(tmp_path: Path, data_dir: Path) -> None:
    rk = tmp_path / "rankings"
    rk.mkdir()
    _write_ranking(rk / "en-sw.json", "en", "sw", ["fr", "fi", "de"])  # HSIC's order is the worst possible
    model = ScriptedModel()
    res = asyncio.run(evaluate(_cfg(tmp_path, data_dir, model, rankings=rk, pairs=[("en", "sw")])))

    n_eval = 6
    assert _cond(res, "en-sw", "none")["value"] == 0.0  # echo
    assert _cond(res, "en-sw", "cand:de")["value"] == 1.0
    assert _cond(res, "en-sw", "cand:fi")["value"] == pytest.approx(3 / n_eval)  # even-indexed words 4, 6, 8
    assert _cond(res, "en-sw", "cand:fr")["value"] == 0.0
    hsic = _cond(res, "en-sw", "hsic:top_rate/specific")
    assert hsic["bridge"] == "fr" and hsic["value"] == 0.0
    oracle = _cond(res, "en-sw", "oracle")
    assert oracle["bridge"] == "de" and oracle["value"] == 1.0 and oracle["n"] == n_eval
    # rank 1 (fr) scores worst: rank and score go together, rho = +1
    (sp,) = res["spearman"]
    assert sp["rho"] == pytest.approx(1.0) and sp["n"] == 3
    # Wilson interval for 6/6
    assert oracle["low"] == pytest.approx(0.6097, abs=1e-3) and oracle["high"] == pytest.approx(1.0)

    out = tmp_path / "out"
    saved = json.loads((out / "results.json").read_text())
    assert saved["conditions"] == json.loads(json.dumps(res["conditions"]))
    md = (out / "results.md").read_text()
    assert "| en-sw | 6 |" in md and "hsic:top_rate/specific" in md and "Spearman" in md
    pngs = sorted(p.name for p in (out / "img").glob("*.png"))
    assert pngs == ["bli_k0_conditions.png", "hsic_layers_en-sw_top_rate_specific.png"]
    for p in (out / "img").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == n_eval * 4  # none + 3 bridges
    assert all(p["score"] == 1.0 for p in preds if p["bridge"] == "de")


def test_bridge_step_is_shared_and_each_request_made_once(tmp_path: Path, data_dir: Path) -> None:
    model = ScriptedModel()
    res = asyncio.run(evaluate(_cfg(tmp_path, data_dir, model, candidates=["de", "fr"])))
    assert len(model.prompts) == len(set(model.prompts))  # no request twice
    # en-sw and en-fi evaluate the same English words: step 1 (en -> de / fr) is shared by both pairs
    step1 = [p for p in model.prompts if p.count("→") == 1 and p.endswith(("Deutsch:", "Français:"))]
    assert len(step1) == 6 * 2
    finals = [p for p in model.prompts if p not in step1]
    assert len(finals) == 2 * 6 * 3  # 2 pairs x 6 words x (none, de, fr)
    assert res["requests"]["sent"] == len(model.prompts)

    # a rerun makes no request at all and reproduces the results
    again = ScriptedModel()
    res2 = asyncio.run(evaluate(_cfg(tmp_path, data_dir, again, candidates=["de", "fr"])))
    assert again.prompts == [] and res2["requests"]["sent"] == 0
    assert res2["conditions"] == res["conditions"]


def test_k_shot_demos_come_from_probe_split(tmp_path: Path, data_dir: Path) -> None:
    model = ScriptedModel()
    res = asyncio.run(evaluate(_cfg(tmp_path, data_dir, model, pairs=[("en", "sw")], k_shots=[3], candidates=["de"])))
    probe_words = set(WORDS["en"][:4])
    eval_words = set(WORDS["en"][4:])
    finals = [p for p in model.prompts if p.endswith("kiswahili:")]
    assert finals
    for p in finals:
        *demos, query = p.split("\n")
        assert len(demos) == 3
        demo_words = {CHAIN.findall(d)[0][1] for d in demos}
        assert demo_words <= probe_words and not demo_words & eval_words
        if "Deutsch" in query:  # bridged demos show the gold German word of the src-de dictionary
            assert all(len(CHAIN.findall(d)) == 3 for d in demos)
            for d in demos:
                w, b = CHAIN.findall(d)[0][1], CHAIN.findall(d)[1][1]
                assert b == WORDS["de"][WORDS["en"].index(w)]
    assert _cond(res, "en-sw", "cand:de", k=3)["value"] == 1.0


def test_interrupted_run_resumes(tmp_path: Path, data_dir: Path) -> None:
    flaky = ScriptedModel(fail_first=5)  # 5xx on the first 5 requests (step 1): not cached, counted as failed
    res = asyncio.run(evaluate(_cfg(tmp_path, data_dir, flaky, pairs=[("en", "sw")], candidates=["de"])))
    assert res["requests"]["failed"] == 5
    # an item whose step 1 failed gets no step 2 (never a chain with an empty bridge word) and no score
    assert not any('Deutsch:""' in p for p in flaky.prompts)
    de = _cond(res, "en-sw", "cand:de")
    assert de["missing"] == 5 and de["n"] == 1 and de["value"] == 1.0
    assert "Incomplete run" in (tmp_path / "out" / "results.md").read_text()

    good = ScriptedModel()
    res2 = asyncio.run(evaluate(_cfg(tmp_path, data_dir, good, pairs=[("en", "sw")], candidates=["de"])))
    assert res2["requests"]["failed"] == 0
    assert len(good.prompts) == 5 + 5  # the 5 failed step-1 requests and their 5 step-2 requests
    de = _cond(res2, "en-sw", "cand:de")
    assert de["missing"] == 0 and de["n"] == 6 and de["value"] == 1.0


def test_rejected_prompts_are_cached_as_empty(tmp_path: Path, data_dir: Path) -> None:
    model = ScriptedModel(reject='"sun"')
    res = asyncio.run(evaluate(_cfg(tmp_path, data_dir, model, pairs=[("en", "sw")], candidates=["de"])))
    assert res["requests"]["rejected"] > 0
    assert _cond(res, "en-sw", "cand:de")["value"] == pytest.approx(5 / 6)
    again = ScriptedModel(reject='"sun"')
    asyncio.run(evaluate(_cfg(tmp_path, data_dir, again, pairs=[("en", "sw")], candidates=["de"])))
    assert again.prompts == []


def test_worker_down_is_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    cfg = _cfg(tmp_path, data_dir, ScriptedModel(), worker_url="http://127.0.0.1:9", transport=None, timeout_s=2.0)
    with pytest.raises(HarnessError, match="not healthy"):
        asyncio.run(evaluate(cfg))


def test_missing_data_is_skipped_with_reason(tmp_path: Path, data_dir: Path) -> None:
    res = asyncio.run(
        evaluate(_cfg(tmp_path, data_dir, ScriptedModel(), pairs=[("en", "sw"), ("ja", "he")], candidates=["de"]))
    )
    assert [(s["pair"], s["task"]) for s in res["skipped"]] == [("ja-he", "bli")]
    assert "bridgex data prepare" in res["skipped"][0]["reason"]
    with pytest.raises(HarnessError, match="nothing to evaluate"):
        asyncio.run(evaluate(_cfg(tmp_path, data_dir, ScriptedModel(), pairs=[("ja", "he")])))


def test_parse_pairs() -> None:
    assert parse_pairs("en-sw, swh-fin") == [("en", "sw"), ("sw", "fi")]
    for bad in ("ensw", "en-en", ""):
        with pytest.raises(ValueError):
            parse_pairs(bad)


def test_nan_free_json(tmp_path: Path, data_dir: Path) -> None:
    asyncio.run(evaluate(_cfg(tmp_path, data_dir, ScriptedModel(), pairs=[("en", "sw")], candidates=["de"])))
    text = (tmp_path / "out" / "results.json").read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert not any(isinstance(v, float) and math.isnan(v) for r in data["conditions"] for v in r.values())
