"""Model loading on the tiny random Llama; convert-once locking; weight hashes; devices."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch
from bridgex.models import (
    convert_once,
    load_model,
    resolve_device,
    resolve_dtype,
    tiny_random_llama,
    weight_hash,
)


def test_tiny_model_is_fast_deterministic_and_loadable(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a = tiny_random_llama(tmp_path / "a")  # the first call also pays for lazy imports
    t0 = time.perf_counter()
    b = tiny_random_llama(tmp_path / "b")
    elapsed = time.perf_counter() - t0
    c = tiny_random_llama(tmp_path / "c", seed=1)
    assert elapsed < 2.0, f"tiny model took {elapsed:.2f}s"
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()

    tok = AutoTokenizer.from_pretrained(a, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(a, local_files_only=True)
    assert model.config.num_hidden_layers == 4 and model.config.intermediate_size == 128
    text = "water 水 ماء מים 日本語 ça 😀"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id == tok.convert_tokens_to_ids("<s>")
    assert tok.decode(ids, skip_special_tokens=True) == text  # byte-level: nothing is unknown
    assert tok.pad_token == "<pad>" and tok.eos_token == "</s>"
    out = model.generate(
        **tok(["hi", "a longer prompt"], return_tensors="pt", padding=True), max_new_tokens=4, do_sample=False
    )
    assert out.shape == (2, out.shape[1]) and out.shape[1] >= 4


def test_load_model_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    lm = load_model(tiny_model_dir, device="cpu", cache_dir=tmp_path)
    assert lm.model_id == str(tiny_model_dir.resolve()) and lm.path == tiny_model_dir.resolve()
    assert lm.num_layers == 4 and lm.intermediate_size == 128
    assert lm.device == torch.device("cpu") and next(lm.model.parameters()).dtype == torch.float32
    assert len(lm.weight_hash) == 64 and lm.revision == lm.weight_hash[:12]
    assert not lm.model.training
    lm2 = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16", revision="v1", cache_dir=tmp_path)
    assert lm2.revision == "v1" and lm2.weight_hash == lm.weight_hash
    assert next(lm2.model.parameters()).dtype == torch.bfloat16


def test_missing_folder_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        load_model(tmp_path / "nope", device="cpu")
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        load_model("./also-not-there", device="cpu")


def test_weight_hash_cache(tmp_path: Path) -> None:
    folder = tiny_random_llama(tmp_path / "m")
    cache = tmp_path / "cache"
    h1 = weight_hash(folder, cache_dir=cache)
    files = list((cache / "weight-hashes").glob("*.json"))
    assert len(files) == 1
    # the cache is used when the files are unchanged: a doctored value comes back
    record = json.loads(files[0].read_text())
    record["sha256"] = "cached-value"
    files[0].write_text(json.dumps(record))
    assert weight_hash(folder, cache_dir=cache) == "cached-value"
    # and ignored once a weight file changes (size/mtime)
    st = folder / "model.safetensors"
    st.write_bytes(st.read_bytes() + b" ")
    h2 = weight_hash(folder, cache_dir=cache)
    assert h2 not in ("cached-value", h1) and len(h2) == 64
    with pytest.raises(FileNotFoundError, match="no weight files"):
        weight_hash(tmp_path / "cache", cache_dir=cache / "x")


def test_resolve_device_and_dtype() -> None:
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", torch.device("cpu"))


def test_convert_once_runs_once_under_lock(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m"
    calls: list[int] = []

    def convert(out: Path) -> None:
        calls.append(1)
        time.sleep(0.3)
        (out / "weights.bin").write_bytes(b"x")
        (out / "config.json").write_text("{}")

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(convert_once(target, convert))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [target] * 3
    assert (target / "config.json").exists()
    assert [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert convert_once(target, convert) == target and len(calls) == 1


def test_convert_once_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m"

    def convert(out: Path) -> None:
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("conversion crashed")

    with pytest.raises(RuntimeError, match="conversion crashed"):
        convert_once(target, convert)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == []

    with pytest.raises(RuntimeError, match=r"no config\.json"):
        convert_once(target, lambda out: None)
    assert not target.exists()
