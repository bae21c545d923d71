"""Metrics on hand-computed examples (P@1 matching, chrF, Wilson, bootstrap, Spearman)."""

from __future__ import annotations

import math

import pytest
from bridgex.evaluation import metrics
from bridgex.prompts import normalize_word
from sacrebleu.metrics import CHRF


def test_wilson_matches_hand_computation() -> None:
    # 8/10, z=1.96: centre (0.8 + z^2/20) / (1 + z^2/10) = 0.7167, half-width 0.2266
    low, high = metrics.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    # 0/n keeps a non-zero upper bound, n/n a non-one lower bound (unlike the normal interval)
    assert metrics.wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    lo, hi = metrics.wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    # exactly 0 and 1 at the edges for any n (the formula alone leaves rounding residue: 3.5e-18 at 0/100)
    for n in range(1, 500):
        assert metrics.wilson_interval(0, n)[0] == 0.0 and metrics.wilson_interval(n, n)[1] == 1.0, n
    with pytest.raises(ValueError):
        metrics.wilson_interval(11, 10)


def test_proportion_estimate() -> None:
    e = metrics.proportion_estimate([True, False, True, True])
    assert (e.value, e.n, e.method) == (0.75, 4, "wilson")
    assert e.low < 0.75 < e.high


def test_p_at_1_matching_uses_normalize_word() -> None:
    golds = ["Wasser", "Gewässer"]
    assert metrics.word_correct("wasser", golds, normalize_word)
    assert metrics.word_correct(" GEWÄSSER ", golds, normalize_word)
    assert not metrics.word_correct("Wassers", golds, normalize_word)
    assert not metrics.word_correct("", golds, normalize_word)
    # Hebrew niqqud is stripped on both sides
    assert metrics.word_correct("מַיִם", ["מים"], normalize_word)


def test_chrf_hand_computed() -> None:
    # "abc" vs "abd": 1-grams p=r=2/3, 2-grams p=r=1/2, 3-grams 0; orders 4-6 have no n-grams (not counted)
    # => mean P = mean R = 7/18 => F_beta = 7/18
    assert metrics.chrf(["abc"], ["abd"]) == pytest.approx(100 * 7 / 18, abs=1e-9)
    assert metrics.chrf(["the same"], ["the same"]) == pytest.approx(100.0)
    assert metrics.chrf(["xyz"], ["abc"]) == 0.0


def test_chrf_estimate_equals_sacrebleu_corpus_score() -> None:
    hyps = ["the cat sat on the mat", "a dog barks", "hello world", "nothing at all"]
    refs = ["the cat sat on a mat", "the dog barks", "hello there world", "something else"]
    e = metrics.chrf_estimate(hyps, refs, resamples=200)
    assert e.value == pytest.approx(CHRF().corpus_score(hyps, [refs]).score, abs=1e-9)
    assert e.low <= e.high and e.n == 4 and e.method == "bootstrap"
    # seeded: the same interval twice
    assert metrics.chrf_estimate(hyps, refs, resamples=200) == e


def test_bootstrap_interval_shrinks_with_more_data() -> None:
    def mean(xs: list[float]):
        return lambda idx: sum(xs[i] for i in idx) / len(idx)

    small = [0.0, 1.0] * 10
    big = small * 20
    lo_s, hi_s = metrics.bootstrap_ci(len(small), mean(small), resamples=300)
    lo_b, hi_b = metrics.bootstrap_ci(len(big), mean(big), resamples=300)
    assert lo_s <= 0.5 <= hi_s and lo_b <= 0.5 <= hi_b
    assert hi_b - lo_b < hi_s - lo_s


def test_spearman_hand_computed() -> None:
    # d = (-1, 1, -1, 1, 0), sum d^2 = 4: rho = 1 - 6*4 / (5*24) = 0.8
    rho, p = metrics.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert rho == pytest.approx(0.8)
    assert 0 < p < 1
    assert metrics.spearman([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)
    assert all(math.isnan(v) for v in metrics.spearman([1, 2, 3], [1, 1, 1]))
    assert all(math.isnan(v) for v in metrics.spearman([1, 2], [1, 2]))
