"""Probe sets and the gold filter: unit tests: a scripted client stands in for the generation worker (one module)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bridgex.cancel import Cancelled
from bridgex.generation.client import Completion, GenerationFailed, WorkerUnavailable
from bridgex.generation.gold_filter import GoldFilterFailed, abuild_probe_set
from bridgex.probes import ProbeSet, ProbeSetTooSmall, candidate_words
from bridgex.prompts import Demo

from tests.analyzer.conftest import scripted_completion


class _ScriptedClient:
    """Answers from a table (query word -> output text); records what it was asked and how many requests were
    in flight at once. `fail` words raise the given client error."""

    def __init__(self, answers: dict[str, str], fail: dict[str, Exception] | None = None) -> None:
        self.answers, self.fail, self.asked = answers, fail or {}, []
        self.in_flight = self.max_in_flight = 0

    async def complete(self, prompt: str, **kw: object) -> Completion:
        self.asked.append(prompt)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            word = prompt.rsplit('"', 2)[-2]  # the query is the last line; demonstrations come before it
            if word in self.fail:
                raise self.fail[word]
            return scripted_completion(self.answers.get(word, f'"{word}"'))
        finally:
            self.in_flight -= 1


PAIRS = [(f"w{i}", f"t{i}") for i in range(40)] + [("w0", "alt0"), ("same", "same")]


def test_candidate_words_groups_gold_and_drops_identical() -> None:
    words = dict(candidate_words(PAIRS))
    assert words["w0"] == ["t0", "alt0"] and "same" not in words and len(words) == 40
    assert candidate_words(PAIRS, seed=1) == candidate_words(PAIRS, seed=1)
    assert candidate_words(PAIRS, seed=1) != candidate_words(PAIRS, seed=2)


def test_frequency_order_puts_common_words_first() -> None:
    pairs = [("aphantasia", "aphantasie"), ("water", "eau"), ("DXing", "radioécoute"), ("house", "maison")]
    words = [w for w, _ in candidate_words(pairs, source="en", target="fr")]
    assert set(words[:2]) == {"water", "house"} and set(words[2:]) == {"aphantasia", "DXing"}
    # Swahili has no wordfreq list of its own: ranked by its gold translations' frequency in English instead
    sw = [w for w, _ in candidate_words([("mbolea", "manure"), ("maji", "water")], source="sw", target="en")]
    assert sw == ["maji", "mbolea"]
    with pytest.raises(Exception, match="word_order"):
        candidate_words(pairs, source="en", word_order="alphabetical")


async def test_no_filter_caps_and_hashes(tmp_path: Path) -> None:
    ps = await abuild_probe_set(PAIRS, "en", "fr", gold_filter=False, probe_max=10, probe_min=5)
    assert len(ps) == 10 and not ps.gold_filtered and ps.available == 40
    assert ps.prompts[0].startswith('English:"') and ps.hash == ps.content_hash()
    ps.save(tmp_path / "p.json")
    assert ProbeSet.load(tmp_path / "p.json").hash == ps.hash
    other = await abuild_probe_set(
        PAIRS, "en", "fr", gold_filter=False, probe_max=10, probe_min=5, seed=3, word_order="random"
    )
    assert other.hash != ps.hash


async def test_gold_filter_keeps_correct_answers() -> None:
    answers = {f"w{i}": f' "T{i}"\n' for i in range(0, 40, 2)}  # every even word right (case-folded)
    answers["w1"] = ' "alt1"'  # wrong
    client = _ScriptedClient(answers)
    ps = await abuild_probe_set(PAIRS, "en", "fr", client=client, probe_max=8, probe_min=4, concurrency=2)
    assert len(ps) == 8 and all(int(it.word[1:]) % 2 == 0 for it in ps.items)
    assert all(it.answer == it.gold[0].upper() or it.answer.lower() in it.gold for it in ps.items)
    assert ps.filter == "gold" and ps.gold_filtered and ps.kept == 8 and 8 <= ps.tried < 40
    assert len(client.asked) < 40  # stopped once probe_max passed
    assert client.max_in_flight == 2  # bounded concurrency


async def test_gold_filter_demonstrations_in_filter_prompt_only() -> None:
    demos = [Demo("w0", "t0"), Demo("w2", "t2")]
    client = _ScriptedClient({f"w{i}": f'"t{i}"' for i in range(40)})
    ps = await abuild_probe_set(PAIRS, "en", "fr", client=client, probe_max=6, probe_min=2, demos=demos)
    assert all(p.count("\n") == 2 and p.startswith('English:"w0"→Français:"t0"') for p in client.asked)
    assert not {"w0", "w2"} & set(ps.words)  # a demonstration word is never a probe
    assert all(it.prompt == f'English:"{it.word}"→Français:' for it in ps.items)  # activations: zero-shot
    assert ps.params["filter_k"] == 2


async def test_gold_filter_too_few_policy() -> None:
    client = _ScriptedClient({})  # the model echoes every word
    with pytest.raises(ProbeSetTooSmall, match=r"kept 0 of .*probe_min=4"):
        await abuild_probe_set(PAIRS, "en", "fr", client=client, probe_max=8, probe_min=4, fallback="fail")
    assert len(client.asked) <= 32
    # the default policy ranks on unfiltered words instead, and says so with the counts
    ps = await abuild_probe_set(PAIRS, "en", "fr", client=_ScriptedClient({"w3": '"t3"'}), probe_max=8, probe_min=4)
    assert ps.filter == "unfiltered" and not ps.gold_filtered and len(ps) == 8
    # it stops at the first word after which probe_min is out of reach: 1 kept + 2 left of 32 < 4
    assert ps.kept == 1 and ps.tried == 30 and ps.params["fallback"] == "unfiltered"
    plain = await abuild_probe_set(PAIRS, "en", "fr", gold_filter=False, probe_max=8, probe_min=4)
    # a hopeless pair stops early: 0 kept after 4 x probe_min words of a 1,000-word limit
    many = [(f"x{i}", f"y{i}") for i in range(2000)]
    echo = _ScriptedClient({})
    hopeless = await abuild_probe_set(many, "en", "fr", client=echo, probe_max=250, probe_min=32)
    assert hopeless.filter == "unfiltered" and hopeless.tried == 128 and len(echo.asked) == 128
    assert ps.hash == plain.hash  # same words and prompts: the activations are shared


async def test_gold_filter_worker_errors() -> None:
    few = _ScriptedClient({f"w{i}": f'"t{i}"' for i in range(40)}, fail={"w5": GenerationFailed("timeout")})
    ps = await abuild_probe_set(PAIRS, "en", "fr", client=few, probe_max=20, probe_min=4)
    assert ps.errors == 1 and "w5" not in ps.words and ps.filter == "gold"  # one slow request loses one word
    many = _ScriptedClient({}, fail={f"w{i}": GenerationFailed("timeout") for i in range(40)})
    with pytest.raises(GoldFilterFailed, match=r"gold-filter requests .* failed"):
        await abuild_probe_set(PAIRS, "en", "fr", client=many, probe_max=20, probe_min=4)
    down = _ScriptedClient({}, fail={f"w{i}": WorkerUnavailable("refused") for i in range(40)})
    with pytest.raises(WorkerUnavailable):
        await abuild_probe_set(PAIRS, "en", "fr", client=down, probe_max=20, probe_min=4)


async def test_small_dictionary_and_cancel() -> None:
    with pytest.raises(ProbeSetTooSmall, match="only 3 usable source words"):
        await abuild_probe_set(PAIRS[:3], "en", "fr", gold_filter=False, probe_min=4)
    with pytest.raises(Cancelled):
        await abuild_probe_set(
            PAIRS, "en", "fr", client=_ScriptedClient({}), probe_max=8, probe_min=1, should_cancel=lambda: True
        )
