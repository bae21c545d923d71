"""services.analyzer.validation with a scripted worker whose right and wrong answers are known (a unit test of
one module: the worker is replaced, nothing else). Checks the counting the serving test relies on: hits per
condition, paired outcomes, retries, exclusion of failures, the same demonstration words for every condition,
bridge-step reuse, and the sequential test's decision."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from bridgex.demos import clear_cache
from bridgex.generation.client import GenerationFailed
from bridgex.languages import native_name
from bridgex.serving import NONE, SequentialDesign

from services.analyzer.validation import CompletionMemo, ValidationFailed, dev_words, validate_on_dev
from tests.analyzer.conftest import scripted_completion

SRC, TGT = "zh", "ja"
BRIDGES = ("en", "de")
N_WORDS = 2400


def _data(root: Path) -> str:
    """zh-ja, zh-en, zh-de dictionaries over the same source words w0000..: target = word + '.' + language."""
    for t in (TGT, *BRIDGES):
        d = root / "dict" / f"{SRC}-{t}"
        d.mkdir(parents=True, exist_ok=True)
        rows = [f"w{i:04d}\tw{i:04d}.{t}\ttest" for i in range(N_WORDS)]
        (d / "all.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        (d / "probe.tsv").write_text("\n".join(rows[::2]) + "\n", encoding="utf-8")
        (d / "eval.tsv").write_text("\n".join(rows[1::2]) + "\n", encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps({"params": {"seed": 0, "eval_fraction": 0.5}}))
    clear_cache()
    return str(root)


class ScriptedWorker:
    """Answers a chain prompt by rule: the last line names the query word and the steps taken.

    - a bridge step `S:"w"→B:` answers w.B (always right);
    - direct `S:"w"→T:` is right when rule_direct(i); bridged `S:"w"→B:"w.B"→T:` when rule[B](i);
    - words in `flaky` fail once, words in `dead` always fail; every prompt is recorded."""

    def __init__(self, rule_direct, rules, flaky=(), dead=(), cut=False) -> None:
        self.rule_direct, self.rules = rule_direct, rules
        self.flaky, self.dead = set(flaky), set(dead)
        self.prompts: list[str] = []
        self.failed: set[str] = set()
        self.cut, self.max_tokens = cut, []  # cut: characters are tokens, a completion is cut at max_tokens

    async def complete(self, prompt: str, *, max_tokens: int = 16, temperature: float = 0.0, **_: object):
        self.prompts.append(prompt)
        await asyncio.sleep(0)
        last = prompt.rstrip("\n").split("\n")[-1]
        word = re.search(r'"(w\d{4})"', last).group(1)
        i = int(word[1:])
        if word in self.dead or (word in self.flaky and word not in self.failed):
            self.failed.add(word)
            raise GenerationFailed("scripted failure")
        steps = last.count("→")
        target_name = last.rsplit("→", 1)[1].rstrip(":")
        lang = next(c for c in (TGT, *BRIDGES) if native_name(c) == target_name)
        if lang != TGT:  # the bridge step
            text = f'"{word}.{lang}"'
        else:
            bridge = None if steps == 1 else next(c for c in BRIDGES if f"→{native_name(c)}:" in last)
            right = self.rule_direct(i) if bridge is None else self.rules[bridge](i)
            text = f'"{word}.{TGT}"' if right else '"wrong"'
        self.max_tokens.append(max_tokens)
        if self.cut and len(text) > max_tokens:
            return scripted_completion(text[:max_tokens], "length")
        return scripted_completion(text)


def test_dev_words_are_disjoint_from_probe_and_eval(tmp_path: Path) -> None:
    from bridgex.data.layout import DataLayout

    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 10_000)
    layout = DataLayout(root)
    probe = set(layout.dictionary(SRC, TGT, "probe").translations())
    ev = set(layout.dictionary(SRC, TGT, "eval").translations())
    got = {w for w, _ in words}
    assert len(got) == len(words) > 50 and not got & probe and not got & ev
    assert all(g == [f"{w}.{TGT}"] for w, g in words)
    assert dev_words(root, SRC, TGT, 7) == words[:7]


def _run(worker, root: str, words, design, conditions=(NONE, "en", "de"), incumbent=NONE, **kw):
    return asyncio.run(
        validate_on_dev(worker, words, SRC, TGT, list(conditions), incumbent, design, data_root=root, k_shot=3, **kw)
    )


def test_hits_are_counted_per_condition_and_paired(tmp_path: Path) -> None:
    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 100)
    idx = {w: int(w[1:]) for w, _ in words}
    right_direct = {w for w in idx if idx[w] % 4 == 0}
    right_en = {w for w in idx if idx[w] % 2 == 0}  # a superset of direct's: en wins every discordant word
    worker = ScriptedWorker(lambda i: i % 4 == 0, {"en": lambda i: i % 2 == 0, "de": lambda i: False})
    got = _run(worker, root, words, SequentialDesign(looks=(len(words),)))
    assert got.scores[NONE].hits == len(right_direct) and got.scores[NONE].n == len(words)
    assert got.scores["en"].hits == len(right_en)
    assert got.scores["de"].hits == 0
    tests = {t.condition: t for t in got.decision.tests}
    assert (tests["en"].wins, tests["en"].losses) == (len(right_en) - len(right_direct), 0)
    assert (tests["de"].wins, tests["de"].losses) == (0, len(right_direct))
    assert got.decision.served == "en" and got.decision.closed_by == "efficacy"
    # every condition's prompts carry the demonstration words recorded for it (here the dictionaries share every
    # word, so they are the same words), and the order served for the pair is recorded
    shown_by = got.notes["demos"]
    assert all(ws == shown_by[NONE] and len(ws) == 3 for ws in shown_by.values())
    assert got.demo_words[:3] == shown_by[NONE] and not got.notes["demo_differences"]
    finals = [p for p in worker.prompts if p.rstrip().endswith(f"→{native_name(TGT)}:")]
    for p in finals:
        shown = re.findall(r'^[^"\n]*"(w\d{4})"', p, flags=re.M)[:-1]
        assert shown == shown_by[NONE], p


def test_screened_answers_give_the_same_outcomes_for_fewer_decode_steps(tmp_path: Path) -> None:
    """screen_tokens: a final answer is first decoded for 3 tokens; `"wr` is no dev word's gold, so a wrong answer
    is decided there, and only answers that could still be right are decoded whole. Bridge steps are always whole
    (their word is needed)."""
    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 60)
    rules = (lambda i: i % 3 == 0, {"en": lambda i: i % 2 == 0, "de": lambda i: i % 5 == 0})
    runs = {}
    for screen in (0, 3):
        worker = ScriptedWorker(*rules, cut=True)
        got = _run(worker, root, words, SequentialDesign(looks=(len(words),)), screen_tokens=screen)
        runs[screen] = (got, worker)
    (plain, w0), (screened, w3) = runs[0], runs[3]
    assert plain.scores == screened.scores and plain.decision.tests == screened.decision.tests
    assert plain.scores[NONE].hits == len([w for w, _ in words if int(w[1:]) % 3 == 0]) > 0
    finals = 3 * len(words)
    hits = sum(v.hits for v in plain.scores.values())
    assert w0.max_tokens.count(16) == finals + 2 * len(words)  # each final answer, each bridge step: whole
    assert w3.max_tokens.count(3) == finals and w3.max_tokens.count(16) == 2 * len(words) + hits


def test_failures_are_retried_then_excluded_and_counted(tmp_path: Path) -> None:
    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 60)
    flaky, dead = words[0][0], words[1][0]
    worker = ScriptedWorker(lambda i: True, {"en": lambda i: True, "de": lambda i: True}, flaky=[flaky], dead=[dead])
    got = _run(worker, root, words, SequentialDesign(looks=(len(words),)), retries=2)
    # the dead word fails in all three conditions and is excluded, not counted as a miss
    assert got.notes["errors"] == {NONE: 1, "en": 1, "de": 1}
    assert got.scores[NONE].n == len(words) - 1 and got.scores[NONE].hits == len(words) - 1
    assert got.notes["retried"] >= 1 + 2  # the flaky word once; the dead word twice per condition at least
    assert got.decision.tests[0].n == len(words) - 1


def test_too_many_failures_fail_the_validation(tmp_path: Path) -> None:
    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 40)
    worker = ScriptedWorker(lambda i: True, {"en": lambda i: True}, dead=[w for w, _ in words[:10]])
    with pytest.raises(ValidationFailed, match="dev generations failed"):
        _run(worker, root, words, SequentialDesign(looks=(40,)), conditions=(NONE, "en"), retries=0)


def test_sequential_looks_measure_only_open_conditions(tmp_path: Path) -> None:
    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 400)
    assert len(words) >= 200, len(words)
    # en wins ~1 word in 15 over direct (dev words are even indices): not significant at 0.001 after 50
    # words; de never differs from direct: stopped for futility
    worker = ScriptedWorker(
        lambda i: i % 3 == 0, {"en": lambda i: i % 3 == 0 or i % 10 == 2, "de": lambda i: i % 3 == 0}
    )
    got = _run(worker, root, words, SequentialDesign(looks=(50, 100, 200)))
    assert got.decision.closed_by in ("efficacy", "final_look")
    tests = {t.condition: t for t in got.decision.tests}
    assert tests["de"].dropped and got.scores["de"].n == 50  # stopped after the first look
    assert got.scores["en"].n == got.decision.words > 50


def test_the_bridge_step_is_reused_across_pairs(tmp_path: Path) -> None:
    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 30)
    memo = CompletionMemo()
    import services.analyzer.validation as v

    old = v.MEMO
    v.MEMO = memo
    try:
        w1 = ScriptedWorker(lambda i: False, {"en": lambda i: False})
        _run(w1, root, words, SequentialDesign(looks=(30,)), conditions=(NONE, "en"), memo_key="m")
        w2 = ScriptedWorker(lambda i: False, {"en": lambda i: False})
        got = _run(w2, root, words, SequentialDesign(looks=(30,)), conditions=(NONE, "en"), memo_key="m")
    finally:
        v.MEMO = old
    assert len(w1.prompts) == 30 * 3 and len(w2.prompts) == 0  # everything was asked before
    assert got.notes["memo_hits"] == 90


def test_demonstration_differences_are_recorded(tmp_path: Path) -> None:
    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 20)
    from bridgex.demos import ordered_words

    first = ordered_words(root, SRC, TGT)[0]
    de = tmp_path / "dict" / f"{SRC}-de" / "probe.tsv"
    de.write_text("".join(r for r in de.read_text().splitlines(keepends=True) if not r.startswith(first + "\t")))
    clear_cache()
    worker = ScriptedWorker(lambda i: False, {"en": lambda i: False, "de": lambda i: False})
    got = _run(worker, root, words, SequentialDesign(looks=(20,)))
    diff = got.notes["demo_differences"]
    assert set(diff) == {"de"} and first not in got.notes["demos"]["de"] and first in got.notes["demos"][NONE]
    assert len(diff["de"]["not_in_incumbent"]) == 1 and diff["de"]["count"] == 3


def test_a_condition_without_demonstration_data_is_left_out(tmp_path: Path) -> None:
    import shutil

    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 20)
    shutil.rmtree(tmp_path / "dict" / f"{SRC}-de")
    clear_cache()
    worker = ScriptedWorker(lambda i: False, {"en": lambda i: False})
    got = _run(worker, root, words, SequentialDesign(looks=(20,)), incumbent="en")
    assert set(got.notes["left_out"]) == {"de"} and "de" not in got.scores
    assert got.decision.incumbent == "en" and {t.condition for t in got.decision.tests} == {NONE}


def test_check_stops_a_look_between_generations(tmp_path: Path) -> None:
    """A cancel (or the analyzer shutting down) stops the dev validation inside a look, before the next
    generation, instead of after the look's hundreds of words: the job is handed back within seconds."""
    from bridgex.cancel import Cancelled

    root = _data(tmp_path)
    words = dev_words(root, SRC, TGT, 200)
    worker = ScriptedWorker(lambda i: False, {"en": lambda i: False, "de": lambda i: False})
    stop_after = 40

    def check() -> None:
        if len(worker.prompts) >= stop_after:
            raise Cancelled("cancelled during validation")

    design = SequentialDesign.doubling(200, 200, len(words))
    with pytest.raises(Cancelled):
        _run(worker, root, words, design, concurrency=4, check=check)
    # a look of 200 words x 3 conditions is 1,000 generations (two per bridged word); the stop came after the
    # 40th, with at most the ones already in flight on top
    assert stop_after <= len(worker.prompts) <= stop_after + 4, len(worker.prompts)
