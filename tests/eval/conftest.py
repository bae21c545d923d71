"""Fixtures of the evaluation tests: a small data dir in the DataLayout format, Belebele / SIB-200 files in
their published formats, and (module-scoped) a real CPU worker serving the tiny random model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

WORDS = {
    "en": ["water", "house", "dog", "cat", "sun", "moon", "tree", "book", "fire", "bread"],
    "sw": ["maji", "nyumba", "mbwa", "paka", "jua", "mwezi", "mti", "kitabu", "moto", "mkate"],
    "fi": ["vesi", "talo", "koira", "kissa", "aurinko", "kuu", "puu", "kirja", "tuli", "leipä"],
    "de": ["Wasser", "Haus", "Hund", "Katze", "Sonne", "Mond", "Baum", "Buch", "Feuer", "Brot"],
    "fr": ["eau", "maison", "chien", "chat", "soleil", "lune", "arbre", "livre", "feu", "pain"],
}
FLORES = {"en": "eng_Latn", "sw": "swh_Latn", "fi": "fin_Latn", "de": "deu_Latn", "fr": "fra_Latn"}
PROBE_N = 4  # the first 4 words of each list are the probe part, the other 6 the eval part


def write_data_dir(root: Path) -> Path:
    """Dictionaries for every ordered pair (probe/eval disjoint by source word) and UDHR-like articles."""
    for s in WORDS:
        for t in WORDS:
            if s == t:
                continue
            d = root / "dict" / f"{s}-{t}"
            d.mkdir(parents=True, exist_ok=True)
            rows = [f"{a}\t{b}\ttest" for a, b in zip(WORDS[s], WORDS[t], strict=True)]
            (d / "all.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
            (d / "probe.tsv").write_text("\n".join(rows[:PROBE_N]) + "\n", encoding="utf-8")
            (d / "eval.tsv").write_text("\n".join(rows[PROBE_N:]) + "\n", encoding="utf-8")
    (root / "text").mkdir(parents=True, exist_ok=True)
    for lang, ws in WORDS.items():
        arts = {
            str(i): [f"{ws[(i + j) % 10]} {ws[(i + j + 1) % 10]} {lang}{i}.{j}" for j in range(1 + i % 2)]
            for i in range(8)
        }
        (root / "text" / f"{lang}.udhr.json").write_text(json.dumps(arts, ensure_ascii=False), encoding="utf-8")
        (root / "text" / f"{lang}.txt").write_text("\n".join(p for v in arts.values() for p in v), encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps({"params": {"seed": 0, "eval_fraction": 0.5}}))
    return root


def write_belebele(directory: Path, langs: list[str], n: int = 6) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        with (directory / f"{FLORES[lang]}.jsonl").open("w", encoding="utf-8") as fh:
            for i in range(n):
                ws = WORDS[lang]
                fh.write(
                    json.dumps(
                        {
                            "link": f"https://example.org/{i // 2}",
                            "question_number": i % 2 + 1,
                            "flores_passage": f"{ws[i]} {ws[i + 1]} {ws[i + 2]}.",
                            "question": f"{ws[i]}?",
                            "mc_answer1": ws[i],
                            "mc_answer2": ws[i + 1],
                            "mc_answer3": ws[i + 2],
                            "mc_answer4": ws[i + 3],
                            "correct_answer_num": str(i % 4 + 1),
                            "dialect": FLORES[lang],
                            "ds": "2023-05-03",
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
    return directory


SIB = ["science/technology", "travel", "politics", "sports", "health", "entertainment", "geography"]


def write_sib(directory: Path, langs: list[str], n: int = 6) -> Path:
    for lang in langs:
        d = directory / FLORES[lang]
        d.mkdir(parents=True, exist_ok=True)
        for split, offset in (("train", 100), ("dev", 200), ("test", 0)):
            lines = ["index_id\tcategory\ttext"]
            lines += [
                f"{offset + i}\t{SIB[i % 7]}\t{WORDS[lang][i]} {WORDS[lang][i + 1]} {SIB[i % 7]}" for i in range(n)
            ]
            (d / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_data_dir(tmp_path / "data")


@pytest.fixture
def tiny_worker(gen_worker: tuple[Any, str]) -> str:
    """The session's real vLLM worker serving the tiny random Llama."""
    return gen_worker[1]
