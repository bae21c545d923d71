"""`bridgex eval` end to end on a real CPU worker (uvicorn + the tiny random model): all four tasks, zero-
and k-shot, rankings and an overlap matrix; outputs JSON + markdown + PNGs; a rerun makes zero requests,
counted by the worker's own Prometheus counter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from bridgex.cli import app
from bridgex.ranking import CandidateScore, Ranking
from typer.testing import CliRunner

from tests.eval.conftest import write_belebele, write_sib

pytestmark = pytest.mark.integration


def _completions_served(url: str) -> float:
    """Requests vLLM's engine finished (its Prometheus counter, every finish reason)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(m.group(1)) for m in re.finditer(r"^vllm:request_success_total\{[^}]*\} (\S+)$", text, re.M))


def test_eval_cli_end_to_end_and_resumable(tiny_worker: str, data_dir: Path, tmp_path: Path) -> None:
    rk = tmp_path / "rankings"
    rk.mkdir()
    ranked = [
        CandidateScore(code=c, score=0.9 - 0.1 * i, rank=i + 1, per_layer={1: 0.5 + i, 2: 0.4}, coverage=1)
        for i, c in enumerate(["de", "fr"])
    ]
    r = Ranking(
        ranked=ranked,
        best="de",
        layers=[1, 2],
        pair_set_sizes={1: 3, 2: 3},
        params={"selection": "lape", "bridge_set": "full"},
        src="en",
        tgt="sw",
    )
    (rk / "en-sw.json").write_text(json.dumps(r.model_dump(mode="json")))
    overlap = tmp_path / "overlap.json"
    matrix = [[9, 4, 2], [4, 8, 1], [2, 1, 7]]
    overlap.write_text(json.dumps({"codes": ["en", "de", "sw"], "overlap": matrix}))
    bele = write_belebele(tmp_path / "belebele", ["en", "sw"], n=6)
    sib = write_sib(tmp_path / "sib", ["en"], n=6)
    out = tmp_path / "out"
    args = [
        "eval",
        "--worker-url",
        tiny_worker,
        "--data-dir",
        str(data_dir),
        "--pairs",
        "en-sw",
        "--tasks",
        "bli,mt,mrc,cls",
        "--k-shot",
        "0,3",
        "--rankings",
        str(rk),
        "--profiles",
        str(overlap),
        "--belebele",
        str(bele),
        "--sib",
        str(sib),
        "--candidates",
        "de,fr",
        "--limit",
        "2",
        "--mt-max-tokens",
        "8",
        "--out",
        str(out),
        "--quiet",
        "--no-typology",
    ]

    before = _completions_served(tiny_worker)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    served = _completions_served(tiny_worker) - before
    data = json.loads((out / "results.json").read_text())
    assert served == data["requests"]["sent"] > 0
    cache_lines = (out / "generations.jsonl").read_text().splitlines()
    assert len(cache_lines) == served  # every distinct request generated exactly once

    units = {(r["task"], r["k"]) for r in data["conditions"]}
    assert units == {(t, k) for t in ("bli", "mt", "mrc", "cls") for k in (0, 3)}
    names = {r["condition"] for r in data["conditions"]}
    assert {"none", "hsic:lape/full", "cand:de", "cand:fr", "oracle"} <= names
    assert all(r["n"] == 2 for r in data["conditions"])
    assert all(r["low"] <= r["high"] for r in data["conditions"])
    assert {r["metric"] for r in data["conditions"]} == {"p@1", "chrf", "accuracy"}
    assert (out / "results.md").read_text().count("## ") >= 8
    pngs = {p.name for p in (out / "img").glob("*.png")}
    assert {
        "bli_k0_conditions.png",
        "mt_k3_conditions.png",
        "overlap_heatmap.png",
        "hsic_layers_en-sw_lape_full.png",
    } <= pngs

    # second run: zero requests reach the worker, same numbers
    before = _completions_served(tiny_worker)
    res2 = CliRunner().invoke(app, args)
    assert res2.exit_code == 0, res2.output
    assert _completions_served(tiny_worker) == before
    data2 = json.loads((out / "results.json").read_text())
    assert data2["requests"]["sent"] == 0 and data2["requests"]["cached"] == served
    assert data2["conditions"] == data["conditions"]


def test_eval_cli_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["eval", "--pairs", "en", "--worker-url", "http://127.0.0.1:9"])
    assert res.exit_code == 2 and "SRC-TGT" in res.output
    res = CliRunner().invoke(app, ["eval", "--pairs", "en-sw", "--tasks", "bli,nope", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "nope" in res.output
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--pairs",
            "en-sw",
            "--data-dir",
            str(tmp_path),
            "--worker-url",
            "http://127.0.0.1:9",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "bridgex data prepare" in res.output
