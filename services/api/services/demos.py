"""k-shot demonstrations for translate prompts, from the prepared data directory (bridgex.data.layout).

Words come from the pair's *probe* dictionary part (the evaluation part stays unseen); a bridged chain needs
the same source word in the s->b dictionary too. Sentences come from UDHR articles, parallel by number.
Missing data is a 422 that says how to prepare it (or to send k_shot=0), never a silent zero-shot.
"""

from __future__ import annotations

from functools import lru_cache

from bridgex.frequency import frequency_order
from bridgex.prompts import Demo

from ..core.errors import bad_input


@lru_cache(maxsize=256)
def _words(root: str, source: str, target: str) -> tuple[tuple[str, str], ...]:
    from bridgex.data.layout import DataLayout

    d = DataLayout(root).dictionary(source, target, "probe")
    tr = {w: ts for w, ts in d.translations().items() if ts}
    # common words first: demonstrations a model knows teach the format better than rare entries
    return tuple((w, tr[w][0]) for w in frequency_order(tr, source, target, salt="demos"))


@lru_cache(maxsize=256)
def _articles(root: str, lang: str) -> tuple[tuple[int, str], ...]:
    from bridgex.data.layout import DataLayout

    arts = DataLayout(root).udhr_articles(lang)
    return tuple((n, paras[0]) for n, paras in arts.items() if paras and n > 0)


def _missing(exc: Exception, k: int) -> Exception:
    return bad_input(f"k_shot={k} needs demonstration data: {exc} Or send k_shot=0.", field="k_shot")


def word_demos(root: str, source: str, target: str, bridge: str | None, k: int,
               query: str) -> tuple[list[Demo], list[Demo]]:
    """(demos for the bridge step s->b, demos for the final step), each at most k, never the query word."""
    try:
        st = [(w, t) for w, t in _words(root, source, target) if w != query]
        if bridge is None:
            return [], [Demo(w, t) for w, t in st[:k]]
        sb = dict(_words(root, source, bridge))
    except FileNotFoundError as exc:
        raise _missing(exc, k) from exc
    step1 = [Demo(w, b) for w, b in sb.items() if w != query][:k]
    step2 = [Demo(w, t, bridge_text=sb[w]) for w, t in st if w in sb][:k]
    return step1, step2


def text_demos(root: str, source: str, target: str, bridge: str | None,
               k: int) -> tuple[list[Demo], list[Demo]]:
    """UDHR articles as parallel sentence demonstrations."""
    try:
        src = dict(_articles(root, source))
        tgt = dict(_articles(root, target))
        brg = dict(_articles(root, bridge)) if bridge else {}
    except FileNotFoundError as exc:
        raise _missing(exc, k) from exc
    common = [n for n in src if n in tgt and (bridge is None or n in brg)][:k]
    step1 = [Demo(src[n], brg[n]) for n in common] if bridge else []
    step2 = [Demo(src[n], tgt[n], bridge_text=brg.get(n)) for n in common]
    return step1, step2
