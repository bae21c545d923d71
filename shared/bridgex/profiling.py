"""Neuron activations of gated MLPs (method.md steps 0, 1, 3): hooks, language profiles, probe activations.

The neuron (l, j) is channel j of `act_fn(gate_proj(x))`; a forward hook on `layers[l].mlp.act_fn` sees
exactly that tensor. Hooks reduce inside the hook (counts, sums, per-prompt means), so memory stays
O(L x I), never [B, T, I] for all layers. Padding never counts: every batch carries a mask of the tokens
that count.

BOS (DECISION, documented): every chunk and every prompt starts with BOS, as the model was trained, but BOS is
not language text and its activations are identical for every input (position 0 sees only itself). It is
therefore excluded from profile counts and from the probe mean by default (`include_bos=True` counts it).

Batches are built by length (sorted) to keep padding small; statistics do not depend on order. Position ids
are computed from the attention mask, so left- and right-padded batches give the unpadded results.

No autograd graph (DECISION): every forward runs under `torch.inference_mode()` inside the entry points
(`profile_texts`, `probe_activations`, `bare_forward`), whatever the caller's grad mode. Without it the
accumulators became autograd nodes whose graph held every batch's saved activations (7.3 GB of RSS for 27k
tokens on a toy 8-layer model). The returned tensors (accumulators, probe output) are allocated *before*
entering the mode and only written in place inside it, so they are ordinary tensors, not inference tensors:
callers may modify them in place, or use them in autograd, outside the mode (an inference tensor would
raise there). They never require grad and have no grad_fn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bridgex.cancel import Progress, ShouldCancel, check_cancel
from bridgex.models import LoadedModel

Reducer = Callable[[int, Tensor], None]

_LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "language_model.model.layers",
    "language_model.layers",
    "model.decoder.layers",
    "gpt_neox.layers",
    "transformer.h",
    "layers",
)


class UnsupportedArchitecture(RuntimeError):
    """The model has no per-layer `mlp.act_fn` module to hook (not a gated-MLP decoder we know)."""


# --------------------------------------------------------------------------------------------- discovery


def _get_path(root: nn.Module, dotted: str) -> Any:
    obj: Any = root
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_layers(model: nn.Module) -> tuple[str, Sequence[nn.Module]]:
    """The decoder layer list and its dotted path (handles `model.language_model.layers` nesting)."""
    for dotted in _LAYER_PATHS:
        layers = _get_path(model, dotted)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return dotted, layers
    raise UnsupportedArchitecture(
        f"{type(model).__name__}: no decoder layer list found (looked for {', '.join(_LAYER_PATHS)})"
    )


def _act_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    dotted, layers = find_layers(model)
    found: list[tuple[str, nn.Module]] = []
    for i, layer in enumerate(layers):
        path = f"{dotted}.{i}.mlp.act_fn"
        mlp = getattr(layer, "mlp", None)
        act = getattr(mlp, "act_fn", None) if mlp is not None else None
        if not isinstance(act, nn.Module):
            have = sorted(n for n, _ in (mlp.named_children() if isinstance(mlp, nn.Module) else []))
            raise UnsupportedArchitecture(
                f"{type(model).__name__}: layer {i} has no `{path}` module"
                + (
                    f" (its mlp has: {', '.join(have) or 'no submodules'})"
                    if mlp is not None
                    else f" (layer has no `mlp`; it has: {', '.join(n for n, _ in layer.named_children())})"
                )
                + "; BridgeX profiles gated MLPs (Llama, Qwen, Mistral, Gemma) whose activation is a module."
            )
        found.append((path, act))
    if len({id(m) for _, m in found}) != len(found):
        raise UnsupportedArchitecture(
            f"{type(model).__name__}: layers share one act_fn module, so a hook cannot tell layers apart"
        )
    return found


def find_mlp_act_modules(model: nn.Module) -> list[nn.Module]:
    """`layers[l].mlp.act_fn` for every layer, in layer order; raises UnsupportedArchitecture otherwise."""
    return [m for _, m in _act_modules(model)]


# --------------------------------------------------------------------------------------------- hooks


class ActivationHooks:
    """Context manager: forward hooks on `mlp.act_fn` of the chosen layers, always removed on exit.

    `reducer(layer, act)` receives the act_fn output [B, T, I] of each hooked layer; when None, the last
    output per layer is kept in `captured` (small models and tests only). `calls` counts hook firings per
    layer so callers can check every layer ran (a fused kernel that bypasses the module would otherwise go
    unnoticed).
    """

    def __init__(self, model: nn.Module, layers: Sequence[int] | None = None, reducer: Reducer | None = None):
        self.model = model
        named = _act_modules(model)
        n = len(named)
        self.layers = list(range(n)) if layers is None else [int(x) for x in layers]
        bad = [x for x in self.layers if not 0 <= x < n]
        if bad:
            raise ValueError(f"layers {bad} out of range: the model has {n} layers (0..{n - 1})")
        self._targets = [(layer, named[layer][0], named[layer][1]) for layer in self.layers]
        self.reducer = reducer
        self.captured: dict[int, Tensor] = {}
        self.calls: dict[int, int] = dict.fromkeys(self.layers, 0)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _make_hook(self, layer: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            self.calls[layer] += 1
            if self.reducer is not None:
                self.reducer(layer, output)
            else:
                self.captured[layer] = output.detach().clone()

        return hook

    def __enter__(self) -> ActivationHooks:
        try:
            for layer, _path, module in self._targets:
                self._handles.append(module.register_forward_hook(self._make_hook(layer)))
            missing = [
                path
                for (_l, path, module), h in zip(self._targets, self._handles, strict=True)
                if h.id not in module._forward_hooks
            ]
            if len(self._handles) != len(self._targets) or missing:
                raise UnsupportedArchitecture(f"could not hook: {', '.join(missing) or 'some layers'}")
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def reset_calls(self) -> None:
        for k in self.calls:
            self.calls[k] = 0

    def check_fired(self, times: int = 1) -> None:
        """Every hooked layer fired exactly `times` times since the last reset (one forward = once)."""
        wrong = {k: v for k, v in self.calls.items() if v != times}
        if wrong:
            raise UnsupportedArchitecture(
                f"act_fn hooks fired {wrong} times (expected {times}): the MLP does not call its act_fn "
                "module (fused kernel?), so activations cannot be read this way"
            )


# --------------------------------------------------------------------------------------------- batching


@dataclass
class _Batch:
    input_ids: Tensor  # [B, T]
    attention_mask: Tensor  # [B, T] long
    position_ids: Tensor  # [B, T]
    counted: Tensor  # [B, T] bool on the device: tokens that enter statistics
    order: list[int]  # original indices of the rows
    n_counted: int  # known on the host, so the loop never waits for the device
    excluded: Tensor | None  # flat row indices (device) of tokens that do not count; None when all count
    kept: Tensor | None  # flat row indices (device) of tokens that count; None when all count
    lengths: list[int]


def _pad_id(tokenizer: Any) -> int:
    for cand in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if cand is not None:
            return int(cand)
    return 0


def _make_batch(
    seqs: list[list[int]],
    order: list[int],
    *,
    pad_id: int,
    has_bos: bool,
    include_bos: bool,
    padding_side: str,
    device: torch.device,
) -> _Batch:
    """Pad on the host, derive masks and index lists there, then move (no device->host sync per batch)."""
    b, t = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((b, t), pad_id, dtype=torch.long)
    mask = torch.zeros((b, t), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if padding_side == "right" else slice(t - len(s), t)
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    counted = mask.bool()
    if has_bos and not include_bos:
        counted &= pos > 0
    flat = counted.reshape(-1)
    n_counted = int(flat.sum())
    excluded = kept = None
    if n_counted < flat.numel():
        excluded = (~flat).nonzero().squeeze(1).to(device, non_blocking=True)
        kept = flat.nonzero().squeeze(1).to(device, non_blocking=True)
    nb = device.type == "cuda"
    return _Batch(
        ids.to(device, non_blocking=nb),
        mask.to(device, non_blocking=nb),
        pos.to(device, non_blocking=nb),
        counted.to(device, non_blocking=nb),
        order,
        n_counted,
        excluded,
        kept,
        [len(x) for x in seqs],
    )


def _batches(seqs: list[list[int]], batch_size: int) -> list[list[int]]:
    """Index groups sorted by length (less padding); the caller builds each batch when it runs it."""
    idx = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def _no_graph() -> Any:
    """The mode every forward here runs in (one seam, so a benchmark/test can reproduce the graph-keeping bug)."""
    return torch.inference_mode()


def _decoder(model: nn.Module) -> nn.Module:
    """The decoder stack without the LM head: statistics need no logits, and [B, T, vocab] logits are the
    largest tensor of a forward (262k vocab on Gemma)."""
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    return base if isinstance(base, nn.Module) else model


def _run(model: nn.Module, batch: _Batch) -> None:
    _decoder(model)(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------------------------- profiles


@dataclass
class LanguageProfile:
    """Streaming statistics of one language: count[l, j] = tokens with act > 0, sum[l, j] = sum of act."""

    language: str
    count: Tensor  # [L, I] int64
    sum: Tensor  # [L, I] float64
    n_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prob(self) -> Tensor:
        """p[l, j] = count / n_tokens (float64)."""
        if self.n_tokens <= 0:
            raise ValueError(f"profile {self.language!r} has no tokens")
        return self.count.to(torch.float64) / self.n_tokens

    @property
    def mean(self) -> Tensor:
        if self.n_tokens <= 0:
            raise ValueError(f"profile {self.language!r} has no tokens")
        return self.sum / self.n_tokens

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.count.shape[0]), int(self.count.shape[1]))


def _stats(a: Tensor) -> tuple[Tensor, Tensor]:
    """(count of a > 0, sum of a) over rows of a [n, I] activation block, NaN rows ignored.

    On CUDA the count is the float sum of heaviside(a) (1 where a > 0): one elementwise kernel plus a float
    reduction, about 2x faster than summing a bool tensor into int64 (measured on an H100), and exact
    (integers below 2^24 rows per batch in float32). On CPU heaviside is not vectorised, so the bool sum
    is used there. Sums accumulate in float32 per batch (float64 for float64 models); totals are float64.
    """
    acc = torch.float64 if a.dtype == torch.float64 or a.shape[0] >= 2**24 else torch.float32
    if a.device.type == "cuda":
        pos = torch.heaviside(a, a.new_zeros(()))
        count = torch.nansum(pos, 0, dtype=acc).round_().to(torch.int64)
    else:
        count = (a > 0).sum(0)
    return count, torch.nansum(a, 0, dtype=acc)


def chunk_texts(
    tokenizer: Any, texts: Iterable[str], *, chunk_tokens: int = 256, max_tokens: int | None = None
) -> tuple[list[list[int]], int]:
    """Tokenise each text (no special tokens), cut into pieces of chunk_tokens - 1 and prepend BOS per piece.

    Chunks never cross text boundaries (each text is its own context, as in the reference scripts). Returns
    the chunks and the number of language (non-BOS) tokens in them, capped at max_tokens.
    """
    if chunk_tokens < 2:
        raise ValueError("chunk_tokens must be >= 2 (BOS + at least one token)")
    bos = tokenizer.bos_token_id
    body = chunk_tokens - 1 if bos is not None else chunk_tokens
    chunks: list[list[int]] = []
    total = 0
    for text in texts:
        if max_tokens is not None and total >= max_tokens:
            break
        if not text or not text.strip():
            continue
        ids = _encode(tokenizer, text)
        for i in range(0, len(ids), body):
            piece = ids[i : i + body]
            if max_tokens is not None:
                piece = piece[: max_tokens - total]
            if not piece:
                break
            chunks.append(([bos] if bos is not None else []) + piece)
            total += len(piece)
    return chunks, total


def bare_forward(lm: Any, chunks: Sequence[Sequence[int]], *, batch_size: int = 8) -> None:
    """The benchmarks' baseline: the very batches `profile_texts` runs (same grouping, padding and truncated
    forward), without hooks, so the ratio measures the hooks and nothing else."""
    with _no_graph():
        for group in _batches(chunks, batch_size):
            batch = _make_batch(
                [chunks[i] for i in group],
                group,
                pad_id=_pad_id(lm.tokenizer),
                has_bos=True,
                include_bos=False,
                padding_side="right",
                device=lm.device,
            )
            _run(lm.model, batch)


def profile_texts(
    lm: LoadedModel,
    texts: Iterable[str],
    *,
    language: str,
    batch_size: int = 8,
    chunk_tokens: int = 256,
    max_tokens: int | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    include_bos: bool = False,
    padding_side: Literal["right", "left"] = "right",
) -> LanguageProfile:
    """Language statistics over all layers (method.md step 1). progress(tokens_done, tokens_total)."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    tok, model, device = lm.tokenizer, lm.model, lm.device
    chunks, _ = chunk_texts(tok, texts, chunk_tokens=chunk_tokens, max_tokens=max_tokens)
    if not chunks:
        raise ValueError(f"no text to profile for language {language!r} (empty input)")
    has_bos = tok.bos_token_id is not None
    L, inter = lm.num_layers, lm.intermediate_size
    # Allocated outside inference mode (ordinary tensors), updated in place inside it: see the module docstring.
    count = torch.zeros((L, inter), dtype=torch.int64, device=device)
    total_sum = torch.zeros((L, inter), dtype=torch.float64, device=device)
    state: dict[str, _Batch] = {}

    def reduce(layer: int, act: Tensor) -> None:
        # Statistics over all rows minus the few rows that do not count (BOS, padding): no copy of the big
        # [B*T, I] tensor. nansum: a padding row that attended to nothing may hold NaN, which must not leak.
        # Mostly-excluded batches (heavy padding) select the kept rows instead.
        a = act.reshape(-1, act.shape[-1])
        batch = state["batch"]
        if batch.excluded is None:
            c, sm = _stats(a)
        elif 2 * batch.excluded.numel() <= a.shape[0]:
            c, sm = _stats(a)
            c_ex, sm_ex = _stats(a.index_select(0, batch.excluded))
            c, sm = c - c_ex, sm - sm_ex
        else:
            c, sm = _stats(a.index_select(0, batch.kept))  # type: ignore[arg-type]
        count[layer] += c
        total_sum[layer] += sm

    n_tokens = 0
    target = sum(len(c) - (1 if has_bos and not include_bos else 0) for c in chunks)
    with _no_graph(), ActivationHooks(model, reducer=reduce) as hooks:
        for group in _batches(chunks, batch_size):
            check_cancel(should_cancel, f"profiling {language} cancelled after {n_tokens} tokens")
            batch = _make_batch(
                [chunks[i] for i in group],
                group,
                pad_id=_pad_id(tok),
                has_bos=has_bos,
                include_bos=include_bos,
                padding_side=padding_side,
                device=device,
            )
            state["batch"] = batch
            hooks.reset_calls()
            _run(model, batch)
            hooks.check_fired()
            n_tokens += batch.n_counted
            if progress is not None:
                progress(n_tokens, target)
    return LanguageProfile(
        language=language,
        count=count.cpu(),
        sum=total_sum.cpu(),
        n_tokens=n_tokens,
        meta={
            "chunks": len(chunks),
            "chunk_tokens": chunk_tokens,
            "include_bos": include_bos,
            "max_tokens": max_tokens,
        },
    )


# --------------------------------------------------------------------------------------------- probes


def probe_activations(
    lm: LoadedModel,
    prompts: list[str],
    *,
    layers: list[int] | None = None,
    reduce: Literal["mean", "last"] = "mean",
    batch_size: int = 16,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    include_bos: bool = False,
    padding_side: Literal["right", "left"] = "right",
) -> Tensor:
    """A[l, j, n] (method.md step 3): per prompt, the mean of act over its tokens (BOS excluded by default) or
    the last token's act. Returns float32 [len(layers), I, N] on CPU, layers in the order given."""
    if reduce not in ("mean", "last"):
        raise ValueError(f"reduce must be 'mean' or 'last', not {reduce!r}")
    if not prompts:
        raise ValueError("no prompts to probe")
    tok, model, device = lm.tokenizer, lm.model, lm.device
    layer_list = list(range(lm.num_layers)) if layers is None else [int(x) for x in layers]
    if len(set(layer_list)) != len(layer_list):
        raise ValueError(f"duplicate layers in {layer_list}")
    bos = tok.bos_token_id
    seqs = []
    for i, p in enumerate(prompts):
        ids = _encode(tok, p)
        if not ids:
            raise ValueError(f"prompt {i} is empty after tokenisation: {p!r}")
        seqs.append(([bos] if bos is not None else []) + ids)
    # Allocated outside inference mode (an ordinary tensor), filled in place inside it: see the module docstring.
    out = torch.zeros((len(layer_list), lm.intermediate_size, len(prompts)), dtype=torch.float32)
    row = {layer: r for r, layer in enumerate(layer_list)}
    state: dict[str, Any] = {}

    def reducer(layer: int, act: Tensor) -> None:
        if reduce == "last":
            vals = act[state["arange"], state["last"]].float()  # [B, I]
        else:  # masked_fill also clears NaN of padding rows that attended to nothing
            masked = act.masked_fill(~state["counted"].unsqueeze(-1), 0)
            vals = masked.sum(1, dtype=torch.float32) / state["n"]
        state["vals"][row[layer]] = vals  # stays on the device until the batch is done

    done = 0
    with _no_graph(), ActivationHooks(model, layers=layer_list, reducer=reducer) as hooks:
        for group in _batches(seqs, batch_size):
            check_cancel(should_cancel, f"probing cancelled after {done} of {len(prompts)} prompts")
            batch = _make_batch(
                [seqs[i] for i in group],
                group,
                pad_id=_pad_id(tok),
                has_bos=bos is not None,
                include_bos=include_bos,
                padding_side=padding_side,
                device=device,
            )
            t = batch.input_ids.shape[1]
            lengths = torch.tensor(batch.lengths)
            n = (lengths - (1 if bos is not None and not include_bos else 0)).clamp(min=1)
            last = (lengths - 1) if padding_side == "right" else torch.full_like(lengths, t - 1)
            state["counted"] = batch.counted
            state["n"] = n.to(device=device, dtype=torch.float32).unsqueeze(1)
            state["arange"] = torch.arange(len(group), device=device)
            state["last"] = last.to(device)
            state["vals"] = torch.zeros((len(layer_list), len(group), lm.intermediate_size), device=device)
            hooks.reset_calls()
            _run(model, batch)
            hooks.check_fired()
            out[:, :, group] = state["vals"].cpu().transpose(1, 2)
            done += len(group)
            if progress is not None:
                progress(done, len(prompts))
    return out
