"""Metrics and their uncertainty: P@1, accuracy, chrF, Wilson and bootstrap intervals, Spearman.

Differences between conditions on a few hundred items are small, so every number the harness reports carries a
95% interval (Wilson for proportions, a seeded percentile bootstrap for corpus chrF) and the HSIC ranking is
judged by a rank correlation rather than by eye.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sacrebleu.metrics import CHRF

from bridgex.intervals import Z95, wilson_interval

__all__ = [
    "Z95",
    "Estimate",
    "bootstrap_ci",
    "chrf",
    "chrf_estimate",
    "proportion_estimate",
    "spearman",
    "wilson_interval",
    "word_correct",
]


@dataclass(frozen=True)
class Estimate:
    """A metric value with its 95% interval, on the 0-1 scale (accuracy, P@1) or 0-100 (chrF)."""

    value: float
    low: float
    high: float
    n: int
    method: str  # "wilson" | "bootstrap"

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "ci": self.method}


def proportion_estimate(hits: Sequence[bool | int]) -> Estimate:
    """Accuracy / P@1 with its Wilson interval."""
    n = len(hits)
    k = int(sum(1 for h in hits if h))
    low, high = wilson_interval(k, n)
    return Estimate(k / n if n else float("nan"), low, high, n, "wilson")


def word_correct(prediction: str, golds: Iterable[str], normalize: Callable[[str], str]) -> bool:
    """BLI hit: the normalised prediction equals any normalised gold (P@1 counts one guess per word)."""
    pred = normalize(prediction)
    if not pred:
        return False
    return any(pred == normalize(g) for g in golds)


_CHRF = CHRF()


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu defaults: char 6-grams, beta 2), 0-100."""
    if len(hypotheses) != len(references):
        raise ValueError("hypotheses and references differ in length")
    if not hypotheses:
        return float("nan")
    return float(_CHRF.corpus_score(list(hypotheses), [list(references)]).score)


def bootstrap_ci(
    n: int,
    statistic: Callable[[list[int]], float],
    *,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap over item indices; seeded so a rerun reports the same interval."""
    if n <= 0:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    stats = sorted(statistic([rng.randrange(n) for _ in range(n)]) for _ in range(resamples))
    lo = stats[math.floor(alpha / 2 * (resamples - 1))]
    hi = stats[math.ceil((1 - alpha / 2) * (resamples - 1))]
    return (lo, hi)


def chrf_estimate(
    hypotheses: Sequence[str], references: Sequence[str], *, resamples: int = 500, seed: int = 0
) -> Estimate:
    """Corpus chrF with a bootstrap interval (resampling sentences, recomputing corpus chrF each time).

    Corpus chrF pools n-gram statistics, so resampling sentence-level scores would be wrong: each resample
    recomputes the pooled statistic from sufficient statistics gathered once per sentence.
    """
    n = len(hypotheses)
    if n != len(references):
        raise ValueError("hypotheses and references differ in length")
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, "bootstrap")
    import numpy as np

    # Private sacrebleu helpers, checked against sacrebleu 2.4-2.6: segment statistics once, then the same
    # f-score function corpus_score uses, on summed statistics (tested against corpus_score).
    stats = np.asarray(_CHRF._extract_corpus_statistics(list(hypotheses), [list(references)]), dtype=np.int64)

    def pooled(idx: list[int]) -> float:
        return float(_CHRF._compute_f_score(stats[idx].sum(axis=0).tolist()))

    value = pooled(list(range(n)))
    low, high = bootstrap_ci(n, pooled, resamples=resamples, seed=seed)
    return Estimate(value, low, high, n, "bootstrap")


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho and its two-sided p-value (scipy); NaN when either side is constant or n < 3."""
    from scipy.stats import spearmanr

    if len(x) != len(y):
        raise ValueError("x and y differ in length")
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return (float("nan"), float("nan"))
    res = spearmanr(x, y)
    return (float(res.statistic), float(res.pvalue))
