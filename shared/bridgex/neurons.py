"""Language neuron sets, overlaps, similarity, pair and bridge sets (method.md steps 1 and 4).

A neuron set is a boolean mask ``Tensor[L, I]`` (layer, intermediate channel); masks keep every operation a
vectorised tensor op and make the (layer, neuron) indexing unambiguous. ``mask_to_indices`` /
``indices_to_mask`` convert to and from the scripts' ``(layer, neuron)`` lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import torch
from pydantic import BaseModel, Field

Selection = Literal["top_rate", "lape"]
BridgeSetKind = Literal["specific", "full"]


class SetsReport(BaseModel):
    """What a selection did: method, parameters, set sizes and thresholds used (for logs and manifests)."""

    method: Selection
    params: dict[str, float] = Field(default_factory=dict)
    sizes: dict[str, int] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="top_rate: per-language p threshold; lape: 'activation_bar' and 'entropy'.",
    )
    candidates: int | None = Field(None, description="lape: neurons kept after the entropy step.")


def _kth_smallest(values: torch.Tensor, fraction: float) -> float:
    """The scripts' quantile: ``kthvalue(k = round(M * fraction))`` (k clamped to [1, M]) of a flat tensor."""
    m = values.numel()
    k = min(max(round(m * fraction), 1), m)
    return float(torch.kthvalue(values.reshape(-1).to(torch.float64).cpu(), k).values.item())


def _stack_probs(probs: Mapping[str, torch.Tensor]) -> tuple[list[str], torch.Tensor]:
    if not probs:
        raise ValueError("language_sets needs at least one language profile")
    codes = list(probs)
    shapes = {tuple(p.shape) for p in probs.values()}
    if len(shapes) != 1:
        raise ValueError(f"all profiles must have the same [layers, neurons] shape, got {sorted(shapes)}")
    shape = next(iter(shapes))
    if len(shape) != 2 or 0 in shape:
        raise ValueError(f"profiles must be non-empty [layers, neurons] tensors, got shape {shape}")
    stacked = torch.stack([probs[c].detach().to(torch.float64).cpu() for c in codes], dim=-1)
    if torch.isnan(stacked).any():
        raise ValueError("profiles contain NaN (a language with zero tokens?)")
    return codes, stacked


def language_sets(
    probs: Mapping[str, torch.Tensor],
    method: Selection = "top_rate",
    top_rate: float = 0.01,
    lape_ratio: float = 0.01,
    lape_quantile: float = 0.95,
) -> tuple[dict[str, torch.Tensor], SetsReport]:
    """Language sets T_L as bool masks [L, I] from activation probabilities p_L [L, I].

    "top_rate" (the scripts): per language, p >= its k-th smallest value with k = round(L*I*(1 - top_rate))
    (``torch.kthvalue``, as the scripts), ties at the threshold included: with distinct values a set has
    L*I - k + 1 neurons, with ties more.
    "lape" (Tang et al. 2024): bar = the k-th smallest p over all layers x neurons x languages with
    k = round(total * lape_quantile); drop neurons where no language has p > bar; of the rest keep the
    round(L*I*lape_ratio) with the lowest entropy of p normalised over languages; assign a kept neuron to
    every language with p > bar (strict, as their code).
    """
    codes, p = _stack_probs(probs)
    n_layers, n_neurons, _ = p.shape
    sets: dict[str, torch.Tensor] = {}
    if method == "top_rate":
        if not 0.0 < top_rate <= 1.0:
            raise ValueError(f"top_rate must be in (0, 1], got {top_rate}")
        thresholds: dict[str, float] = {}
        for k, code in enumerate(codes):
            thr = _kth_smallest(p[..., k], 1.0 - top_rate)
            thresholds[code] = thr
            sets[code] = p[..., k] >= thr
        report = SetsReport(
            method="top_rate",
            params={"top_rate": top_rate},
            sizes={c: int(s.sum()) for c, s in sets.items()},
            thresholds=thresholds,
        )
        return sets, report
    if method == "lape":
        if not 0.0 < lape_ratio <= 1.0:
            raise ValueError(f"lape_ratio must be in (0, 1], got {lape_ratio}")
        if not 0.0 < lape_quantile <= 1.0:
            raise ValueError(f"lape_quantile must be in (0, 1], got {lape_quantile}")
        bar = _kth_smallest(p, lape_quantile)
        total = p.sum(dim=-1, keepdim=True)
        normed = torch.where(total > 0, p / total.clamp_min(1e-300), torch.zeros_like(p))
        logs = torch.where(normed > 0, normed.clamp_min(1e-300).log(), torch.zeros_like(normed))
        entropy = -(normed * logs).sum(dim=-1)
        eligible = (p > bar).any(dim=-1)
        entropy = torch.where(eligible, entropy, torch.full_like(entropy, math.inf)).reshape(-1)
        keep_n = min(round(n_layers * n_neurons * lape_ratio), int(eligible.sum()))
        kept = torch.zeros(n_layers * n_neurons, dtype=torch.bool)
        ent_cut: float | None = None
        if keep_n > 0:
            order = torch.sort(entropy, stable=True).indices[:keep_n]
            kept[order] = True
            ent_cut = float(entropy[order[-1]])
        kept = kept.view(n_layers, n_neurons)
        for k, code in enumerate(codes):
            sets[code] = kept & (p[..., k] > bar)
        report = SetsReport(
            method="lape",
            params={"lape_ratio": lape_ratio, "lape_quantile": lape_quantile},
            sizes={c: int(s.sum()) for c, s in sets.items()},
            thresholds={"activation_bar": bar} | ({} if ent_cut is None else {"entropy": ent_cut}),
            candidates=int(kept.sum()),
        )
        return sets, report
    raise ValueError(f"method must be 'top_rate' or 'lape', got {method!r}")


def _get(sets: Mapping[str, torch.Tensor], code: str) -> torch.Tensor:
    try:
        return sets[code]
    except KeyError:
        raise ValueError(f"no neuron set for language {code!r}; known: {', '.join(sets)}") from None


def overlap_matrix(
    sets: Mapping[str, torch.Tensor], codes: Sequence[str] | None = None
) -> tuple[list[str], torch.Tensor]:
    """|T_i ∩ T_j| for every pair, as (codes, int64 Tensor[n, n]) in `codes` order (default: dict order)."""
    codes = list(codes) if codes is not None else list(sets)
    if not codes:
        return [], torch.zeros(0, 0, dtype=torch.int64)
    flat = torch.stack([_get(sets, c).reshape(-1) for c in codes]).to(torch.float64)
    return codes, (flat @ flat.T).round().to(torch.int64)


def similarity(p_i: torch.Tensor, p_j: torch.Tensor, set_i: torch.Tensor, set_j: torch.Tensor) -> float:
    """Cosine of p_i and p_j over the neurons (l, j) of T_i ∩ T_j, selected element-wise by the mask.

    0.0 when the intersection is empty or a restricted vector is all zeros.
    """
    if not (p_i.shape == p_j.shape == set_i.shape == set_j.shape):
        raise ValueError(
            "p_i, p_j, set_i, set_j must share one [layers, neurons] shape, got "
            f"{tuple(p_i.shape)}, {tuple(p_j.shape)}, {tuple(set_i.shape)}, {tuple(set_j.shape)}"
        )
    mask = set_i.bool() & set_j.bool()
    if not bool(mask.any()):
        return 0.0
    a = p_i[mask].to(torch.float64)
    b = p_j[mask].to(torch.float64)
    denom = float(a.norm() * b.norm())
    return float((a @ b) / denom) if denom > 0 else 0.0


def similarity_matrix(
    probs: Mapping[str, torch.Tensor], sets: Mapping[str, torch.Tensor], codes: Sequence[str] | None = None
) -> tuple[list[str], torch.Tensor]:
    """`similarity` for every pair of languages (diagonal computed too, 1.0 unless a set is empty)."""
    codes = list(codes) if codes is not None else list(sets)
    out = torch.zeros(len(codes), len(codes), dtype=torch.float64)
    for a, ca in enumerate(codes):
        for b, cb in enumerate(codes):
            if b < a:
                out[a, b] = out[b, a]
                continue
            out[a, b] = similarity(_get(probs, ca), _get(probs, cb), _get(sets, ca), _get(sets, cb))
    return codes, out


def pair_overlap(sets: Mapping[str, torch.Tensor], s: str, t: str) -> torch.Tensor:
    """O(s, t) = T_s ∩ T_t as a bool mask [L, I]: the pair's shared neurons (X of step 4)."""
    return _get(sets, s).bool() & _get(sets, t).bool()


def bridge_set(
    sets: Mapping[str, torch.Tensor],
    b: str,
    s: str,
    t: str,
    probe_acts: torch.Tensor,
    layers: Sequence[int],
    kind: BridgeSetKind = "specific",
    k: int = 64,
    full_fraction: float = 0.95,
) -> torch.Tensor:
    """Y_b(l) for each l in `layers` as a bool mask [L, I] (zero outside `layers`), method.md step 4.

    probe_acts: Tensor[len(layers), I, N], row r belonging to true layer ``layers[r]``.
    "specific": T_b minus (T_s ∪ T_t); "full": T_b neurons with A > 0 on >= full_fraction of the samples.
    Either way, per layer the top k by mean probe activation (ties: lower neuron index first).
    """
    tb = _get(sets, b).bool()
    n_layers, n_neurons = tb.shape
    layers = [int(layer) for layer in layers]
    if probe_acts.dim() != 3 or probe_acts.shape[0] != len(layers) or probe_acts.shape[1] != n_neurons:
        raise ValueError(
            f"probe_acts must be [len(layers)={len(layers)}, neurons={n_neurons}, samples], "
            f"got {tuple(probe_acts.shape)}"
        )
    if probe_acts.shape[2] == 0:
        raise ValueError("probe_acts has no samples")
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range for a model with {n_layers} layers")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers must be unique, got {layers}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    acts = probe_acts.detach().to(device="cpu", dtype=torch.float64)
    if kind == "specific":
        eligible = tb & ~(_get(sets, s).bool() | _get(sets, t).bool())
        eligible_rows = eligible[layers]
    elif kind == "full":
        if not 0.0 < full_fraction <= 1.0:
            raise ValueError(f"full_fraction must be in (0, 1], got {full_fraction}")
        active = (acts > 0).to(torch.float64).mean(dim=2) >= full_fraction
        eligible_rows = tb[layers] & active
    else:
        raise ValueError(f"bridge set kind must be 'specific' or 'full', got {kind!r}")
    means = acts.mean(dim=2)
    out = torch.zeros(n_layers, n_neurons, dtype=torch.bool)
    for r, layer in enumerate(layers):
        row = eligible_rows[r]
        count = int(row.sum())
        if count == 0:
            continue
        score = torch.where(row, means[r], torch.full_like(means[r], -math.inf))
        top = torch.sort(score, descending=True, stable=True).indices[: min(k, count)]
        out[layer, top] = True
    return out


def mask_to_indices(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(layer, neuron) pairs of a [L, I] mask, in (layer, neuron) order (the scripts' file format)."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be [layers, neurons], got shape {tuple(mask.shape)}")
    return [(int(a), int(b)) for a, b in torch.nonzero(mask.bool()).tolist()]


def indices_to_mask(indices: Iterable[tuple[int, int]], shape: tuple[int, int]) -> torch.Tensor:
    """Inverse of `mask_to_indices`: a bool mask of `shape` with the given (layer, neuron) pairs set."""
    out = torch.zeros(shape, dtype=torch.bool)
    pairs = list(indices)
    if pairs:
        idx = torch.tensor(pairs, dtype=torch.long)
        if (idx < 0).any() or (idx[:, 0] >= shape[0]).any() or (idx[:, 1] >= shape[1]).any():
            raise ValueError(f"indices out of range for shape {shape}")
        out[idx[:, 0], idx[:, 1]] = True
    return out


def layer_sizes(mask: torch.Tensor, layers: Iterable[int]) -> dict[int, int]:
    """Set size per true layer id."""
    return {int(layer): int(mask[int(layer)].sum()) for layer in layers}


__all__ = [
    "SetsReport",
    "bridge_set",
    "indices_to_mask",
    "language_sets",
    "layer_sizes",
    "mask_to_indices",
    "overlap_matrix",
    "pair_overlap",
    "similarity",
    "similarity_matrix",
]
