"""Probe/dev/eval splits disjoint by source word, in a seeded-hash order that stays stable as data grows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from bridgex.dictionaries.model import Dictionary


def _ranked(words: Iterable[str], salt: str) -> list[str]:
    """Words in a seeded-hash order: adding words elsewhere does not reshuffle the others."""
    return sorted(set(words), key=lambda w: (hashlib.sha256(f"{salt}\x00{w}".encode()).hexdigest(), w))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def split_by_source(d: Dictionary, eval_fraction: float = 0.5, seed: int = 0) -> tuple[Dictionary, Dictionary]:
    """(probe, eval): every pair of a source word lands in the same part, so the parts share no source word.

    The order of source words is a seeded hash, not the dictionary's order: adding sources elsewhere does not
    reshuffle the others, and the same inputs always give the same split.
    """
    _check_fraction("eval_fraction", eval_fraction)
    words = _ranked((p.source for p in d.pairs), str(seed))
    return _partition(d, set(words[: round(len(words) * eval_fraction)]))


def _partition(d: Dictionary, chosen: set[str]) -> tuple[Dictionary, Dictionary]:
    """(pairs whose source word is not in `chosen`, pairs whose source word is)."""
    rest = [p for p in d.pairs if p.source not in chosen]
    picked = [p for p in d.pairs if p.source in chosen]
    return (
        Dictionary(d.source_lang, d.target_lang, rest, d.origin),
        Dictionary(d.source_lang, d.target_lang, picked, d.origin),
    )


def split_parts(
    d: Dictionary, eval_fraction: float = 0.5, dev_fraction: float = 0.2, seed: int = 0
) -> tuple[Dictionary, Dictionary, Dictionary]:
    """(probe, dev, eval), pairwise disjoint by source word.

    `eval` is exactly `split_by_source`'s (eval results stay comparable); `dev` takes `dev_fraction` of the
    remaining source words in its own seeded order. The dev draw depends only on those remaining words, so
    `split_parts(probe_and_dev, 0.0, f, seed)` gives the same probe/dev as the full split: the data directory
    stores probe+dev as one file and derives dev at read time.
    """
    _check_fraction("dev_fraction", dev_fraction)
    rest, held = split_by_source(d, eval_fraction, seed)
    words = _ranked((p.source for p in rest.pairs), f"{seed}\x00dev")
    probe, dev = _partition(rest, set(words[: round(len(words) * dev_fraction)]))
    return probe, dev, held
