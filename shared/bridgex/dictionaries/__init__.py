"""Bilingual word dictionaries: readers, single-word filtering, pivot composition and probe/eval splits.

The method needs word pairs (method.md step 2) and the evaluation needs held-out ones (step 8). No one source
covers the 15 languages (assets.md): FreeDict covers many pairs through dictd files, CC-CEDICT gives zh-en,
CLDR (babel) names the same ~1k concepts in every language (the only source for tl, and for he/zh against
non-English), and the rest is composed through English. MUSE's `src tgt` format is read for users who have it.
Every pair remembers where it came from, so counts per origin can be reported.

Modules: `model` (WordPair, Dictionary, merge, group_by_source), `pivot` (compose), `splits` (probe/dev/eval),
`formats/*` (one reader per format).
"""

from __future__ import annotations

from bridgex.dictionaries.formats.cedict import read_cedict
from bridgex.dictionaries.formats.cldr import cldr_dictionary
from bridgex.dictionaries.formats.freedict import decode_dictd_number, in_script, read_freedict
from bridgex.dictionaries.formats.muse import read_muse
from bridgex.dictionaries.formats.tsv import read_tsv, write_tsv
from bridgex.dictionaries.model import Dictionary, WordPair, group_by_source, is_single_word, merge
from bridgex.dictionaries.pivot import compose
from bridgex.dictionaries.splits import split_by_source, split_parts

__all__ = [
    "Dictionary",
    "WordPair",
    "cldr_dictionary",
    "compose",
    "decode_dictd_number",
    "group_by_source",
    "in_script",
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
