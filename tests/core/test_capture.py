"""bridgex.capture: the pipeline reaches activations only through a registered backend."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from bridgex import pipeline
from bridgex.artifacts import load_probe_acts, load_profile
from bridgex.capture import HFHookBackend, get_backend, register_backend
from bridgex.models import load_model
from bridgex.profiling import profile_texts


class _Recording(HFHookBackend):
    name = "recording"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def profile(self, lm, texts, **kw):  # type: ignore[no-untyped-def, override]
        self.calls.append("profile")
        return super().profile(lm, texts, **kw)

    def probe(self, lm, prompts, **kw):  # type: ignore[no-untyped-def, override]
        self.calls.append("probe")
        return super().probe(lm, prompts, **kw)


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"available: .*hf"):
        get_backend("vllm-nope")


def test_pipeline_uses_the_configured_backend(tiny_model_dir: Path, tmp_path: Path) -> None:
    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    rec = _Recording()
    register_backend(rec)
    texts = ["hello world, a small text", "another line of text here"]
    settings = SimpleNamespace(capture_backend="recording", batch_size=2, chunk_tokens=16, profile_max_tokens=None)
    path = pipeline.profile_language(lm, texts, "en", settings, tmp_path)
    pipeline.probe_language_pair(lm, ['a:"b"→c:'], [0, 1], "mean", tmp_path, "acts", backend="recording")
    assert rec.calls == ["profile", "probe"]
    saved = load_profile(path.parent, "en")
    direct = profile_texts(lm, texts, language="en", batch_size=2, chunk_tokens=16)
    assert saved.n_tokens == direct.n_tokens and (saved.count == direct.count).all()
    acts, layers, _ = load_probe_acts(tmp_path, "acts")
    assert layers == [0, 1] and acts.shape[0] == 2


def test_hf_backend_returns_tensors_without_graph_under_grad_mode(tiny_model_dir: Path) -> None:
    """The CaptureBackend contract: no autograd graph and no inference tensors, even with grad mode on."""
    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    backend = get_backend("hf")
    with torch.enable_grad():
        prof = backend.profile(
            lm, ["hello world, a small text"] * 4, language="en", batch_size=2, chunk_tokens=16, max_tokens=None
        )
        acts = backend.probe(lm, ['a:"b"→c:', "x"], layers=[1, 0], reduce="mean", batch_size=2)
    for t in (prof.count, prof.sum, prof.prob, acts):
        assert not t.requires_grad and t.grad_fn is None and not torch.is_inference(t)
