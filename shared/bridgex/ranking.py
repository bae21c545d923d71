"""Depth window, per-layer HSIC scores keyed by true layer id, and the ranked result (method.md step 6).

The final reference script keys per-layer scores by their position in the list of scored layers
(``enumerate``), so a layer missing from one set shifts every later score onto the wrong layer and the window
average reads the wrong values. Here every score is keyed by the true layer id it was computed on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import torch
from pydantic import BaseModel, Field

from bridgex.cancel import Progress, ShouldCancel, check_cancel
from bridgex.hsic import HsicVariant, Method, layer_score, median_sigma, standardize

DEGENERATE_SIGMA = 1e-5


def window_layers(num_layers: int, window: tuple[float, float] = (0.3125, 0.6875)) -> list[int]:
    """Layers whose centre ``(l + 0.5) / num_layers`` lies in ``[lo, hi)``.

    For 32 layers and the default window this is 10..21, the scripts' layers on Llama-3-8B; for 18
    (Gemma-3-270M) 6..11. Equivalent to ``range(round_half_up(lo * L), round_half_up(hi * L))``. Never empty:
    a window too thin to hold a layer centre gives the layer containing the window's midpoint.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    lo, hi = float(window[0]), float(window[1])
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"window must satisfy 0 <= lo < hi <= 1, got {window}")
    out = [layer for layer in range(num_layers) if lo <= (layer + 0.5) / num_layers < hi]
    if not out:
        out = [min(int((lo + hi) / 2 * num_layers), num_layers - 1)]
    return out


class CandidateScore(BaseModel):
    """One candidate bridge: mean layer score over scored layers (None when no layer could be scored)."""

    code: str
    score: float | None
    rank: int
    per_layer: dict[int, float] = Field(default_factory=dict, description="S_l by TRUE layer id.")
    set_sizes: dict[int, int] = Field(default_factory=dict, description="|Y_b(l)| by true layer id.")
    coverage: float = Field(0.0, description="Scored layers / window layers.")
    degenerate_layers: list[int] = Field(
        default_factory=list,
        description="Layers where the median bandwidth collapsed to ~1e-6 (sets of 1-2 neurons: over half of the "
        "pairwise distances are the zero diagonal), so every HSIC entry is N-1 and S_l carries no signal. "
        "Scored as the reference does, flagged so a reader can discount them.",
    )


class Ranking(BaseModel):
    """The published ranking (its `model_dump()` is the analyzer's JSON result)."""

    ranked: list[CandidateScore]
    best: str | None
    layers: list[int]
    pair_set_sizes: dict[int, int]
    params: dict[str, Any] = Field(default_factory=dict)
    src: str | None = None
    tgt: str | None = None
    model_id: str | None = None
    revision: str | None = None
    probe_hash: str | None = None
    method_version: str | None = None
    created_at: str | None = None
    language_overlap: dict[str, Any] | None = Field(
        None,
        description="Method step 1 for the languages profiled: codes, |T_i ∩ T_j| (all layers) and the "
        "similarity (cosine of p_i, p_j over T_i ∩ T_j), as `codes`, `overlap`, `similarity`.",
    )


_PROVENANCE = ("src", "tgt", "model_id", "revision", "probe_hash", "method_version", "created_at")


def _rows(mask_row: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask_row.bool(), as_tuple=False).reshape(-1)


def rank_bridges(
    probe_acts: torch.Tensor,
    layers: Sequence[int],
    pair_set: torch.Tensor,
    bridge_sets: Mapping[str, torch.Tensor],
    *,
    hsic_variant: HsicVariant = "reference",
    candidates: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    method: Method = "auto",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> Ranking:
    """Score every candidate b: S_l = layer_score(X(l), Y_b(l)) on the layers where both sets are non-empty.

    probe_acts: Tensor[len(layers), I, N], row r = true layer ``layers[r]``; pair_set and bridge sets are bool
    masks [L, I]. score(b) = mean of S_l over scored layers; candidates with none rank last with score None
    (ties keep `candidates` order). provenance: any of src, tgt, model_id, revision, probe_hash,
    method_version, created_at (created_at defaults to now, UTC ISO 8601). device: where HSIC runs (default:
    probe_acts' device). progress(done, total) after each layer; should_cancel() is checked between layers
    and raises bridgex.cancel.Cancelled.
    """
    layers = [int(layer) for layer in layers]
    if not layers:
        raise ValueError("rank_bridges needs at least one layer")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers must be unique, got {layers}")
    if probe_acts.dim() != 3 or probe_acts.shape[0] != len(layers):
        raise ValueError(
            f"probe_acts must be [len(layers)={len(layers)}, neurons, samples], got {tuple(probe_acts.shape)}"
        )
    if pair_set.dim() != 2 or pair_set.shape[1] != probe_acts.shape[1]:
        raise ValueError(
            f"pair_set must be [layers, {probe_acts.shape[1]}] (neurons as probe_acts), got {tuple(pair_set.shape)}"
        )
    bad = [layer for layer in layers if not 0 <= layer < pair_set.shape[0]]
    if bad:
        raise ValueError(f"layers {bad} out of range for sets with {pair_set.shape[0]} layers")
    codes = list(candidates) if candidates is not None else list(bridge_sets)
    missing = [c for c in codes if c not in bridge_sets]
    if missing:
        raise ValueError(f"no bridge set for candidates {missing}; have {sorted(bridge_sets)}")
    for c in codes:
        if bridge_sets[c].shape != pair_set.shape:
            raise ValueError(
                f"bridge set of {c!r} has shape {tuple(bridge_sets[c].shape)}, pair set {tuple(pair_set.shape)}"
            )
    unknown = sorted(set(provenance or {}) - set(_PROVENANCE))
    if unknown:
        raise ValueError(f"unknown provenance fields {unknown}; allowed: {list(_PROVENANCE)}")
    acts = probe_acts if device is None else probe_acts.to(device)

    pair_rows = {layer: _rows(pair_set[layer]) for layer in layers}
    total = len(codes) * len(layers)
    done = 0
    scored: list[CandidateScore] = []
    for code in codes:
        bset = bridge_sets[code]
        per_layer: dict[int, float] = {}
        sizes: dict[int, int] = {}
        degenerate: list[int] = []
        for r, layer in enumerate(layers):
            check_cancel(should_cancel, f"ranking cancelled at candidate {code!r}, layer {layer}")
            xi = pair_rows[layer]
            yi = _rows(bset[layer])
            sizes[layer] = int(yi.numel())
            if xi.numel() > 0 and yi.numel() > 0:
                x = acts[r].index_select(0, xi.to(acts.device))
                y = acts[r].index_select(0, yi.to(acts.device))
                per_layer[layer] = layer_score(x, y, hsic_variant, dtype=dtype, method=method)
                if x.shape[1] > 1 and median_sigma(standardize(x), standardize(y)) <= DEGENERATE_SIGMA:
                    degenerate.append(layer)
            done += 1
            if progress is not None:
                progress(done, total)
        score = math.fsum(per_layer.values()) / len(per_layer) if per_layer else None
        scored.append(
            CandidateScore(
                code=code,
                score=score,
                rank=0,
                per_layer=per_layer,
                set_sizes=sizes,
                coverage=len(per_layer) / len(layers),
                degenerate_layers=degenerate,
            )
        )
    order = sorted(
        range(len(scored)),
        key=lambda i: (scored[i].score is None, -(scored[i].score or 0.0), i),
    )
    ranked = []
    for rank, i in enumerate(order, start=1):
        scored[i].rank = rank
        ranked.append(scored[i])
    best = ranked[0].code if ranked and ranked[0].score is not None else None

    prov = dict(provenance or {})
    if prov.get("created_at") is None:
        prov["created_at"] = datetime.now(UTC).isoformat()
    if prov.get("method_version") is None:
        from bridgex import METHOD_VERSION

        prov["method_version"] = METHOD_VERSION
    all_params: dict[str, Any] = {"hsic_variant": hsic_variant, "hsic_method": method, "candidates": codes}
    all_params.update(params or {})
    return Ranking(
        ranked=ranked,
        best=best,
        layers=layers,
        pair_set_sizes={layer: int(pair_rows[layer].numel()) for layer in layers},
        params=all_params,
        **prov,
    )


__all__ = ["CandidateScore", "Ranking", "rank_bridges", "window_layers"]
