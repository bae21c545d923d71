"""Corpus readers on files the tests write: plain text, JSONL, FLORES-style folders, UDHR HTML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bridgex.corpora import (
    find_flores_file,
    parse_udhr_html,
    read_flores,
    read_jsonl,
    read_text,
    read_texts,
    udhr_paragraphs,
    udhr_parallel,
)

from tests.data.fixtures import udhr_html


def test_plain_text_lines_and_paragraphs(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("  one\ntwo  \n\n\nthree\nfour\n", encoding="utf-8")
    assert read_text(f) == ["one", "two", "three", "four"]
    assert read_text(f, unit="paragraphs") == ["one two", "three four"]
    with pytest.raises(ValueError):
        read_text(f, unit="words")


def test_jsonl_field_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(o, ensure_ascii=False)
            for o in [{"text": "hujambo", "id": 1}, {"text": "  "}, {"text": "habari", "sentence": "x"}]
        ),
        encoding="utf-8",
    )
    assert read_jsonl(f) == ["hujambo", "habari"]
    assert read_texts(f) == ["hujambo", "habari"]
    with pytest.raises(ValueError, match=r"t.jsonl:1: no field 'sentence'"):
        read_jsonl(f, field="sentence")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        read_jsonl(bad)


def test_flores_layouts(tmp_path: Path) -> None:
    (tmp_path / "devtest").mkdir()
    (tmp_path / "devtest" / "swh_Latn.devtest").write_text("Habari ya asubuhi.\nAsante sana.\n", encoding="utf-8")
    (tmp_path / "fin_Latn.dev").write_text("Hyvää huomenta.\n", encoding="utf-8")
    assert read_flores(tmp_path, "sw") == ["Habari ya asubuhi.", "Asante sana."]
    assert read_flores(tmp_path, "swh_Latn") == ["Habari ya asubuhi.", "Asante sana."]
    assert read_flores(tmp_path, "fi", split="dev") == ["Hyvää huomenta."]
    assert find_flores_file(tmp_path, "fi", "dev").name == "fin_Latn.dev"
    with pytest.raises(FileNotFoundError, match="no FLORES-style file for 'ja'"):
        read_flores(tmp_path, "ja")


def test_udhr_html_articles_lists_and_entities(tmp_path: Path) -> None:
    html = udhr_html(
        "eng",
        {
            0: ["Whereas recognition &amp; dignity,", "Now, therefore,"],
            1: ["All human beings are born free."],
            2: ["Everyone is   entitled\n to rights."],
            30: ["Nothing in this Declaration."],
        },
        lists={2: ["first item", "second <em>item</em>"]},
    )
    arts = parse_udhr_html(html)
    assert sorted(arts) == [0, 1, 2, 30]
    assert arts[0] == ["Whereas recognition & dignity,", "Now, therefore,"]
    assert arts[2] == ["Everyone is entitled to rights.", "first item", "second item"]
    assert udhr_paragraphs(arts)[0] == "Whereas recognition & dignity,"
    (tmp_path / "eng.html").write_text(html, encoding="utf-8")
    assert read_texts(tmp_path / "eng.html") == udhr_paragraphs(arts)
    with pytest.raises(ValueError, match="UDHR"):
        parse_udhr_html("<html><body><p>no articles</p></body></html>")


def test_udhr_parallel_by_article_number() -> None:
    a = {0: ["p1", "p2"], 1: ["a1"], 3: ["a3"]}
    b = {0: ["q"], 1: ["b1a", "b1b"], 2: ["b2"]}
    assert udhr_parallel(a, b) == [(0, "p1 p2", "q"), (1, "a1", "b1a b1b")]
