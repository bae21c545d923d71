"""Belebele JSONL and SIB-200 TSV loaders on small files written in the published formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bridgex.evaluation.loaders import (
    EvalDataError,
    find_language_file,
    load_belebele,
    load_sib200,
    sib200_file,
)

from tests.eval.conftest import write_belebele, write_sib


def test_belebele_reads_items_and_answer_letters(tmp_path: Path) -> None:
    d = write_belebele(tmp_path / "bele", ["en", "sw"], n=6)
    path = find_language_file(d, "sw")
    assert path.name == "swh_Latn.jsonl"
    items = load_belebele(path)
    assert len(items) == 6
    first = items[0]
    assert first.id == "https://example.org/0#1"
    assert first.passage == "maji nyumba mbwa." and first.question == "maji?"
    assert first.choices == ("maji", "nyumba", "mbwa", "paka")
    assert [i.answer for i in items] == ["A", "B", "C", "D", "A", "B"]
    # parallel across languages by (link, question_number)
    assert [i.id for i in load_belebele(find_language_file(d, "en"))] == [i.id for i in items]


def test_belebele_errors_name_the_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "eng_Latn.jsonl"
    p.write_text(json.dumps({"flores_passage": "x", "question": "y"}) + "\n")
    with pytest.raises(EvalDataError, match=r"eng_Latn.jsonl:1: missing Belebele fields"):
        load_belebele(p)
    row = {
        "flores_passage": "x",
        "question": "y",
        "correct_answer_num": "5",
        **{f"mc_answer{i}": str(i) for i in range(1, 5)},
    }
    p.write_text(json.dumps(row) + "\n")
    with pytest.raises(EvalDataError, match="1-4"):
        load_belebele(p)
    p.write_text("{not json\n")
    with pytest.raises(EvalDataError, match="not valid JSON"):
        load_belebele(p)
    with pytest.raises(EvalDataError, match="no file for 'fi'"):
        find_language_file(tmp_path, "fi")


def test_sib200_reads_tsv(tmp_path: Path) -> None:
    d = write_sib(tmp_path / "sib", ["en"], n=6)
    path = sib200_file(d, "en", "test")
    assert path == d / "eng_Latn" / "test.tsv"
    items = load_sib200(path)
    assert [i.label for i in items] == ["science/technology", "travel", "politics", "sports", "health", "entertainment"]
    assert items[0].id == "0" and items[0].text.startswith("water house")


def test_sib200_rejects_wrong_header(tmp_path: Path) -> None:
    p = tmp_path / "test.tsv"
    p.write_text("id\tlabel\tsentence\n1\ttravel\thello\n")
    with pytest.raises(EvalDataError, match="index_id, category, text"):
        load_sib200(p)
    with pytest.raises(EvalDataError, match=r"no SIB-200 test\.tsv for 'de'"):
        sib200_file(tmp_path, "de")
