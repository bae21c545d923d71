"""Confidence intervals the method itself needs (the dev validation's accuracies), kept apart from the
evaluation harness so that serving decisions do not depend on it. scipy computes them."""

from __future__ import annotations

from scipy.stats import binomtest, norm

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (scipy.stats.binomtest's): unlike the normal one it stays inside [0, 1] and is sane
    at 0/n and n/n (exactly 0 and 1 there). `z`: the normal quantile of the two-sided level (1.96: 95%)."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside [0, {n}]")
    ci = binomtest(successes, n).proportion_ci(confidence_level=float(2 * norm.cdf(z) - 1), method="wilson")
    low = 0.0 if successes == 0 else float(ci.low)
    high = 1.0 if successes == n else float(ci.high)
    return (low, high)
