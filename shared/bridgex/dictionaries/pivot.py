"""Pivot composition: a->c dictionaries built through a pivot language b, for pairs no source covers."""

from __future__ import annotations

from collections import defaultdict

from bridgex.dictionaries.model import Dictionary, WordPair


def compose(a_b: Dictionary, b_c: Dictionary, *, max_targets: int = 3, origin: str | None = None) -> Dictionary:
    """a->c through the pivot b: a word reaches every c its pivot translations reach.

    Polysemy makes pivoting noisy, so each source keeps at most `max_targets` targets, preferring those
    reached through more distinct pivot words (ties broken by the target string: deterministic).
    Pivot words match case-insensitively (casefold).
    """
    if a_b.target_lang != b_c.source_lang:
        raise ValueError(f"cannot compose {a_b.source_lang}-{a_b.target_lang} with {b_c.source_lang}-{b_c.target_lang}")
    tag = origin or f"pivot-{a_b.target_lang}"
    via: dict[str, list[str]] = defaultdict(list)
    for p in b_c.pairs:
        via[p.source.casefold()].append(p.target)
    support: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    order: dict[str, int] = {}
    for p in a_b.pairs:
        order.setdefault(p.source, len(order))
        pivot = p.target.casefold()
        for c in via.get(pivot, ()):
            support[p.source][c].add(pivot)
    out: list[WordPair] = []
    for a in sorted(support, key=order.__getitem__):
        ranked = sorted(support[a].items(), key=lambda kv: (-len(kv[1]), kv[0]))
        out.extend(WordPair(a, c, tag) for c, _ in ranked[:max_targets])
    return Dictionary(a_b.source_lang, b_c.target_lang, out, tag)
