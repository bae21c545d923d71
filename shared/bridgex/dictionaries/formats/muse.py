"""MUSE's `src tgt` word-pair files, read for users who have them."""

from __future__ import annotations

from pathlib import Path

from bridgex.dictionaries.model import Dictionary, WordPair


def read_muse(path: str | Path, source_lang: str, target_lang: str, *, single_words: bool = True) -> Dictionary:
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
