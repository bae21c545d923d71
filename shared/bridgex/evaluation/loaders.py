"""Readers for the evaluation sets in their published formats (Belebele JSONL, SIB-200 TSV).

Neither data set can be fetched here (no dataset hub), so the harness reads the files a user has, in the
formats the datasets ship in, and the tests write small files in the same formats.
- Belebele: one JSONL file per language variety, named by FLORES-200 code (`eng_Latn.jsonl`), each line
  {link, question_number, flores_passage, question, mc_answer1..4, correct_answer_num ("1".."4"),
  dialect, ds}.
  Items are parallel across languages by (link, question_number).
- SIB-200: `<dir>/<flores code>/{train,dev,test}.tsv` with header `index_id<TAB>category<TAB>text`; items are
  parallel across languages by index_id.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from bridgex.corpora import iter_jsonl
from bridgex.languages import get_language

__all__ = [
    "SIB_LABELS",
    "ClsItem",
    "EvalDataError",
    "MrcItem",
    "find_language_file",
    "load_belebele",
    "load_sib200",
]

SIB_LABELS = ("science/technology", "travel", "politics", "sports", "health", "entertainment", "geography")
CHOICES = ("A", "B", "C", "D")


class EvalDataError(ValueError):
    """An evaluation file is missing or malformed; the message names the file and what was expected."""


@dataclass(frozen=True)
class MrcItem:
    """One Belebele question; `answer` is "A".."D"."""

    id: str
    passage: str
    question: str
    choices: tuple[str, str, str, str]
    answer: str


@dataclass(frozen=True)
class ClsItem:
    """One SIB-200 sentence with its topic label."""

    id: str
    text: str
    label: str


def _flores_code(lang: str) -> str:
    code = get_language(lang).flores
    if not code:
        raise EvalDataError(f"language {lang!r} has no FLORES-200 code; name its file by its code")
    return code


def find_language_file(directory: Path, lang: str, suffixes: tuple[str, ...] = (".jsonl",)) -> Path:
    """The file for `lang` in a directory: `<flores>.jsonl` (Belebele's naming) or `<code>.jsonl`."""
    directory = Path(directory)
    names = [_flores_code(lang), get_language(lang).code]
    for name in names:
        for suf in suffixes:
            p = directory / f"{name}{suf}"
            if p.is_file():
                return p
    looked = ", ".join(n + suffixes[0] for n in names)
    raise EvalDataError(f"no file for {lang!r} in {directory} (looked for {looked})")


def load_belebele(path: Path) -> list[MrcItem]:
    """Read a Belebele JSONL file; item id = `link#question_number` (parallel across languages)."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"Belebele file not found: {path}")
    items: list[MrcItem] = []
    required = (
        "flores_passage",
        "question",
        "mc_answer1",
        "mc_answer2",
        "mc_answer3",
        "mc_answer4",
        "correct_answer_num",
    )
    for lineno, row in iter_jsonl(path, error=EvalDataError):
        missing = [k for k in required if not isinstance(row, dict) or k not in row]
        if missing:
            raise EvalDataError(f"{path}:{lineno}: missing Belebele fields {missing}")
        try:
            num = int(row["correct_answer_num"])
        except (TypeError, ValueError) as e:
            raise EvalDataError(f"{path}:{lineno}: correct_answer_num must be 1-4") from e
        if not 1 <= num <= 4:
            raise EvalDataError(f"{path}:{lineno}: correct_answer_num must be 1-4, got {num}")
        item_id = f"{row.get('link', '')}#{row.get('question_number', lineno)}"
        items.append(
            MrcItem(
                id=item_id,
                passage=str(row["flores_passage"]),
                question=str(row["question"]),
                choices=tuple(str(row[f"mc_answer{i}"]) for i in range(1, 5)),  # type: ignore[arg-type]
                answer=CHOICES[num - 1],
            )
        )
    if not items:
        raise EvalDataError(f"{path}: no items")
    return items


def load_sib200(path: Path) -> list[ClsItem]:
    """Read one SIB-200 TSV split (`index_id`, `category`, `text`)."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"SIB-200 file not found: {path}")
    items: list[ClsItem] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames is None or not {"index_id", "category", "text"} <= set(reader.fieldnames):
            raise EvalDataError(f"{path}: expected a TSV header with index_id, category, text; got {reader.fieldnames}")
        for row in reader:
            label = (row["category"] or "").strip()
            text = (row["text"] or "").strip()
            if not label or not text:
                continue
            items.append(ClsItem(id=str(row["index_id"]), text=text, label=label))
    if not items:
        raise EvalDataError(f"{path}: no items")
    return items


def sib200_file(directory: Path, lang: str, split: str = "test") -> Path:
    """`<dir>/<flores>/<split>.tsv` (SIB-200's layout), or `<dir>/<code>/<split>.tsv`."""
    directory = Path(directory)
    for name in (_flores_code(lang), get_language(lang).code):
        p = directory / name / f"{split}.tsv"
        if p.is_file():
            return p
    raise EvalDataError(
        f"no SIB-200 {split}.tsv for {lang!r} under {directory} (expected "
        f"{directory / _flores_code(lang) / (split + '.tsv')})"
    )
