"""CLDR names (babel) as a small high-precision dictionary between any two CLDR locales."""

from __future__ import annotations

from typing import Any

from bridgex.dictionaries.model import Dictionary, WordPair


def cldr_dictionary(
    source_lang: str, target_lang: str, *, single_words: bool = True, drop_english_fallback: bool = True
) -> Dictionary:
    """Pairs of CLDR names (babel) shared by two locales: languages, territories, currencies, scripts,
    stand-alone month and weekday names. High precision, ~1k concepts, for any two CLDR locales.

    Some locales leave many names in English (Filipino: 94% of language names), so with
    `drop_english_fallback` a name of a non-English side that equals the English name is not taken as a
    translation (this also drops true cognates such as fi "Kanada" only when identical to English).
    """
    import babel

    from bridgex.languages import get_language

    def locale(code: str) -> babel.Locale:
        loc = get_language(code).cldr
        if not loc:
            raise ValueError(f"no CLDR locale for {code!r}")
        return babel.Locale.parse(loc)

    a, b = locale(source_lang), locale(target_lang)
    en = babel.Locale.parse("en")
    check_a = drop_english_fallback and a.language != "en"
    check_b = drop_english_fallback and b.language != "en"
    pairs: list[WordPair] = []

    def names(loc: babel.Locale, kind: str) -> Any:
        if kind in ("month", "weekday"):
            return (loc.months if kind == "month" else loc.days)["stand-alone"]["wide"]
        return getattr(
            loc,
            {
                "language": "languages",
                "territory": "territories",
                "currency": "currencies",
                "script": "scripts",
            }[kind],
        )

    for kind in ("language", "territory", "currency", "script", "month", "weekday"):
        names_a, names_b, names_en = names(a, kind), names(b, kind), names(en, kind)
        for key in sorted(names_a, key=str):
            if key not in names_b:
                continue
            x, y = names_a[key], names_b[key]
            if not (isinstance(x, str) and isinstance(y, str)):
                continue
            english = names_en.get(key) if key in names_en else None
            if (check_a and x == english) or (check_b and y == english):
                continue
            pairs.append(WordPair(x, y, f"cldr:{kind}"))
    return Dictionary(source_lang, target_lang, pairs, "cldr").cleaned(single_words=single_words)
