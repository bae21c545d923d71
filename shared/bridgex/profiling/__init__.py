"""Neuron activations of gated MLPs (method.md steps 0, 1, 3): the entry points that combine the parts.

- `hooks`: find `layers[l].mlp.act_fn` and hook it (ActivationHooks, UnsupportedArchitecture).
- `batching`: tokenise (BOS + text), chunk, group by length, pad, and mark the tokens that count.
- `stats`: LanguageProfile and the reductions the hooks run (streaming count/sum, probe mean/last).

This package module runs them: `profile_texts` (language profiles), `probe_activations` (per-prompt
activations) and `bare_forward` (the benchmarks' baseline), all with the cancel/progress protocol of
bridgex.cancel between batches.

No autograd graph (DECISION): every forward runs under `torch.inference_mode()` inside the entry points
(`profile_texts`, `probe_activations`, `bare_forward`), whatever the caller's grad mode. Without it the
accumulators became autograd nodes whose graph held every batch's saved activations (7.3 GB of RSS for 27k
tokens on a toy 8-layer model). The returned tensors (accumulators, probe output) are allocated *before*
entering the mode and only written in place inside it, so they are ordinary tensors, not inference tensors:
callers may modify them in place, or use them in autograd, outside the mode (an inference tensor would
raise there). They never require grad and have no grad_fn. The mode is looked up here (`_no_graph`) at call
time, so a benchmark or test can patch `bridgex.profiling._no_graph` to reproduce the graph-keeping bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from bridgex.cancel import Progress, ShouldCancel, check_cancel
from bridgex.models import LoadedModel
from bridgex.profiling.batching import Batch, chunk_texts, encode, length_groups, make_batch, pad_token_id
from bridgex.profiling.hooks import (
    ActivationHooks,
    Reducer,
    UnsupportedArchitecture,
    find_layers,
    find_mlp_act_modules,
)
from bridgex.profiling.stats import LanguageProfile, ProbeReducer, ProfileAccumulator, count_and_sum

__all__ = [
    "ActivationHooks",
    "LanguageProfile",
    "Reducer",
    "UnsupportedArchitecture",
    "bare_forward",
    "chunk_texts",
    "count_and_sum",
    "encode",
    "find_layers",
    "find_mlp_act_modules",
    "probe_activations",
    "profile_texts",
]

_stats = count_and_sum
"""The former private name, still imported by capture/vllm_worker.py, scripts/gpu_bench.py and the tests."""


def _no_graph() -> Any:
    """The mode every forward here runs in (one seam, so a benchmark/test can reproduce the graph-keeping bug)."""
    return torch.inference_mode()


def _decoder(model: nn.Module) -> nn.Module:
    """The decoder stack without the LM head: statistics need no logits, and [B, T, vocab] logits are the
    largest tensor of a forward (262k vocab on Gemma)."""
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    return base if isinstance(base, nn.Module) else model


def _run(model: nn.Module, batch: Batch) -> None:
    _decoder(model)(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )


def bare_forward(lm: Any, chunks: Sequence[Sequence[int]], *, batch_size: int = 8) -> None:
    """The benchmarks' baseline: the very batches `profile_texts` runs (same grouping, padding and truncated
    forward), without hooks, so the ratio measures the hooks and nothing else."""
    with _no_graph():
        for group in length_groups(chunks, batch_size):
            batch = make_batch(
                [chunks[i] for i in group],
                group,
                pad_id=pad_token_id(lm.tokenizer),
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
    # Allocated outside inference mode (ordinary tensors), updated in place inside it: see the module docstring.
    acc = ProfileAccumulator(lm.num_layers, lm.intermediate_size, device)

    n_tokens = 0
    target = sum(len(c) - (1 if has_bos and not include_bos else 0) for c in chunks)
    with _no_graph(), ActivationHooks(model, reducer=acc.reduce) as hooks:
        for group in length_groups(chunks, batch_size):
            check_cancel(should_cancel, f"profiling {language} cancelled after {n_tokens} tokens")
            batch = make_batch(
                [chunks[i] for i in group],
                group,
                pad_id=pad_token_id(tok),
                has_bos=has_bos,
                include_bos=include_bos,
                padding_side=padding_side,
                device=device,
            )
            acc.batch = batch
            hooks.reset_calls()
            _run(model, batch)
            hooks.check_fired()
            n_tokens += batch.n_counted
            if progress is not None:
                progress(n_tokens, target)
    return LanguageProfile(
        language=language,
        count=acc.count.cpu(),
        sum=acc.sum.cpu(),
        n_tokens=n_tokens,
        meta={
            "chunks": len(chunks),
            "chunk_tokens": chunk_tokens,
            "include_bos": include_bos,
            "max_tokens": max_tokens,
        },
    )


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
        ids = encode(tok, p)
        if not ids:
            raise ValueError(f"prompt {i} is empty after tokenisation: {p!r}")
        seqs.append(([bos] if bos is not None else []) + ids)
    # Allocated outside inference mode (an ordinary tensor), filled in place inside it: see the module docstring.
    probe = ProbeReducer(
        layer_list,
        lm.intermediate_size,
        len(prompts),
        reduce=reduce,
        has_bos=bos is not None,
        include_bos=include_bos,
        padding_side=padding_side,
        device=device,
    )

    done = 0
    with _no_graph(), ActivationHooks(model, layers=layer_list, reducer=probe.reduce) as hooks:
        for group in length_groups(seqs, batch_size):
            check_cancel(should_cancel, f"probing cancelled after {done} of {len(prompts)} prompts")
            batch = make_batch(
                [seqs[i] for i in group],
                group,
                pad_id=pad_token_id(tok),
                has_bos=bos is not None,
                include_bos=include_bos,
                padding_side=padding_side,
                device=device,
            )
            probe.start(batch)
            hooks.reset_calls()
            _run(model, batch)
            hooks.check_fired()
            probe.finish(batch)
            done += len(group)
            if progress is not None:
                progress(done, len(prompts))
    return probe.out
