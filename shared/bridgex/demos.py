"""k-shot demonstrations from the prepared data directory (bridgex.data.layout), for served prompts, the gold
filter and the dev validation alike: one choice of demonstrations, so what is measured is what is served.

Words come from the pair's *probe* dictionary part (dev and eval words stay unseen), most common first: words a
model knows teach the format better than rare entries. A bridged chain needs the same source word in the s->b
dictionary too. Sentences come from UDHR articles, parallel by number. Missing data raises
`bridgex.data.layout.DataNotPrepared` (a FileNotFoundError); callers decide whether to gather it or refuse.
"""

from __future__ import annotations

from functools import lru_cache

from bridgex.frequency import frequency_order
from bridgex.prompts import Demo


@lru_cache(maxsize=256)
def demo_words(root: str, source: str, target: str) -> tuple[tuple[str, str], ...]:
    """(source word, its first translation) of the probe part, most common first."""
    from bridgex.data.layout import DataLayout

    d = DataLayout(root).dictionary(source, target, "probe")
    tr = {w: ts for w, ts in d.translations().items() if ts}
    return tuple((w, tr[w][0]) for w in frequency_order(tr, source, target, salt="demos"))


@lru_cache(maxsize=256)
def _articles(root: str, lang: str) -> tuple[tuple[int, str], ...]:
    from bridgex.data.layout import DataLayout

    arts = DataLayout(root).udhr_articles(lang)
    return tuple((n, paras[0]) for n, paras in arts.items() if paras and n > 0)


def clear_cache() -> None:
    """Forget cached demonstrations (after the data directory was re-prepared)."""
    demo_words.cache_clear()
    _articles.cache_clear()


def word_demos(
    root: str, source: str, target: str, bridge: str | None, k: int, query: str
) -> tuple[list[Demo], list[Demo]]:
    """(demos for the bridge step s->b, demos for the final step), each at most k, never the query word."""
    if k <= 0:
        return [], []
    st = [(w, t) for w, t in demo_words(root, source, target) if w != query]
    if bridge is None:
        return [], [Demo(w, t) for w, t in st[:k]]
    sb = dict(demo_words(root, source, bridge))
    step1 = [Demo(w, b) for w, b in sb.items() if w != query][:k]
    step2 = [Demo(w, t, bridge_text=sb[w]) for w, t in st if w in sb][:k]
    return step1, step2


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


def demo_pairs(source: str, target: str, bridges: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The dictionaries word demonstrations read: s->t and s->b for each bridge."""
    return [(source, target), *((source, b) for b in bridges if b not in (source, target))]
