"""The Dictionary model every reader returns: word pairs, cleaning, single-word check, merge, group by source."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bridgex.prompts import normalize_word


@dataclass(frozen=True)
class WordPair:
    source: str
    target: str
    origin: str = field(default="", compare=False)


def group_by_source(pairs: Iterable[Any], *, strip: bool = False) -> dict[str, list[str]]:
    """Source word -> its distinct targets, both in first-seen order.

    `pairs`: objects with `.source` / `.target` (WordPair) or (source, target) tuples. With `strip`, both
    words are stripped first and pairs with an empty side are skipped.
    """
    out: dict[str, list[str]] = {}
    for p in pairs:
        s, t = (p.source, p.target) if hasattr(p, "source") else (p[0], p[1])
        if strip:
            s, t = s.strip(), t.strip()
            if not s or not t:
                continue
        targets = out.setdefault(s, [])
        if t not in targets:
            targets.append(t)
    return out


@dataclass
class Dictionary:
    """Word pairs from `source_lang` to `target_lang`; `origin` names the source (or "merged")."""

    source_lang: str
    target_lang: str
    pairs: list[WordPair]
    origin: str = ""

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[WordPair]:
        return iter(self.pairs)

    @property
    def sources(self) -> list[str]:
        """Unique source words in first-seen order."""
        return list(dict.fromkeys(p.source for p in self.pairs))

    def translations(self) -> dict[str, list[str]]:
        """Source word -> all its gold targets (the BLI evaluation accepts any of them)."""
        return group_by_source(self.pairs)

    def counts_by_origin(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for p in self.pairs:
            counts[p.origin or self.origin or "unknown"] += 1
        return dict(sorted(counts.items()))

    def reversed(self) -> Dictionary:
        return Dictionary(
            self.target_lang,
            self.source_lang,
            [WordPair(p.target, p.source, p.origin) for p in self.pairs],
            self.origin,
        )

    def cleaned(self, *, single_words: bool = True, drop_identical: bool = False) -> Dictionary:
        """Strip, NFC-normalise, keep single words (optional), drop identical pairs, dedup (order kept).

        Identical means equal under `bridgex.prompts.normalize_word`, the form probes and gold matching use.
        """
        seen: set[tuple[str, str]] = set()
        out: list[WordPair] = []
        for p in self.pairs:
            s, t = _norm(p.source), _norm(p.target)
            if not s or not t:
                continue
            if single_words and not (is_single_word(s) and is_single_word(t)):
                continue
            if drop_identical and normalize_word(s) == normalize_word(t):
                continue
            if (s, t) in seen:
                continue
            seen.add((s, t))
            out.append(WordPair(s, t, p.origin or self.origin))
        return Dictionary(self.source_lang, self.target_lang, out, self.origin)


def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", " ".join(text.split()))


_WORD = re.compile(r"^[^\W\d_](?:[^\W\d_]|['’\-·・ー\u0591-\u05C7\u064B-\u065F\u0670])*$")


def is_single_word(text: str) -> bool:
    """One word: letters of any script (combining marks too), inner hyphen/apostrophe; no space/digit/dot."""
    if not text or len(text) > 40:
        return False
    t = "".join(ch for ch in text if unicodedata.category(ch) not in ("Mn", "Mc"))
    if not t:
        return False
    return bool(_WORD.match(t)) and not t.endswith(("-", "'", "’"))


def merge(*dicts: Dictionary, origin: str = "merged") -> Dictionary:
    """Union of dictionaries for one direction, deduplicated; each pair keeps its first origin."""
    if not dicts:
        raise ValueError("merge() needs at least one dictionary")
    s, t = dicts[0].source_lang, dicts[0].target_lang
    for d in dicts[1:]:
        if (d.source_lang, d.target_lang) != (s, t):
            raise ValueError(f"cannot merge {d.source_lang}-{d.target_lang} into {s}-{t}")
    seen: set[tuple[str, str]] = set()
    out: list[WordPair] = []
    for d in dicts:
        for p in d.pairs:
            if (p.source, p.target) not in seen:
                seen.add((p.source, p.target))
                out.append(WordPair(p.source, p.target, p.origin or d.origin))
    return Dictionary(s, t, out, origin)
