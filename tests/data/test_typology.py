"""Typology distances from lang2vec's shipped vectors (no download) and the nearest-candidate fallback."""

from __future__ import annotations

import importlib.metadata
import time

import pytest
from bridgex.languages import PAPER_LANGUAGES
from bridgex.typology import KINDS, distance_matrix, nearest_candidate, typology_distance


# lang2vec's own module imports pkg_resources; we read only its data files, so check the package is there.
def _has_lang2vec() -> bool:
    try:
        importlib.metadata.distribution("lang2vec")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _has_lang2vec(), reason="lang2vec (the `data` extra) is not installed")


def test_distance_properties() -> None:
    assert typology_distance("en", "en") == 0.0
    assert typology_distance("en", "de") == pytest.approx(typology_distance("de", "en"))
    for a, b in [("en", "ja"), ("fi", "sw"), ("ar", "he")]:
        assert 0.0 < typology_distance(a, b) <= 1.0
    # relatives are closer than unrelated languages, in every kind that says so
    assert typology_distance("es", "pt") < typology_distance("es", "ja")
    assert typology_distance("ar", "he") < typology_distance("ar", "id")
    assert typology_distance("fi", "hu", ["genetic"]) < typology_distance("fi", "de", ["genetic"])


def test_kind_with_missing_values_is_masked() -> None:
    assert "syntactic_wals" in KINDS
    d = typology_distance("en", "fr", ["syntactic_wals"])
    assert 0.0 <= d <= 1.0


def test_nearest_candidate_is_a_candidate_and_never_s_or_t() -> None:
    codes = list(PAPER_LANGUAGES)
    for s, t in [("en", "sw"), ("id", "tl"), ("zh", "ja"), ("ar", "he"), ("es", "pt")]:
        got = nearest_candidate(s, t, codes)
        assert got in codes and got not in (s, t)
        scores = {c: typology_distance(c, s) + typology_distance(c, t) for c in codes if c not in (s, t)}
        assert scores[got] == pytest.approx(min(scores.values()))
    # Spanish<->Portuguese: the closest other language among Romance candidates and English is Romance
    assert nearest_candidate("es", "pt", ["en", "it", "fr"]) in ("it", "fr")
    # candidate given in another spelling is returned as given, and s/t given in other spellings are excluded
    assert nearest_candidate("swh", "eng", ["en", "sw", "deu"]) == "deu"
    with pytest.raises(ValueError, match="no usable bridge candidate"):
        nearest_candidate("en", "sw", ["en", "sw"])


def test_fast_after_first_use() -> None:
    codes = list(PAPER_LANGUAGES)
    distance_matrix(codes)
    start = time.perf_counter()
    for _ in range(100):
        nearest_candidate("en", "sw", codes)
    assert time.perf_counter() - start < 0.5
