"""The data directory's own format: `source<TAB>target<TAB>origin` lines, read and written."""

from __future__ import annotations

from pathlib import Path

from bridgex.dictionaries.model import Dictionary, WordPair


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
