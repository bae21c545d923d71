"""bridgex.confidence: the answer's own tokens decide, not the quotes around them."""

from __future__ import annotations

import math

import pytest
from bridgex.confidence import answer_confidence, answer_span


def test_only_the_answer_tokens_count() -> None:
    raw = ' "eau"'
    tokens = [' "', "e", "au", '"']
    offsets = [0, 2, 3, 5]
    lps = [-0.01, -1.0, -2.0, -0.001]
    got = answer_confidence(raw, "eau", tokens, lps, offsets)
    assert got == pytest.approx(math.exp(-1.5))
    # the sure quote tokens would have inflated it
    assert got < math.exp(sum(lps) / len(lps))


def test_unlocated_answer_uses_every_token_and_empty_is_none() -> None:
    assert answer_confidence("xyz", "abc", ["x", "yz"], [-1.0, -3.0], [0, 1]) == pytest.approx(math.exp(-2.0))
    assert answer_confidence("", "", [], [], []) is None
    assert answer_confidence("a", "a", [], [], []) is None
    assert answer_confidence("ab", "ab", ["ab"], [float("-inf")], [0]) == 0.0
    assert answer_span(' "Wasser"', "Wasser") == (2, 8)


def test_confidence_is_a_probability() -> None:
    for lps in ([-0.0], [-0.5, -7.0], [-30.0]):
        c = answer_confidence("w", "w", ["w"] * len(lps), lps, [0] * len(lps))
        assert c is not None and 0.0 <= c <= 1.0
