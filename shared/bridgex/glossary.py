"""Glossary terms (issue 23 item 3, like DeepL's glossaries): which terms of a glossary a text holds, and whether
a translation kept their target terms. Pure functions; the gateway stores glossaries, shows the found terms as
demonstrations (`bridgex.demos.glossary_demos`, rendered by `bridgex.prompts`) and reports what it checked.

Matching is on the project's normal form (`normalize_term`: `bridgex.prompts.normalize_word`, so NFC, Hebrew
niqqud gone, casefolded, plus runs of whitespace as one space):
- the whole text equals a term (`TermMatcher.exact`): the glossary defines the answer;
- a text holds a term (`TermMatcher.find`) where the term occurs as a whole word or phrase: no letter or digit
  right before or after it. Longer terms win where terms overlap ("new york" is found in "New York City" and
  "york" inside it is not). In scripts written without spaces between words (Chinese, Japanese, Thai, ...) a
  term is found wherever it occurs, since there is no word boundary to require.
The same rule checks a translation (`contains`, `missing`): an inflected or reworded target term counts as
missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bridgex.prompts import normalize_word

NO_SPACE_SCRIPTS = frozenset({"Hans", "Hant", "Hani", "Jpan", "Thai", "Laoo", "Khmr", "Mymr", "Tibt"})
"""ISO 15924 scripts written without spaces between words: terms match inside a run of letters there."""


@dataclass(frozen=True)
class Term:
    """One glossary entry as the glossary spells it: the source term and the translation it prescribes."""

    source: str
    target: str


def normalize_term(text: str) -> str:
    """The form terms are compared in: `normalize_word` (NFC, niqqud gone, casefolded) with whitespace runs as one
    space and none at the ends."""
    return " ".join(normalize_word(text).split())


def spaced(lang: str | None) -> bool:
    """Whether `lang` separates words with spaces (None or an unknown code: assumed so)."""
    if lang is None:
        return True
    from bridgex.languages import get_language

    try:
        return get_language(lang).script not in NO_SPACE_SCRIPTS
    except ValueError:
        return True


def _pattern(terms: Iterable[str], bounded: bool) -> re.Pattern[str] | None:
    """One alternation over normalised terms, longest first (so at one position the longest term wins), with
    word boundaries when `bounded`; None for no terms."""
    alts = sorted({t for t in terms if t}, key=lambda t: (-len(t), t))
    if not alts:
        return None
    body = "|".join(re.escape(t) for t in alts)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)" if bounded else f"(?:{body})")


class TermMatcher:
    """The terms of one glossary, compiled once (a 1,000-term glossary compiles in ~25 ms and searches a
    2,000-character text in ~2 ms). Terms that normalise alike keep the first one given."""

    def __init__(self, entries: Mapping[str, str], source_lang: str | None = None) -> None:
        self._terms: dict[str, Term] = {}
        for src, tgt in entries.items():
            key = normalize_term(src)
            if key and key not in self._terms:
                self._terms[key] = Term(src, tgt)
        self._re = _pattern(self._terms, spaced(source_lang))

    def __len__(self) -> int:
        return len(self._terms)

    def exact(self, text: str) -> Term | None:
        """The term the whole `text` is (after normalisation), else None."""
        return self._terms.get(normalize_term(text))

    def find(self, text: str) -> list[Term]:
        """The terms `text` holds, each once, in order of first occurrence (longest first where they overlap)."""
        if self._re is None:
            return []
        found: dict[str, Term] = {}
        for m in self._re.finditer(normalize_term(text)):
            found.setdefault(m.group(0), self._terms[m.group(0)])
        return list(found.values())


def contains(text: str, phrase: str, lang: str | None = None) -> bool:
    """Whether `phrase` occurs in `text` by the module's rule (whole words unless `lang` is written without
    spaces)."""
    pattern = _pattern([normalize_term(phrase)], spaced(lang))
    return pattern is not None and pattern.search(normalize_term(text)) is not None


def missing(answer: str, terms: Sequence[Term], target_lang: str | None = None) -> list[Term]:
    """The terms whose target term the translation `answer` lacks."""
    return [t for t in terms if not contains(answer, t.target, target_lang)]


__all__ = ["NO_SPACE_SCRIPTS", "Term", "TermMatcher", "contains", "missing", "normalize_term", "spaced"]
