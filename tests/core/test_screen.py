"""Judging a greedy answer from its first tokens (bridgex.prompts.parse_word_partial, bridgex.probes.gold_verdict,
bridgex.generation.screen): a verdict from a cut completion must be the whole completion's, for every completion
and every cut; and the screen must decide the common cases, or it saves nothing."""

from __future__ import annotations

import asyncio

from bridgex.generation.screen import judge_word
from bridgex.probes import gold_verdict, matches_gold
from bridgex.prompts import parse_word, parse_word_partial
from hypothesis import example, given, settings
from hypothesis import strategies as st

# what base models write around an answer, and the characters the parser treats specially: quotes of every style,
# arrows, `->`, backslashes, markup, punctuation it strips, combining marks (NFC), Hangul jamo, a Hebrew point,
# case (casefold), and whitespace
ALPHABET = [*"水火ab AB-\\>→<i/.,!?'\"“”„«»「」:=\t", "\u0301", "e", "\u1100", "\u1161", "\u11a8", "\u05b8", "ß"]
completion = st.text(alphabet=ALPHABET, max_size=14)


@settings(max_examples=3000, deadline=None)
@given(out=completion, gold_from=st.integers(0, 3), cut_at=st.integers(0, 14), extra=completion)
@example(out='"水"', gold_from=0, cut_at=2, extra="")
@example(out='"ab\\"c"', gold_from=0, cut_at=4, extra="")
@example(out='"e\u0301"', gold_from=0, cut_at=2, extra="")
@example(out='"ab-> c"', gold_from=0, cut_at=4, extra="")
@example(out='ab "c"', gold_from=0, cut_at=2, extra="")
def test_a_verdict_from_a_cut_completion_is_the_whole_ones(out: str, gold_from: int, cut_at: int, extra: str) -> None:
    # golds: the completion's own answer (a hit), a prefix or extension of it (near misses), or unrelated text
    answer = parse_word(out)
    gold = [answer, answer[:-1], answer + "a", extra][gold_from] or "x"
    whole = matches_gold(answer, [gold])
    assert gold_verdict(out, [gold], finished=True) is whole
    cut = out[:cut_at]
    got = gold_verdict(cut, [gold], finished=False)
    assert got in (None, whole), (cut, out, gold)
    decided = parse_word_partial(cut)
    if decided is not None and decided[1]:
        assert decided[0] == answer, (cut, out)
    elif decided is not None:
        assert answer.startswith(decided[0]), (cut, out, decided)


def test_the_common_cases_are_decided_early() -> None:
    gold = ["水"]
    assert gold_verdict('"火', gold, finished=False) is False  # wrong from its first character
    assert gold_verdict(' "水"', gold, finished=False) is True  # closed: decided before the newline
    assert gold_verdict('"水', gold, finished=False) is None  # may still become 水道
    assert gold_verdict('"', gold, finished=False) is None
    assert gold_verdict('"Wa', ["wasser"], finished=False) is None  # case folds
    assert gold_verdict('"Wo', ["wasser"], finished=False) is False
    assert gold_verdict("水", gold, finished=False) is None  # no quote yet: a later quoted span may be the answer
    assert gold_verdict("水→", gold, finished=False) is True  # a stop before any quote: the answer is what precedes
    assert gold_verdict('"水', gold, finished=True) is True  # the whole completion, cut by nothing


def _cutting(text_of: dict[str, str], log: list[int]):
    """generate() over characters as tokens: a completion longer than max_tokens is cut and not finished."""

    async def generate(prompt: str, max_tokens: int) -> tuple[str, bool]:
        log.append(max_tokens)
        text = text_of[prompt]
        return text[:max_tokens], len(text) <= max_tokens

    return generate


def test_judge_word_asks_again_only_when_the_start_does_not_decide() -> None:
    outs = {"p1": '"火山"', "p2": '"水"', "p3": '"水道"', "p4": 'water "水"'}
    for prompt, out in outs.items():
        for screen in (0, 2, 3, 4):
            log: list[int] = []
            judged = asyncio.run(judge_word(_cutting(outs, log), prompt, ["水"], max_tokens=16, screen_tokens=screen))
            assert judged.hit is matches_gold(parse_word(out), ["水"])
            assert judged.requests == len(log)
            if judged.answer is not None:
                assert judged.answer == parse_word(out)
    log = []
    assert not asyncio.run(judge_word(_cutting(outs, log), "p1", ["水"], max_tokens=16, screen_tokens=2)).hit
    assert log == [2]  # `"火` decides it
    log = []
    assert asyncio.run(judge_word(_cutting(outs, log), "p2", ["水"], max_tokens=16, screen_tokens=3)).hit
    assert log == [3]  # `"水"` is closed
    log = []
    assert not asyncio.run(judge_word(_cutting(outs, log), "p3", ["水"], max_tokens=16, screen_tokens=2)).hit
    assert log == [2, 16]  # `"水` could be 水 or 水道: decoded whole
    log = []
    asyncio.run(judge_word(_cutting(outs, log), "p1", ["水"], max_tokens=16, screen_tokens=0))
    assert log == [16]


def test_a_character_cut_mid_way_is_not_read() -> None:
    async def generate(prompt: str, max_tokens: int) -> tuple[str, bool]:
        return ('"\ufffd', False) if max_tokens < 16 else ('"水"', True)

    judged = asyncio.run(judge_word(generate, "p", ["水"], max_tokens=16, screen_tokens=2))
    assert judged.hit and judged.requests == 2
