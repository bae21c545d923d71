"""Typological distances from lang2vec's URIEL vectors, and the typology-nearest fallback bridge.

When the gateway has no HSIC ranking for a pair yet it must still answer at once (conventions.md: a cache miss
never computes inline), so it needs a cheap, offline guess: the candidate closest to both languages in URIEL.

lang2vec's wheel ships the feature vectors (`data/*.npz`) but not its precomputed distance file, and its
module imports `pkg_resources` (gone from recent setuptools). So we read the `.npz` arrays ourselves
(`allow_pickle=False`) and compute URIEL-style cosine distances. Missing values (lang2vec prints them as `--`,
stored as -1) are masked pairwise; the kNN-predicted sets we use by default have none.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import math
import threading
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "TypologyUnavailable",
    "distance_matrix",
    "nearest_candidate",
    "typology_distance",
    "uriel_code",
]

# kind -> (npz file, source row name, feature-name prefix).
# Syntax/phonology/inventory are lang2vec's "_knn" (kNN-predicted) sets.
KINDS: dict[str, tuple[str, str, str]] = {
    "syntactic": ("feature_predictions.npz", "predicted", "S_"),
    "phonological": ("feature_predictions.npz", "predicted", "P_"),
    "inventory": ("feature_predictions.npz", "predicted", "INV_"),
    "genetic": ("family_features.npz", "FAM", ""),
    "geographic": ("geocoord_features.npz", "GEOCOORDS", ""),
    "syntactic_wals": ("features.npz", "WALS", "S_"),  # observed values, with missing ones
    "syntactic_average": ("feature_averages.npz", "avg", "S_"),
}
DEFAULT_KINDS: tuple[str, ...] = ("syntactic", "phonological", "inventory", "genetic", "geographic")

# URIEL codes for the paper languages whose ISO 639-3 code is a macrolanguage with thin or no URIEL data.
_URIEL_OVERRIDES = {"zh": "cmn", "zho": "cmn"}


class TypologyUnavailable(RuntimeError):
    """lang2vec's data is not installed, or a language has no URIEL vector."""


@lru_cache(maxsize=1)
def _data_dir() -> Path:
    """lang2vec's data folder, found through package metadata: the wheel also installs a `bin/lang2vec.py`
    script that shadows the package when a console script's folder is first on sys.path."""
    candidates: list[Path] = []
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        candidates.append(Path(str(importlib.metadata.distribution("lang2vec").locate_file("lang2vec/data"))))
    spec = importlib.util.find_spec("lang2vec")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    for path in candidates:
        if (path / "feature_predictions.npz").is_file():
            return path
    raise TypologyUnavailable("lang2vec data not found: pip install 'lang2vec==1.1.2' (vectors ship in the wheel)")


_lock = threading.Lock()


class _Kind:
    """One feature kind held compactly: dense rows for small sets, sparse index sets for the family tree."""

    def __init__(self, kind: str) -> None:
        fname, source, prefix = KINDS[kind]
        with np.load(_data_dir() / fname, allow_pickle=False) as db:
            langs = [str(x) for x in db["langs"]]
            feats = [str(f) for f in db["feats"]]
            cols = [i for i, f in enumerate(feats) if f.startswith(prefix)]
            src = [i for i, s in enumerate(db["sources"]) if str(s) == source]
            data = db["data"]
            if kind == "genetic":
                mat = data[:, :, src[0]]
                self.sparse: list[np.ndarray] | None = [np.flatnonzero(row > 0) for row in mat]
                self.dense: np.ndarray | None = None
            else:
                self.dense = np.ascontiguousarray(data[:, cols, src[0]], dtype=np.float64)
                self.sparse = None
        self.index = {c: i for i, c in enumerate(langs)}

    def has(self, code: str) -> bool:
        i = self.index.get(code)
        if i is None:
            return False
        if self.sparse is not None:
            return self.sparse[i].size > 0
        return bool((self.dense[i] >= 0).any())  # type: ignore[index]

    def distance(self, a: str, b: str) -> float:
        """1 - cosine over features known for both; NaN when nothing is shared (no information)."""
        ia, ib = self.index.get(a), self.index.get(b)
        if ia is None or ib is None:
            return math.nan
        if self.sparse is not None:
            sa, sb = self.sparse[ia], self.sparse[ib]
            if sa.size == 0 or sb.size == 0:
                return math.nan
            shared = np.intersect1d(sa, sb, assume_unique=True).size
            return 1.0 - shared / math.sqrt(sa.size * sb.size)
        va, vb = self.dense[ia], self.dense[ib]  # type: ignore[index]
        mask = (va >= 0) & (vb >= 0)
        if not mask.any():
            return math.nan
        x, y = va[mask], vb[mask]
        nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
        if nx == 0.0 or ny == 0.0:
            return 0.0 if nx == ny else 1.0
        return float(1.0 - np.dot(x, y) / (nx * ny))


@cache
def _kind(kind: str) -> _Kind:
    if kind not in KINDS:
        raise ValueError(f"unknown typology kind {kind!r}; known: {', '.join(KINDS)}")
    with _lock:
        return _Kind(kind)


@lru_cache(maxsize=4096)
def uriel_code(code: str) -> str:
    """The URIEL (ISO 639-3) code of any language code `bridgex.languages` accepts."""
    from bridgex.languages import get_language

    lang = get_language(code)
    return _URIEL_OVERRIDES.get(lang.code, _URIEL_OVERRIDES.get(lang.iso639_3, lang.iso639_3))


@lru_cache(maxsize=65536)
def _distance(a: str, b: str, kinds: tuple[str, ...]) -> float:
    if a == b:
        return 0.0
    values = [d for k in kinds if not math.isnan(d := _kind(k).distance(a, b))]
    if not values:
        raise TypologyUnavailable(f"no URIEL features shared by {a!r} and {b!r} for kinds {list(kinds)}")
    return float(sum(values) / len(values))


def typology_distance(a: str, b: str, kinds: Sequence[str] = DEFAULT_KINDS) -> float:
    """Mean over `kinds` of URIEL cosine distances, in [0, 1]; kinds lacking data for a or b are skipped."""
    return _distance(uriel_code(a), uriel_code(b), tuple(kinds))


def distance_matrix(codes: Sequence[str], kinds: Sequence[str] = DEFAULT_KINDS) -> np.ndarray:
    n = len(codes)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = typology_distance(codes[i], codes[j], kinds)
    return out


def nearest_candidate(source: str, target: str, candidates: Iterable[str], kinds: Sequence[str] = DEFAULT_KINDS) -> str:
    """The candidate (never s or t) with the smallest mean distance to s and t; ties go to the earlier one.

    Candidates without URIEL data are skipped; returns the candidate as given.
    """
    from bridgex.languages import normalize_code

    s, t = normalize_code(source), normalize_code(target)
    best: tuple[float, int, str] | None = None
    skipped: list[str] = []
    for order, cand in enumerate(candidates):
        c = normalize_code(cand)
        if c in (s, t):
            continue
        try:
            score = 0.5 * (typology_distance(c, s, kinds) + typology_distance(c, t, kinds))
        except TypologyUnavailable:
            skipped.append(cand)
            continue
        if best is None or (score, order) < best[:2]:
            best = (score, order, cand)
    if best is None:
        extra = f" (no URIEL data for {skipped})" if skipped else ""
        raise ValueError(f"no usable bridge candidate for {source}->{target} other than the pair itself{extra}")
    return best[2]
