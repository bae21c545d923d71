"""Common words first: an order for dictionary words, so probe sets and evaluation items are words a model can know.

Big dictionaries (FreeDict deu, jpn: 100k+ entries) are mostly rare words ("DXing", "Tetrahydrocannabinol"); a
seeded random order then tests rare vocabulary, and a small model sits at the floor. Frequencies come from the
`wordfreq` lists, read as dictionaries (no tokenizer, so Chinese and Japanese need neither jieba nor MeCab).
Languages wordfreq lacks (Swahili: it would silently answer with English counts) are never looked up; a word is
then ranked by its most frequent gold translation in the other language, else by its number of translations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

from bridgex.languages import get_language


@lru_cache(maxsize=32)
def _frequencies(lang: str) -> Mapping[str, float] | None:
    try:
        from wordfreq import available_languages, get_frequency_dict
    except ImportError:  # pragma: no cover - wordfreq is a core dependency
        return None
    language = get_language(lang)
    for code in (language.code, language.cldr):
        if code and code in available_languages():
            return get_frequency_dict(code)
    return None


STOPWORD_RANK = 150
"""The most frequent words of a language are mostly function words ("the", "of", 的, 和): poor BLI items and
demonstrations whose dictionary glosses are noise. Words ranked above this in their language go last."""


@lru_cache(maxsize=32)
def _stopword_threshold(lang: str) -> float:
    freqs = _frequencies(lang)
    if not freqs:
        return float("inf")
    top = sorted(freqs.values(), reverse=True)
    return top[min(STOPWORD_RANK, len(top)) - 1]


def has_frequencies(lang: str) -> bool:
    """Whether wordfreq has a list of its own for this language (not a silent fallback)."""
    return _frequencies(lang) is not None


def word_frequency(word: str, lang: str) -> float | None:
    """Frequency of `word` in `lang` (0.0 when unseen), or None when the language has no list."""
    freqs = _frequencies(lang)
    if freqs is None:
        return None
    return float(freqs.get(word.casefold(), 0.0))


def _tiebreak(word: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}\x00{word}".encode()).hexdigest()


def frequency_order(
    translations: Mapping[str, Sequence[str]], source: str, target: str | None = None, *, salt: str = ""
) -> list[str]:
    """Source words of `translations` (word -> gold targets), most frequent first; deterministic.

    Score: the source word's own frequency; where the source language has no list, the highest frequency of
    its gold translations in `target`; last, the number of translations. Function words (the STOPWORD_RANK
    most frequent of the scored language) go after every other word. Ties break on a salted hash.
    """
    own = has_frequencies(source)
    via_target = not own and target is not None and has_frequencies(target)

    scored_lang = source if own else target if via_target else None
    stop = _stopword_threshold(scored_lang) if scored_lang else float("inf")

    def score(word: str) -> float:
        if own:
            return word_frequency(word, source) or 0.0
        if via_target:
            return max((word_frequency(g, target) or 0.0 for g in translations[word]), default=0.0)
        return 0.0

    def key(word: str) -> tuple[bool, float, int, str]:
        f = score(word)
        return (f >= stop, -f, -len(translations[word]), _tiebreak(word, salt))

    return sorted(translations, key=key)


def order_words(words: Iterable[str], source: str, *, salt: str = "") -> list[str]:
    """Plain word list, most frequent first (no translations known)."""
    return frequency_order({w: () for w in dict.fromkeys(words)}, source, salt=salt)
