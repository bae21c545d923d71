"""Artifacts: round trip, manifest fields, atomic writes (no partial file on failure), typed helpers."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import bridgex
import pytest
import torch
from bridgex import artifacts
from bridgex.artifacts import (
    ArtifactError,
    list_artifacts,
    load_probe_acts,
    load_profile,
    load_profiles,
    make_manifest,
    read_artifact,
    save_probe_acts,
    save_profile,
    sha256_bytes,
    sha256_file,
    sha256_json,
    sha256_text,
    sha256_texts,
    write_artifact,
)
from bridgex.profiling import LanguageProfile


def _manifest(**extra: object) -> dict:
    return make_manifest(
        "test",
        model_id="m",
        revision="r1",
        weight_hash="w" * 64,
        data_hash="d" * 64,
        params={"a": 1},
        extra=extra or None,
    )


def test_manifest_fields() -> None:
    m = _manifest(note="x")
    assert m["kind"] == "test" and m["model_id"] == "m" and m["revision"] == "r1"
    assert m["method_version"] == bridgex.METHOD_VERSION and m["library_version"] == bridgex.__version__
    assert m["params"] == {"a": 1} and m["note"] == "x"
    created = datetime.fromisoformat(m["created_at"].replace("Z", "+00:00"))
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0


def test_hashes(tmp_path: Path) -> None:
    assert (
        sha256_text("abc")
        == sha256_bytes(b"abc")
        == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    )
    assert sha256_json({"b": 1, "a": [1, 2]}) == sha256_json({"a": [1, 2], "b": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})
    assert sha256_texts(["ab"]) != sha256_texts(["a", "b"])
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    assert sha256_file(f) == sha256_text("abc")


def test_round_trip(tmp_path: Path) -> None:
    tensors = {"x": torch.randn(3, 4), "n": torch.arange(5), "b": torch.ones(2, dtype=torch.bool)}
    path = write_artifact(tmp_path / "sub", "thing", tensors, _manifest())
    assert path == tmp_path / "sub" / "thing.safetensors" and path.exists()
    got, manifest = read_artifact(tmp_path / "sub", "thing", verify=True)
    for k, v in tensors.items():
        assert torch.equal(got[k], v)
    assert manifest["sha256"] == sha256_file(path)
    assert manifest["tensors"]["x"] == {"dtype": "float32", "shape": [3, 4]}
    assert manifest["name"] == "thing" and manifest["file"] == "thing.safetensors"
    assert list_artifacts(tmp_path / "sub") == ["thing"]
    assert list_artifacts(tmp_path / "sub", kind="other") == []
    # no temp files left behind
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["thing.json", "thing.safetensors"]


def test_verify_detects_corruption(tmp_path: Path) -> None:
    path = write_artifact(tmp_path, "a", {"x": torch.zeros(4)}, _manifest())
    write_artifact(tmp_path, "b", {"x": torch.ones(4)}, _manifest())
    path.write_bytes((tmp_path / "b.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="sha256"):
        read_artifact(tmp_path, "a", verify=True)


def test_failed_write_leaves_no_partial_file_and_keeps_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_artifact(tmp_path, "a", {"x": torch.zeros(4)}, _manifest(version=1))

    def broken_save(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_artifact(tmp_path, "a", {"x": torch.ones(4)}, _manifest(version=2))
    with pytest.raises(OSError, match="disk full"):
        write_artifact(tmp_path, "new", {"x": torch.ones(4)}, _manifest())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.safetensors"]
    got, manifest = read_artifact(tmp_path, "a", verify=True)
    assert manifest["version"] == 1 and torch.equal(got["x"], torch.zeros(4))


def test_bad_names_and_missing(tmp_path: Path) -> None:
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ArtifactError, match="invalid artifact name"):
            write_artifact(tmp_path, bad, {"x": torch.zeros(1)}, _manifest())
    with pytest.raises(ArtifactError, match="not found"):
        read_artifact(tmp_path, "nope")
    with pytest.raises(ArtifactError, match="at least one tensor"):
        write_artifact(tmp_path, "empty", {}, _manifest())
    write_artifact(tmp_path, "gone", {"x": torch.zeros(1)}, _manifest())
    (tmp_path / "gone.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        read_artifact(tmp_path, "gone")


def test_profile_and_probe_helpers(tmp_path: Path) -> None:
    count = torch.randint(0, 50, (3, 8), dtype=torch.int64)
    prof = LanguageProfile("fr", count, torch.randn(3, 8, dtype=torch.float64), 50, meta={"chunks": 2})
    save_profile(tmp_path, prof, _manifest())
    save_profile(tmp_path, LanguageProfile("de", count, torch.zeros(3, 8, dtype=torch.float64), 60), _manifest())
    back = load_profile(tmp_path, "fr")
    assert back.language == "fr" and back.n_tokens == 50
    assert torch.equal(back.count, count) and torch.equal(back.sum, prof.sum)
    assert torch.allclose(back.prob, count.double() / 50)
    assert back.meta["kind"] == "language_profile" and back.meta["model_id"] == "m"
    assert set(load_profiles(tmp_path)) == {"fr", "de"}

    acts = torch.randn(2, 8, 5)
    save_probe_acts(tmp_path, "probe-en-fr", acts, [7, 3], _manifest())
    a, layers, manifest = load_probe_acts(tmp_path, "probe-en-fr")
    assert torch.equal(a, acts) and layers == [7, 3] and manifest["kind"] == "probe_activations"
    assert set(load_profiles(tmp_path)) == {"fr", "de"}  # probes are not profiles
    with pytest.raises(ArtifactError, match="not a language_profile"):
        load_profile(tmp_path, "probe-en-fr")
    with pytest.raises(ArtifactError, match=r"\[len\(layers\)"):
        save_probe_acts(tmp_path, "bad", acts, [1], _manifest())
    manifest_file = json.loads((tmp_path / "profile-fr.json").read_text())
    assert manifest_file["n_tokens"] == 50 and manifest_file["language"] == "fr"
