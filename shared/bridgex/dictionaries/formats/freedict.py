"""FreeDict dictd dictionaries (index + dictzip): entry parsing, markup stripping and script checks."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from bridgex.dictionaries.model import Dictionary, WordPair

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def decode_dictd_number(text: str) -> int:
    """dictd's index numbers: base64 digits, most significant first (not RFC 4648 byte encoding)."""
    n = 0
    for ch in text:
        try:
            n = n * 64 + _B64[ch]
        except KeyError as exc:
            raise ValueError(f"invalid dictd base64 number {text!r}") from exc
    return n


_SENSE_NUM = re.compile(r"^\s*\d+\.\s*")
_BRACKETS = re.compile(r"\[[^\]]*\]|<[^>]*>|\{[^}]*\}")
_PARENS = re.compile(r"\([^()]*\)")
_SKIP_PREFIXES = ("see:", "synonym", "antonym", "note:", "example", "usage:", "from ", "see also")


def strip_markup(text: str) -> str:
    text = _BRACKETS.sub(" ", text)
    for _ in range(3):  # nested parentheses, e.g. "(noun (common) (futsuumeishi))"
        text = _PARENS.sub(" ", text)
    return " ".join(text.split())


def _parse_dictd_entry(body: str) -> tuple[str, list[str]]:
    """Headword and translations of one FreeDict entry.

    Layout: `headword [/IPA/] [<tags>]`, then per sense (optionally `N.`) a line of comma-separated
    translations, possibly followed by a definition in the source language, notes, `see:` cross references.
    Only the first content line of each sense is taken as translations.
    """
    lines = body.split("\n")
    head = lines[0]
    head = head.split(" /", 1)[0].split(", ", 1)[0]  # IPA starts with " /"; jpn lists alternative spellings
    head = strip_markup(head)
    translations: list[str] = []
    need = True  # looking for the translation line of the current sense
    for raw in lines[1:]:
        line = raw.strip()
        if not line:
            continue
        if _SENSE_NUM.match(line):
            need = True
            line = _SENSE_NUM.sub("", line)
        if not need or line.lower().startswith(_SKIP_PREFIXES):
            continue
        content = strip_markup(line)
        if not content:
            continue  # a grammar-only line like "(noun (common))": the translations follow
        need = False
        translations.extend(t.strip() for t in re.split(r"[,;]", content) if t.strip())
    return head, translations


_SCRIPT_RANGES = {
    "Arab": ((0x0600, 0x06FF), (0x0750, 0x077F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "Hebr": ((0x0590, 0x05FF), (0xFB1D, 0xFB4F)),
    "Hans": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF)),
    "Jpan": ((0x3040, 0x30FF), (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x31F0, 0x31FF)),
}


def in_script(word: str, script: str) -> bool:
    """Whether the word's letters belong to `script` (Latin: no letter from the other scripts above)."""
    letters = [ord(ch) for ch in word if ch.isalpha()]
    if not letters:
        return False
    if script in _SCRIPT_RANGES:
        ranges = _SCRIPT_RANGES[script]
        return all(any(lo <= c <= hi for lo, hi in ranges) for c in letters)
    if script == "Latn":
        return all(c < 0x0250 or 0x1E00 <= c <= 0x1EFF for c in letters)
    return True


def _script_of(lang: str) -> str | None:
    try:
        from bridgex.languages import get_language

        return get_language(lang).script
    except ValueError:
        return None


def read_freedict(
    index_path: str | Path,
    dict_path: str | Path | None = None,
    *,
    source_lang: str | None = None,
    target_lang: str | None = None,
    single_words: bool = True,
    check_script: bool = True,
) -> Dictionary:
    """A FreeDict dictd dictionary: `freedict-X-Y.index` (headword, base64 offset, length) + `.dict.dz`.

    `.dict.dz` is dictzip, a gzip file with extra random-access data, so plain gzip reads it whole.
    Languages default to the file name's ISO 639-3 codes mapped to project codes. With `check_script`, a
    translation must be written in the target's script (drops glosses and romanisations).
    """
    index_path = Path(index_path)
    stem = index_path.name.removesuffix(".index")
    if dict_path is None:
        dict_path = index_path.with_name(stem + ".dict.dz")
        if not Path(dict_path).exists():
            dict_path = index_path.with_name(stem + ".dict")
    dict_path = Path(dict_path)
    if source_lang is None or target_lang is None:
        m = re.match(r"^(?:freedict-)?([a-z]{3})-([a-z]{3})$", stem)
        if not m:
            raise ValueError(f"cannot infer languages from {index_path.name!r}; pass source_lang/target_lang")
        from bridgex.languages import normalize_code

        source_lang = source_lang or normalize_code(m.group(1))
        target_lang = target_lang or normalize_code(m.group(2))
    opener = gzip.open if dict_path.suffix == ".dz" or dict_path.name.endswith(".gz") else open
    with opener(dict_path, "rb") as fh:
        data = fh.read()
    origin = f"freedict:{stem.removeprefix('freedict-')}"
    s_script = _script_of(source_lang) if check_script else None
    t_script = _script_of(target_lang) if check_script else None
    pairs: list[WordPair] = []
    seen_spans: set[tuple[int, int]] = set()
    with open(index_path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00database") or parts[0].startswith("00-database"):
                continue
            span = (decode_dictd_number(parts[1]), decode_dictd_number(parts[2]))
            if span in seen_spans:
                continue
            seen_spans.add(span)
            body = data[span[0] : span[0] + span[1]].decode("utf-8", errors="replace")
            head, translations = _parse_dictd_entry(body)
            if not head or (s_script and not in_script(head, s_script)):
                continue
            for tr in translations:
                if t_script and not in_script(tr, t_script):
                    continue
                pairs.append(WordPair(head, tr, origin))
    pairs = _untitle(_untitle(pairs, source_lang, "source"), target_lang, "target")
    return Dictionary(source_lang, target_lang, pairs, origin).cleaned(single_words=single_words)


def _untitle(pairs: list[WordPair], lang: str, side: str) -> list[WordPair]:
    """Some FreeDict files capitalise every word ("Turtle"); lower-case them unless the language capitalises
    nouns (German) or the side is not mostly title-cased."""
    if lang == "de" or not pairs:
        return pairs
    words = [getattr(p, side) for p in pairs]
    cased = [w for w in words if w[:1].isalpha() and w[:1].lower() != w[:1].upper()]
    if not cased or sum(w[:1].isupper() for w in cased) < 0.9 * len(cased):
        return pairs

    def low(w: str) -> str:
        return w[:1].lower() + w[1:] if w[1:] == w[1:].lower() else w

    if side == "source":
        return [WordPair(low(p.source), p.target, p.origin) for p in pairs]
    return [WordPair(p.source, low(p.target), p.origin) for p in pairs]
