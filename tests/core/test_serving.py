"""bridgex.serving: what `auto` serves from given dev accuracies (pure; no worker)."""

from __future__ import annotations

import pytest
from bridgex.serving import choose, dev_score, validation_conditions


def _dev(**hits: int) -> dict:
    return {c: dev_score(h, 50) for c, h in hits.items()}


def test_validated_serves_the_measured_best() -> None:
    got = choose("validated", ["es", "de"], _dev(none=10, es=12, de=15, en=11))
    assert got.bridge == "de" and got.policy == "validated"  # measurement beats the HSIC order
    assert "de beat direct translation" in got.reason and "none 10/50" in got.reason


def test_validated_none_wins_when_no_bridge_beats_direct() -> None:
    assert choose("validated", ["es", "de"], _dev(none=12, es=12, de=3, en=11)).bridge is None  # a tie is not a win
    got = choose("validated", ["es"], _dev(none=20, es=5, en=19))
    assert got.bridge is None and "no bridge beat direct translation" in got.reason


def test_validated_ties_between_bridges_follow_the_hsic_rank() -> None:
    assert choose("validated", ["de", "es"], _dev(none=1, es=9, de=9, en=9)).bridge == "de"
    assert choose("validated", ["es", "de"], _dev(none=1, es=9, de=9, en=9)).bridge == "es"
    # English is measured although HSIC did not propose it: ranked after every proposal on a tie
    assert choose("validated", ["es", "de"], _dev(none=1, es=5, de=9, en=9)).bridge == "de"
    assert choose("validated", ["es", "de"], _dev(none=1, es=5, de=8, en=9)).bridge == "en"


def test_validated_without_measurement_serves_none_and_hsic_serves_the_argmax() -> None:
    assert choose("validated", ["es"], None).bridge is None
    assert choose("validated", ["es"], {}).bridge is None
    assert choose("hsic", ["es", "de"], _dev(none=50, es=0)).bridge == "es"  # the paper ignores the dev split
    assert choose("hsic", [], None).bridge is None
    with pytest.raises(ValueError, match="serve_policy"):
        choose("best", ["es"], None)  # type: ignore[arg-type]


def test_conditions_and_intervals() -> None:
    assert validation_conditions(["es", "de", "fr"], 2, "sw", "fi") == ["none", "es", "de", "en"]
    assert validation_conditions(["en", "de"], 2, "sw", "fi") == ["none", "en", "de"]
    assert validation_conditions(["de", "fr"], 2, "en", "fi") == ["none", "de", "fr"]  # en is a side
    s = dev_score(0, 50)
    assert s.p_at_1 == 0.0 and s.ci[0] < 1e-9 and 0.05 < s.ci[1] < 0.1
    assert dev_score(25, 50).ci[0] < 0.5 < dev_score(25, 50).ci[1]


def test_serve_margin_needs_that_many_more_dev_words() -> None:
    dev = _dev(none=2, es=3, de=4)
    assert choose("validated", ["es", "de"], dev, margin=1).bridge == "de"
    assert choose("validated", ["es", "de"], dev, margin=2).bridge == "de"
    got = choose("validated", ["es", "de"], dev, margin=3)
    assert got.bridge is None and "by 3+ words" in got.reason
    with pytest.raises(ValueError, match="serve_margin"):
        choose("validated", ["es"], dev, margin=0)
