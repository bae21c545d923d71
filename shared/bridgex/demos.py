"""k-shot demonstrations from the prepared data directory (bridgex.data.layout), for served prompts, the gold
filter and the dev validation alike: one choice of demonstrations, so what is measured is what is served.

Words come from the pair's *probe* dictionary part (dev and eval words stay unseen), most common first: words a
model knows teach the format better than rare entries. A bridged chain needs the same source word in the s->b
dictionary too. Sentences come from UDHR articles, parallel by number. Missing data raises
`bridgex.data.layout.DataNotPrepared` (a FileNotFoundError); callers decide whether to gather it or refuse.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from bridgex.frequency import frequency_order
from bridgex.glossary import Term, normalize_term
from bridgex.prompts import Demo

DemoChoice = Literal["frequent", "direct", "kept"]
"""DECISION `demo_choice`, which dictionary words teach the format: "frequent" (the most common words),
"direct" (the most common words with an entry not composed through a pivot language: pivot composition brings
function words and wrong senses, e.g. id-ja `"air"→"おしっこ"`), "kept" (the words the gold filter kept: the model
already translates them right; the analyzer records them, the gateway serves the record)."""


@lru_cache(maxsize=256)
def demo_words(root: str, source: str, target: str, choice: str = "frequent") -> tuple[tuple[str, str], ...]:
    """(source word, its translation) of the probe part, most common first. "direct" puts the words with an
    entry that is not pivot-composed first, with that entry's translation ("kept" orders like "frequent": the
    kept words come from the probe set, see `ordered_words`)."""
    from bridgex.data.layout import DataLayout

    d = DataLayout(root).dictionary(source, target, "probe")
    tr = {w: ts for w, ts in d.translations().items() if ts}
    order = frequency_order(tr, source, target, salt="demos")
    if choice != "direct":
        return tuple((w, tr[w][0]) for w in order)
    direct: dict[str, str] = {}
    for p in d.pairs:
        if not (p.origin or d.origin or "").startswith("pivot") and p.source not in direct:
            direct[p.source] = p.target
    first = [(w, direct[w]) for w in order if w in direct]
    return tuple(first + [(w, tr[w][0]) for w in order if w not in direct])


def ordered_words(
    root: str, source: str, target: str, choice: DemoChoice = "frequent", kept: Sequence[str] = ()
) -> list[str]:
    """Candidate demonstration source words in the order `choice` prefers (`kept`: the gold filter's words)."""
    if choice not in ("frequent", "direct", "kept"):
        raise ValueError(f"demo_choice must be 'frequent', 'direct' or 'kept', not {choice!r}")
    base = [w for w, _ in demo_words(root, source, target, "direct" if choice == "direct" else "frequent")]
    if choice != "kept":
        return base
    known = set(base)
    first = [w for w in dict.fromkeys(kept) if w in known]
    return first + [w for w in base if w not in set(first)]


@lru_cache(maxsize=256)
def _articles(root: str, lang: str) -> tuple[tuple[int, str], ...]:
    from bridgex.data.layout import DataLayout

    arts = DataLayout(root).udhr_articles(lang)
    return tuple((n, paras[0]) for n, paras in arts.items() if paras and n > 0)


@lru_cache(maxsize=256)
def _translations(root: str, source: str, target: str, choice: str) -> dict[str, str]:
    """demo_words as a mapping, built once per dictionary (callers only read it): a request picks its k words
    without copying the whole dictionary."""
    return dict(demo_words(root, source, target, choice))


def clear_cache() -> None:
    """Forget cached demonstrations (after the data directory was re-prepared)."""
    demo_words.cache_clear()
    _translations.cache_clear()
    _articles.cache_clear()


def word_demos(
    root: str,
    source: str,
    target: str,
    bridge: str | None,
    k: int,
    query: str,
    *,
    words: Sequence[str] | None = None,
    choice: str = "frequent",
) -> tuple[list[Demo], list[Demo]]:
    """(demos for the bridge step s->b, demos for the final step), each at most k, never the query word.

    Both steps use the same source words: the direct condition's, where the s->b dictionary has them.
    `words`: take the source words in this order (the words a validation measured, so what is served is what
    was measured), then the usual order for a larger k; words no longer in the dictionaries are skipped.
    `choice` (DECISION demo_choice): "direct" prefers entries that are not pivot-composed, for the order and for
    the translations shown."""
    if k <= 0:
        return [], []
    kind = "direct" if choice == "direct" else "frequent"
    st = _translations(root, source, target, kind)
    direct = bridge is None or bridge in (source, target)
    sb = {} if direct else _translations(root, source, bridge, kind)
    chosen: list[str] = []
    for w in itertools.chain(words or (), st):  # recorded first, then the usual order; stops after k
        if w != query and w in st and (direct or w in sb) and w not in chosen:
            chosen.append(w)
            if len(chosen) == k:
                break
    if direct:
        return [], [Demo(w, st[w]) for w in chosen]
    return [Demo(w, sb[w]) for w in chosen], [Demo(w, st[w], bridge_text=sb[w]) for w in chosen]


def text_demos(root: str, source: str, target: str, bridge: str | None, k: int) -> tuple[list[Demo], list[Demo]]:
    """UDHR articles as parallel sentence demonstrations."""
    if k <= 0:
        return [], []
    src = dict(_articles(root, source))
    tgt = dict(_articles(root, target))
    brg = dict(_articles(root, bridge)) if bridge else {}
    common = [n for n in src if n in tgt and (bridge is None or n in brg)][:k]
    step1 = [Demo(src[n], brg[n]) for n in common] if bridge else []
    step2 = [Demo(src[n], tgt[n], bridge_text=brg.get(n)) for n in common]
    return step1, step2


def glossary_demos(demos: Sequence[Demo], terms: Sequence[Term]) -> list[Demo]:
    """The final step's demonstrations with a glossary's terms (issue 23): each term pair after `demos`, nearest
    the query, as `S:"term"→T:"translation"`. A glossary has no bridge word, so in a bridged chain the term
    lines are direct ones among the three-step lines (DECISION: no bridge word is guessed for them). A
    demonstration whose source is one of the terms is dropped: the prompt never shows two translations of it."""
    keys = {normalize_term(t.source) for t in terms}
    kept = [d for d in demos if normalize_term(d.source_text) not in keys]
    return kept + [Demo(t.source, t.target) for t in terms]


def demo_pairs(source: str, target: str, bridges: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The dictionaries word demonstrations read: s->t and s->b for each bridge."""
    return [(source, target), *((source, b) for b in bridges if b not in (source, target))]
