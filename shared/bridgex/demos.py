"""k-shot demonstrations from the prepared data directory (bridgex.data.layout), for served prompts, the gold
filter and the dev validation alike: one choice of demonstrations, so what is measured is what is served.

Words come from the pair's *probe* dictionary part (dev and eval words stay unseen), most common first: words a
model knows teach the format better than rare entries. A bridged chain needs the same source word in the s->b
dictionary too. Sentences come from UDHR articles, parallel by number. Missing data raises
`bridgex.data.layout.DataNotPrepared` (a FileNotFoundError); callers decide whether to gather it or refuse.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

from bridgex.atomic import atomic_write_text
from bridgex.frequency import frequency_order
from bridgex.glossary import Term, normalize_term
from bridgex.prompts import Demo

log = logging.getLogger(__name__)

DemoChoice = Literal["frequent", "direct", "kept"]
"""DECISION `demo_choice`, which dictionary words teach the format: "frequent" (the most common words),
"direct" (the most common words with an entry not composed through a pivot language: pivot composition brings
function words and wrong senses, e.g. id-ja `"air"→"おしっこ"`), "kept" (the words the gold filter kept: the model
already translates them right; the analyzer records them, the gateway serves the record)."""


ORDER_FORMAT = "bridgex-demo-order/1"
"""First line of a pair's demonstration order file; a change of the order's rules bumps it."""


def order_path(root: str, source: str, target: str) -> Path:
    """Where a pair's demonstration order is kept: a cache beside the data (derived, rebuilt when stale)."""
    from bridgex.data.layout import DataLayout

    layout = DataLayout(root)
    return layout.root / "cache" / "demos" / f"{layout.pair_dir(source, target).name}.tsv"


def _stamp(root: str, source: str, target: str) -> str:
    """What a pair's order is derived from: the dictionary file its probe part is read from (size, mtime), the
    split parameters and wordfreq's version. Raises DataNotPrepared when the pair has no dictionary."""
    from importlib.metadata import version

    from bridgex.data.layout import DataLayout

    layout = DataLayout(root)
    path = layout.dictionary_path(source, target, "probe")
    if not path.is_file():
        path = layout.dictionary_path(target, source, "all")
    if not path.is_file():
        layout.dictionary(source, target, "probe")  # raises DataNotPrepared, with its message
    st = path.stat()
    return json.dumps(
        [
            ORDER_FORMAT,
            str(path.relative_to(layout.root)),
            st.st_size,
            st.st_mtime_ns,
            layout.split_params(),
            version("wordfreq"),
        ]
    )


def _compute_order(root: str, source: str, target: str) -> list[tuple[str, str, str]]:
    """(word, its first translation, its first translation not composed through a pivot or ""), for the probe
    part's words, most common first."""
    from bridgex.data.layout import DataLayout

    d = DataLayout(root).dictionary(source, target, "probe")
    tr = {w: ts for w, ts in d.translations().items() if ts}
    direct: dict[str, str] = {}
    for p in d.pairs:
        if not (p.origin or d.origin or "").startswith("pivot") and p.source not in direct:
            direct[p.source] = p.target
    return [(w, tr[w][0], direct.get(w, "")) for w in frequency_order(tr, source, target, salt="demos")]


def _read_order(path: Path, stamp: str, *, rows: bool = True) -> list[tuple[str, str, str]] | None:
    """The order file's rows when it was derived from `stamp` (with rows=False: [] without reading them), else
    None (missing, stale or unreadable)."""
    try:
        with path.open(encoding="utf-8", newline="\n") as fh:
            if fh.readline().rstrip("\n") != stamp:
                return None
            if not rows:
                return []
            out = [tuple(line.rstrip("\n").split("\t")) for line in fh]
    except OSError:
        return None
    return out if all(len(r) == 3 for r in out) else None  # type: ignore[return-value]


def _order(root: str, source: str, target: str, stamp: str | None = None) -> list[tuple[str, str, str]]:
    """The pair's order from its cache file when that was derived from the data as it is now, else computed and
    written there (best effort: a read-only data directory only computes). Reading the file costs a few MB for
    the largest dictionaries; computing parses the whole dictionary and loads the language's word frequencies,
    which a long-lived gateway would otherwise hold for every language it served (docs/results.md run 12)."""
    stamp = stamp or _stamp(root, source, target)
    path = order_path(root, source, target)
    rows = _read_order(path, stamp)
    if rows is not None:
        return rows
    rows = _compute_order(root, source, target)
    body = "".join(f"{w}\t{t}\t{x}\n" for w, t, x in rows)
    with contextlib.suppress(OSError):  # a read-only data directory: the analyzer, which gathers data, writes it
        atomic_write_text(path, f"{stamp}\n{body}")
    return rows


def prime(root: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Write the demonstration order of each pair, in both directions, that has a dictionary (after its data was
    gathered: a pair's reverse reads the same file), so that the gateway reads it instead of computing it. A file
    that is up to date is left as it is."""
    from bridgex.data.layout import DataNotPrepared

    for s, t in dict.fromkeys([*pairs, *((t, s) for s, t in pairs)]):
        try:
            stamp = _stamp(root, s, t)
            if _read_order(order_path(root, s, t), stamp, rows=False) is None:
                _order(root, s, t, stamp)
        except DataNotPrepared:
            continue
        except (OSError, ValueError) as exc:  # best effort: whoever needs the order later computes it then
            log.warning("could not write the demonstration order of %s-%s: %s", s, t, exc)


def demo_words(root: str, source: str, target: str, choice: str = "frequent") -> tuple[tuple[str, str], ...]:
    """(source word, its translation) of the probe part, most common first. "direct" puts the words with an
    entry that is not pivot-composed first, with that entry's translation ("kept" orders like "frequent": the
    kept words come from the probe set, see `ordered_words`)."""
    return tuple(_translations(root, source, target, "direct" if choice == "direct" else "frequent").items())


def ordered_words(
    root: str, source: str, target: str, choice: DemoChoice = "frequent", kept: Sequence[str] = ()
) -> list[str]:
    """Candidate demonstration source words in the order `choice` prefers (`kept`: the gold filter's words)."""
    if choice not in ("frequent", "direct", "kept"):
        raise ValueError(f"demo_choice must be 'frequent', 'direct' or 'kept', not {choice!r}")
    base = list(_translations(root, source, target, "direct" if choice == "direct" else "frequent"))
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


@lru_cache(maxsize=64)
def _translations(root: str, source: str, target: str, choice: str) -> dict[str, str]:
    """Source word -> the translation a demonstration shows, in the order of `choice` ("frequent" or "direct"),
    built once per dictionary and process (callers only read it): a request picks its k words without copying
    the whole dictionary. Bounded: a gateway that serves many pairs keeps the 64 it used last."""
    rows = _order(root, source, target)
    if choice != "direct":
        return {w: t for w, t, _ in rows}
    out = {w: x for w, _, x in rows if x}
    out.update((w, t) for w, t, x in rows if not x)
    return out


def clear_cache() -> None:
    """Forget this process's cached demonstrations (after the data directory was re-prepared; the order files
    on disk check their own staleness)."""
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
