"""bridgex.probes unit tests: a scripted client stands in for the generation worker (one module)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from bridgex.probes import ProbeCancelled, ProbeSet, ProbeSetTooSmall, abuild_probe_set, candidate_words


@dataclass
class _Completion:
    text: str
    finish_reason: str = "stop"
    usage: dict | None = None


class _ScriptedClient:
    """Answers from a table (word -> output text); records what it was asked."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.asked = answers, []

    async def complete_many(self, prompts: list[str], **kw: object) -> list[_Completion]:
        self.asked.extend(prompts)
        out = []
        for p in prompts:
            word = p.split('"')[1]
            out.append(_Completion(self.answers.get(word, f'"{word}"')))
        return out


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
    other = await abuild_probe_set(PAIRS, "en", "fr", gold_filter=False, probe_max=10, probe_min=5, seed=3,
                                   word_order="random")
    assert other.hash != ps.hash


async def test_gold_filter_keeps_correct_answers() -> None:
    answers = {f"w{i}": f' "T{i}"\n' for i in range(0, 40, 2)}  # every even word right (case-folded)
    answers["w1"] = ' "alt1"'  # wrong
    client = _ScriptedClient(answers)
    ps = await abuild_probe_set(PAIRS, "en", "fr", client=client, probe_max=8, probe_min=4, batch_size=4)
    assert len(ps) == 8 and all(int(it.word[1:]) % 2 == 0 for it in ps.items)
    assert all(it.answer == it.gold[0].upper() or it.answer.lower() in it.gold for it in ps.items)
    assert len(client.asked) < 40  # stopped once probe_max passed


async def test_gold_filter_too_few_is_clear() -> None:
    client = _ScriptedClient({})  # the model echoes every word
    with pytest.raises(ProbeSetTooSmall, match=r"kept 0 of .*probe_min=4"):
        await abuild_probe_set(PAIRS, "en", "fr", client=client, probe_max=8, probe_min=4, batch_size=8)
    assert len(client.asked) <= 32


async def test_small_dictionary_and_cancel() -> None:
    with pytest.raises(ProbeSetTooSmall, match="only 3 usable source words"):
        await abuild_probe_set(PAIRS[:3], "en", "fr", gold_filter=False, probe_min=4)
    with pytest.raises(ProbeCancelled):
        await abuild_probe_set(PAIRS, "en", "fr", client=_ScriptedClient({}), probe_max=8, probe_min=1,
                               should_cancel=lambda: True)
