"""`bridgex profile | probe | rank` on the tiny random model, end to end through files; pipeline functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from bridgex.artifacts import load_probe_acts, load_profiles, read_manifest
from bridgex.cli_method import register
from bridgex.models import load_model
from bridgex.pipeline import probe_language_pair, profile_language, rank_pair
from bridgex.settings import CoreSettings
from typer.testing import CliRunner

TEXTS = {
    "en": ["The water is cold and the house is big.", "I read a book under the tree in the sun."],
    "fr": ["L'eau est froide et la maison est grande.", "Je lis un livre sous l'arbre au soleil."],
    "de": ["Das Wasser ist kalt und das Haus ist groß.", "Ich lese ein Buch unter dem Baum in der Sonne."],
    "it": ["L'acqua è fredda e la casa è grande.", "Leggo un libro sotto l'albero al sole."],
    "es": ["El agua está fría y la casa es grande.", "Leo un libro bajo el árbol al sol."],
}
PAIRS = [
    "water\teau",
    "house\tmaison",
    "book\tlivre",
    "tree\tarbre",
    "sun\tsoleil",
    "moon\tlune",
    "bread\tpain",
    "dog\tchien",
    "water\tflotte",
]


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> typer.Typer:
    monkeypatch.setenv("BRIDGEX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BRIDGEX_TOP_RATE", "0.3")  # a 4-layer x 128 model needs big sets to overlap at all
    a = typer.Typer()
    register(a)
    return a


def _ok(result) -> None:
    assert result.exit_code == 0, result.output + str(result.exception or "")


def test_cli_profile_probe_rank(app: typer.Typer, tiny_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    prof_dir, probe_dir = tmp_path / "profiles", tmp_path / "probes"
    for lang, lines in TEXTS.items():
        f = tmp_path / f"{lang}.txt"
        f.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _ok(
            runner.invoke(
                app,
                [
                    "profile",
                    "--backend",
                    "hf",
                    "--model",
                    str(tiny_model_dir),
                    "-l",
                    lang,
                    "-t",
                    str(f),
                    "-o",
                    str(prof_dir),
                    "--chunk-tokens",
                    "16",
                    "--device",
                    "cpu",
                ],
            )
        )
    profiles = load_profiles(prof_dir)
    assert set(profiles) == set(TEXTS)
    assert profiles["fr"].count.shape == (4, 128) and profiles["fr"].n_tokens > 10
    assert profiles["fr"].meta["model_id"] == str(tiny_model_dir.resolve())
    assert profiles["fr"].meta["params"]["chunk_tokens"] == 16

    tsv = tmp_path / "en-fr.tsv"
    tsv.write_text("\n".join(PAIRS) + "\n", encoding="utf-8")
    _ok(
        runner.invoke(
            app,
            [
                "probe",
                "--backend",
                "hf",
                "--pairs",
                str(tsv),
                "-s",
                "en",
                "-t",
                "fr",
                "-o",
                str(probe_dir),
                "--model",
                str(tiny_model_dir),
                "--device",
                "cpu",
                "--layers",
                "all",
            ],
        )
    )
    acts, layers, manifest = load_probe_acts(probe_dir, "probe-en-fr")
    assert layers == [0, 1, 2, 3] and acts.shape == (4, 128, 8)  # 8 unique source words
    assert manifest["source"] == "en" and manifest["params"]["reduce"] == "mean"

    out = tmp_path / "ranking.json"
    _ok(
        runner.invoke(
            app,
            [
                "rank",
                "--profiles",
                str(prof_dir),
                "--probe",
                str(probe_dir / "probe-en-fr.safetensors"),
                "-s",
                "en",
                "-t",
                "fr",
                "--candidates",
                "de,it,es,fr",
                "--k",
                "8",
                "-o",
                str(out),
            ],
        )
    )
    ranking = json.loads(out.read_text())
    assert [c["code"] for c in ranking["ranked"]] and {c["code"] for c in ranking["ranked"]} == {
        "de",
        "it",
        "es",
    }
    assert ranking["src"] == "en" and ranking["tgt"] == "fr" and ranking["layers"] == [0, 1, 2, 3]
    assert ranking["probe_hash"] == manifest["data_hash"] and ranking["model_id"] == manifest["model_id"]
    assert ranking["params"]["top_rate"] == 0.3 and ranking["params"]["k"] == 8
    scored = [c for c in ranking["ranked"] if c["score"] is not None]
    assert scored, "with top_rate 0.3 some candidate must be scored"
    assert ranking["best"] == ranking["ranked"][0]["code"]
    for c in scored:
        assert set(c["per_layer"]) <= {"0", "1", "2", "3"}
        assert all(0 < size <= 8 for layer, size in c["set_sizes"].items() if layer in c["per_layer"])

    # the same through stdout, restricted to the default depth window (layers 1, 2 of 4)
    res = runner.invoke(
        app,
        [
            "rank",
            "--profiles",
            str(prof_dir),
            "--probe",
            str(probe_dir / "probe-en-fr"),
            "-s",
            "en",
            "-t",
            "fr",
            "--candidates",
            "de,it,es",
            "--k",
            "8",
            "--window",
            "0.3125,0.6875",
        ],
    )
    _ok(res)
    windowed = json.loads(res.stdout[res.stdout.index("{") :])
    assert windowed["layers"] == [1, 2]


def test_cli_errors_are_clear(app: typer.Typer, tiny_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    tsv = tmp_path / "p.tsv"
    tsv.write_text("water\teau\n", encoding="utf-8")
    res = runner.invoke(
        app, ["probe", "-b", "hf", "--pairs", str(tsv), "-o", str(tmp_path), "--model", str(tiny_model_dir)]
    )
    assert res.exit_code == 2 and "--source and --target" in res.output
    res = runner.invoke(
        app, ["profile", "-b", "hf", "-l", "fr", "-t", str(tmp_path / "missing.txt"), "-o", str(tmp_path)]
    )
    assert res.exit_code == 2 and "not found" in res.output
    # The capture engine is a required choice: forgetting it, or a typo, says what to pass.
    res = runner.invoke(app, ["profile", "-l", "fr", "-t", str(tsv), "-o", str(tmp_path)])
    assert res.exit_code == 2 and "--backend" in res.output
    res = runner.invoke(app, ["probe", "-b", "hooks", "--pairs", str(tsv), "-o", str(tmp_path)])
    flat = " ".join(res.output.replace("│", " ").split())
    assert res.exit_code == 2 and "'hooks' is not one of" in flat and "'hf'" in flat and "'vllm'" in flat, flat
    res = runner.invoke(
        app, ["rank", "--profiles", str(tmp_path), "--probe", str(tmp_path / "nope"), "-s", "en", "-t", "fr"]
    )
    assert res.exit_code == 2 and "not found" in res.output


def test_pipeline_functions(tiny_model_dir: Path, tmp_path: Path) -> None:
    lm = load_model(tiny_model_dir, device="cpu")

    s = CoreSettings(_env_file=None, batch_size=2, chunk_tokens=12, profile_max_tokens=30)
    paths = {lang: profile_language(lm, lines, lang, s, tmp_path) for lang, lines in TEXTS.items()}
    m = read_manifest(tmp_path, "profile-en")
    assert paths["en"].name == "profile-en.safetensors"
    assert m["params"] == {"batch_size": 2, "chunk_tokens": 12, "max_tokens": 30, "include_bos": False}
    assert m["n_tokens"] == 30 and len(m["data_hash"]) == 64
    prompts = [f'English:"{w}"→Français:' for w in ("water", "house", "book", "tree", "sun")]
    probe_language_pair(lm, prompts, [1, 2], "last", tmp_path, "p", probe_hash="h123")
    acts, layers, pm = load_probe_acts(tmp_path, "p")
    assert layers == [1, 2] and acts.shape == (2, 128, 5) and pm["data_hash"] == "h123"

    profiles = load_profiles(tmp_path)
    mixed = {c: (p if c != "es" else p.prob) for c, p in profiles.items()}  # tensors work as well as profiles
    r1 = rank_pair(mixed, acts, layers, "en", "fr", ["de", "it", "es", "en"], top_rate=0.3, k=8)
    r2 = rank_pair(profiles, acts, layers, "en", "fr", ["de", "it", "es"], top_rate=0.3, k=8)
    assert [c.code for c in r1.ranked] == [c.code for c in r2.ranked]
    assert [c.score for c in r1.ranked] == [c.score for c in r2.ranked]
    assert r1.params["selection"] == "top_rate" and r1.src == "en" and r1.layers == [1, 2]
    with pytest.raises(ValueError, match="missing language profiles"):
        rank_pair(profiles, acts, layers, "en", "sw", ["de"], top_rate=0.3)
    with pytest.raises(ValueError, match="no candidate"):
        rank_pair(profiles, acts, layers, "en", "fr", ["en", "fr"])
    assert torch.equal(load_profiles(tmp_path)["de"].count, profiles["de"].count)
