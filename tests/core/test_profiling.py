"""Hooks and statistics on a tiny random Llama, checked against a by-hand act_fn(gate_proj(h))."""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from bridgex import profiling
from bridgex.cancel import Cancelled
from bridgex.models import LoadedModel, load_model
from bridgex.profiling import (
    ActivationHooks,
    UnsupportedArchitecture,
    chunk_texts,
    find_layers,
    find_mlp_act_modules,
    probe_activations,
    profile_texts,
)
from torch import nn

TEXTS = [
    "The quick brown fox jumps over the lazy dog and keeps running far away.",
    "Wasser Haus Buch",
    "敏捷的棕色狐狸跳过了懒狗。",
    "השועל החום המהיר",
    "ok",
    "Rubah coklat yang cepat melompati anjing yang malas, lalu pulang ke rumah.",
]


@pytest.fixture(scope="module")
def lm64(tiny_model_dir: Path) -> LoadedModel:
    """float64 so that padded and unpadded runs agree bit-for-bit in sign (counts compare exactly)."""
    return load_model(tiny_model_dir, device="cpu", dtype=torch.float64)


def _hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in find_mlp_act_modules(model))


def _by_hand_acts(lm: LoadedModel, ids: list[int]) -> list[torch.Tensor]:
    """One unpadded sequence through the full model; act_fn(gate_proj(h)) from the MLP *input* h."""
    captured: dict[int, torch.Tensor] = {}
    handles = []
    for i, layer in enumerate(lm.model.model.layers):

        def pre(_m: nn.Module, args: tuple, i: int = i) -> None:
            captured[i] = args[0].detach().clone()

        handles.append(layer.mlp.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            lm.model(input_ids=torch.tensor([ids]))
    finally:
        for h in handles:
            h.remove()
    out = []
    for i, layer in enumerate(lm.model.model.layers):
        h = captured[i][0]  # [T, hidden]
        out.append(F.silu(h @ layer.mlp.gate_proj.weight.T))  # Llama's act_fn is SiLU
    return out


def _by_hand_profile(lm: LoadedModel, chunks: list[list[int]], include_bos: bool):
    L, inter = lm.num_layers, lm.intermediate_size
    count = torch.zeros(L, inter, dtype=torch.int64)
    total = torch.zeros(L, inter, dtype=torch.float64)
    n = 0
    for ids in chunks:
        acts = _by_hand_acts(lm, ids)
        start = 0 if include_bos else 1
        for layer, a in enumerate(acts):
            a = a[start:]
            count[layer] += (a > 0).sum(0)
            total[layer] += a.sum(0)
        n += len(ids) - start
    return count, total, n


def test_find_modules_and_layers(lm64: LoadedModel) -> None:
    mods = find_mlp_act_modules(lm64.model)
    assert len(mods) == 4 and len({id(m) for m in mods}) == 4
    assert mods[2] is lm64.model.model.layers[2].mlp.act_fn
    assert find_layers(lm64.model)[0] == "model.layers"


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("include_bos", [False, True])
def test_profile_equals_by_hand(lm64: LoadedModel, padding_side: str, include_bos: bool) -> None:
    prof = profile_texts(
        lm64,
        TEXTS,
        language="mix",
        batch_size=4,
        chunk_tokens=9,
        padding_side=padding_side,
        include_bos=include_bos,
    )
    chunks, n_text = chunk_texts(lm64.tokenizer, TEXTS, chunk_tokens=9)
    assert all(c[0] == lm64.tokenizer.bos_token_id and len(c) <= 9 for c in chunks)
    assert len({len(c) for c in chunks}) > 1, "test needs ragged batches so padding happens"
    count, total, n = _by_hand_profile(lm64, chunks, include_bos)
    assert prof.n_tokens == n == n_text + (len(chunks) if include_bos else 0)
    assert prof.count.dtype == torch.int64 and prof.sum.dtype == torch.float64
    assert prof.count.shape == (4, 128)
    assert torch.equal(prof.count, count)
    torch.testing.assert_close(prof.sum, total, rtol=1e-10, atol=1e-12)
    assert 0 < float(prof.prob.mean()) < 1


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_heavy_padding_equals_by_hand(lm64: LoadedModel, padding_side: str) -> None:
    """Batches that are mostly padding take the select-kept-rows path; it must agree too."""
    texts = [TEXTS[0], "a", "b", "c", "d"]
    prof = profile_texts(lm64, texts, language="x", batch_size=8, chunk_tokens=40, padding_side=padding_side)
    chunks, _ = chunk_texts(lm64.tokenizer, texts, chunk_tokens=40)
    assert max(map(len, chunks)) > 2 * sum(map(len, chunks)) / len(chunks)  # padding dominates
    count, total, n = _by_hand_profile(lm64, chunks, include_bos=False)
    assert prof.n_tokens == n
    assert torch.equal(prof.count, count)
    torch.testing.assert_close(prof.sum, total, rtol=1e-10, atol=1e-12)


def test_padding_sides_and_batch_sizes_agree_float32(tiny_model_dir: Path) -> None:
    lm = load_model(tiny_model_dir, device="cpu", dtype="float32")
    single = profile_texts(lm, TEXTS, language="x", batch_size=1, chunk_tokens=9)
    for side in ("right", "left"):
        batched = profile_texts(lm, TEXTS, language="x", batch_size=5, chunk_tokens=9, padding_side=side)
        assert batched.n_tokens == single.n_tokens
        # float32 kernels differ by ~1e-7 between batch shapes: a sign may flip only for |act| ~ 0
        assert int((batched.count - single.count).abs().sum()) <= 2
        torch.testing.assert_close(batched.sum, single.sum, rtol=1e-4, atol=1e-4)


def test_bos_excluded_by_default_and_max_tokens(lm64: LoadedModel) -> None:
    _, n_text = chunk_texts(lm64.tokenizer, TEXTS, chunk_tokens=9)
    prof = profile_texts(lm64, TEXTS, language="x", chunk_tokens=9)
    assert prof.n_tokens == n_text
    capped = profile_texts(lm64, TEXTS, language="x", chunk_tokens=9, max_tokens=10)
    assert capped.n_tokens == 10
    assert int(capped.count.max()) <= 10


def test_progress_and_cancel(lm64: LoadedModel) -> None:
    seen: list[tuple[int, int]] = []
    profile_texts(lm64, TEXTS, language="x", batch_size=2, chunk_tokens=9, progress=lambda c, t: seen.append((c, t)))
    assert len(seen) >= 3 and seen[-1][0] == seen[-1][1]
    assert [c for c, _ in seen] == sorted(c for c, _ in seen)

    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(Cancelled):
        profile_texts(lm64, TEXTS, language="x", batch_size=2, chunk_tokens=9, should_cancel=cancel)
    assert _hooks_left(lm64.model) == 0
    with pytest.raises(Cancelled):
        probe_activations(lm64, TEXTS, batch_size=2, should_cancel=lambda: True)
    assert _hooks_left(lm64.model) == 0


def test_hooks_removed_after_exit_and_exception(lm64: LoadedModel) -> None:
    seen: list[int] = []
    with ActivationHooks(lm64.model, reducer=lambda layer, act: seen.append(layer)) as hooks:
        assert _hooks_left(lm64.model) == 4
        lm64.model(input_ids=torch.tensor([[1, 5, 6]]))
        hooks.check_fired()
    assert seen == [0, 1, 2, 3]
    assert _hooks_left(lm64.model) == 0

    with pytest.raises(RuntimeError, match="boom"), ActivationHooks(lm64.model, layers=[1, 3]):
        assert _hooks_left(lm64.model) == 2
        raise RuntimeError("boom")
    assert _hooks_left(lm64.model) == 0

    def bad_reducer(layer: int, act: torch.Tensor) -> None:
        raise ValueError("reducer failed")

    with pytest.raises(ValueError, match="reducer failed"), ActivationHooks(lm64.model, reducer=bad_reducer):
        lm64.model(input_ids=torch.tensor([[1, 5]]))
    assert _hooks_left(lm64.model) == 0


def test_layers_out_of_range(lm64: LoadedModel) -> None:
    with pytest.raises(ValueError, match="out of range"):
        ActivationHooks(lm64.model, layers=[0, 4])


def test_missing_act_fn_is_a_clear_error(tiny_model_dir: Path) -> None:
    lm = load_model(tiny_model_dir, device="cpu")
    del lm.model.model.layers[2].mlp.act_fn
    with pytest.raises(UnsupportedArchitecture, match=r"model\.layers\.2\.mlp\.act_fn"):
        ActivationHooks(lm.model)
    with pytest.raises(UnsupportedArchitecture, match=r"layers\.2\.mlp\.act_fn"):
        profile_texts(lm, TEXTS, language="x")
    assert _hooks_left_safe(lm.model) == 0

    class NoLayers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(2, 2)

    with pytest.raises(UnsupportedArchitecture, match="no decoder layer list"):
        find_mlp_act_modules(NoLayers())


def _hooks_left_safe(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_fused_mlp_that_skips_act_fn_is_detected(tiny_model_dir: Path) -> None:
    lm = load_model(tiny_model_dir, device="cpu")
    mlp = lm.model.model.layers[1].mlp
    mlp.forward = lambda x: mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))  # bypasses act_fn
    with pytest.raises(UnsupportedArchitecture, match="fused"):
        profile_texts(lm, TEXTS, language="x")
    assert _hooks_left_safe(lm.model) == 0


def test_nested_language_model_layers() -> None:
    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act_fn = nn.SiLU()

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = MLP()

    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.language_model = nn.Module()
            self.language_model.layers = nn.ModuleList([Layer(), Layer()])

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = Inner()

    path, layers = find_layers(Outer())
    assert path == "model.language_model.layers" and len(layers) == 2
    assert len(find_mlp_act_modules(Outer())) == 2


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_probe_activations_mean_and_last_by_hand(lm64: LoadedModel, padding_side: str) -> None:
    prompts = TEXTS[:5]
    layers = [3, 1]
    mean = probe_activations(lm64, prompts, layers=layers, reduce="mean", batch_size=3, padding_side=padding_side)
    last = probe_activations(lm64, prompts, layers=layers, reduce="last", batch_size=3, padding_side=padding_side)
    with_bos = probe_activations(lm64, prompts, layers=layers, reduce="mean", batch_size=2, include_bos=True)
    assert mean.shape == (2, 128, 5) and mean.dtype == torch.float32
    bos = lm64.tokenizer.bos_token_id
    for n, p in enumerate(prompts):
        ids = [bos, *lm64.tokenizer(p, add_special_tokens=False)["input_ids"]]
        acts = _by_hand_acts(lm64, ids)
        for r, layer in enumerate(layers):
            a = acts[layer]
            torch.testing.assert_close(mean[r, :, n], a[1:].mean(0).float(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(last[r, :, n], a[-1].float(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(with_bos[r, :, n], a.mean(0).float(), rtol=1e-5, atol=1e-6)
    assert _hooks_left(lm64.model) == 0


def test_probe_bad_input(lm64: LoadedModel) -> None:
    with pytest.raises(ValueError, match="reduce"):
        probe_activations(lm64, ["a"], reduce="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no prompts"):
        probe_activations(lm64, [])
    with pytest.raises(ValueError, match="empty"):
        probe_activations(lm64, ["ok", ""])
    with pytest.raises(ValueError, match="empty input"):
        profile_texts(lm64, ["", "   "], language="x")


def _check_stats(device: str, dtype: torch.dtype) -> None:
    from bridgex.profiling import _stats

    g = torch.Generator().manual_seed(0)
    a = torch.randn(1000, 300, generator=g).to(dtype)
    a[7] = float("nan")  # a padding row that attended to nothing
    a[:, 3] = 0.0  # exact zeros do not count as firing
    c, s = _stats(a.to(device))
    ok = a[~a.isnan().any(1)].double()
    assert c.dtype == torch.int64 and torch.equal(c.cpu(), (ok > 0).sum(0))
    torch.testing.assert_close(s.cpu().double(), ok.sum(0), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stats_ignore_nan_rows_cpu(dtype: torch.dtype) -> None:
    _check_stats("cpu", dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_stats_ignore_nan_rows_cuda(dtype: torch.dtype) -> None:
    _check_stats("cuda", dtype)


# --------------------------------------------------------------------------------------------- no autograd graph


@pytest.fixture
def grad_on() -> Iterator[None]:
    """Grad mode ON globally, as in a process where something else enabled it (the default, made explicit)."""
    prev = torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    try:
        yield
    finally:
        torch.set_grad_enabled(prev)


def _assert_plain(t: torch.Tensor, what: str) -> None:
    """No graph, no grad, and an ordinary tensor (in-place ops outside inference mode must work downstream)."""
    assert not t.requires_grad, f"{what} requires grad"
    assert t.grad_fn is None, f"{what} has grad_fn {t.grad_fn}"
    assert not torch.is_inference(t), f"{what} is an inference tensor: in-place ops outside the mode would raise"


def _held_by_autograd(fn: Callable[[], Any]) -> tuple[Any, int]:
    """(fn(), bytes of tensors autograd saved during fn that are still alive after it returned, gc run).

    Every tensor saved for backward is wrapped in a weakref-able box; the box lives exactly as long as the
    graph that saved it. Bytes are counted once per storage. Deterministic, unlike RSS.
    """

    class Box:
        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

    boxes: list[weakref.ref[Box]] = []

    def pack(t: torch.Tensor) -> Box:
        box = Box(t)
        boxes.append(weakref.ref(box))
        return box

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box.t):
        result = fn()
    gc.collect()
    storages: dict[int, int] = {}
    for ref in boxes:
        box = ref()
        if box is not None:
            st = box.t.untyped_storage()
            storages[st.data_ptr()] = st.nbytes()
    return result, sum(storages.values())


def _many_texts(n: int) -> list[str]:
    return [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(n)]


@pytest.fixture
def lm32(tiny_model_dir: Path) -> LoadedModel:
    lm = load_model(tiny_model_dir, device="cpu", dtype="float32")
    assert all(p.requires_grad for p in lm.model.parameters()), "test needs parameters that require grad"
    return lm


def test_profile_and_probe_return_no_graph_with_grad_mode_on(lm32: LoadedModel, grad_on: None) -> None:
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    prof = profile_texts(lm32, TEXTS, language="x", batch_size=2, chunk_tokens=9)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled(), "the caller's mode is restored"
    for what, t in (("count", prof.count), ("sum", prof.sum), ("prob", prof.prob), ("mean", prof.mean)):
        _assert_plain(t, what)
    prof.sum.add_(0.0)  # ordinary tensors: in-place works outside inference mode
    prof.count += 0
    for reduce in ("mean", "last"):
        acts = probe_activations(lm32, TEXTS, layers=[2, 0], reduce=reduce, batch_size=4)  # type: ignore[arg-type]
        _assert_plain(acts, f"probe activations ({reduce})")
        acts.mul_(1.0)
    assert _hooks_left(lm32.model) == 0


def test_profiling_holds_no_memory_that_grows_with_tokens(lm32: LoadedModel, grad_on: None) -> None:
    """The bug: the accumulators became autograd nodes and the returned profile kept every batch's graph
    (saved activations of every layer), so memory grew with the tokens profiled. A second, 4x larger run
    must hold no more than the first: nothing at all."""
    kw: dict[str, Any] = {"language": "x", "batch_size": 4, "chunk_tokens": 32}
    small, held_small = _held_by_autograd(lambda: profile_texts(lm32, _many_texts(40), **kw))
    large, held_large = _held_by_autograd(lambda: profile_texts(lm32, _many_texts(160), **kw))
    assert large.n_tokens > 3 * small.n_tokens > 1000
    assert held_large <= held_small == 0
    assert small.sum.grad_fn is None and large.sum.grad_fn is None
    probe, held_probe = _held_by_autograd(lambda: probe_activations(lm32, _many_texts(40), batch_size=8))
    assert held_probe == 0 and probe.grad_fn is None
    _, held_bare = _held_by_autograd(lambda: profiling.bare_forward(lm32, [[1, 5, 6, 7]] * 4, batch_size=2))
    assert held_bare == 0


def test_graph_detector_sees_the_bug_without_inference_mode(
    lm32: LoadedModel, grad_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control for the test above: with inference mode patched away (the reported bug), the measure does
    see a graph on the returned profile that grows with the tokens."""
    monkeypatch.setattr(profiling, "_no_graph", contextlib.nullcontext)
    kw: dict[str, Any] = {"language": "x", "batch_size": 4, "chunk_tokens": 32}
    small, held_small = _held_by_autograd(lambda: profile_texts(lm32, _many_texts(40), **kw))
    _, held_large = _held_by_autograd(lambda: profile_texts(lm32, _many_texts(160), **kw))
    assert small.sum.grad_fn is not None
    assert held_large > 2 * held_small > 0
