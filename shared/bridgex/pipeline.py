"""The method end to end on files and objects (used by the CLI and the Celery analyzer; no Redis here).

profile_language (step 1) -> artifact; probe_language_pair (step 3) -> artifact; rank_pair (steps 1, 4-6) ->
Ranking. Each artifact's manifest records model, data hash, method version and parameters.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bridgex.artifacts import (
    make_manifest,
    model_manifest_fields,
    save_probe_acts,
    save_profile,
    sha256_texts,
)
from bridgex.cancel import Progress, ShouldCancel
from bridgex.capture import get_backend
from bridgex.models import LoadedModel
from bridgex.neurons import bridge_set, language_sets, overlap_matrix, pair_overlap, similarity_matrix
from bridgex.profiling import LanguageProfile
from bridgex.ranking import Ranking, rank_bridges
from bridgex.settings import CoreSettings

_DEFAULTS = CoreSettings.model_construct()
"""The method's defaults, for callers that pass no settings (no environment is read)."""


def profile_language(
    lm: LoadedModel,
    texts: Sequence[str],
    language: str,
    settings: CoreSettings | None,
    out_dir: str | os.PathLike[str],
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    *,
    name: str | None = None,
) -> Path:
    """Profile one language and write `profile-<language>` (safetensors + manifest) into out_dir."""
    texts = list(texts)
    s = settings or _DEFAULTS
    params = {
        "batch_size": s.batch_size,
        "chunk_tokens": s.chunk_tokens,
        "max_tokens": settings.profile_max_tokens if settings is not None else None,
        "include_bos": False,
    }
    profile = get_backend(s.capture_backend).profile(
        lm,
        texts,
        language=language,
        batch_size=params["batch_size"],
        chunk_tokens=params["chunk_tokens"],
        max_tokens=params["max_tokens"],
        progress=progress,
        should_cancel=should_cancel,
    )
    manifest = make_manifest(
        "language_profile",
        **model_manifest_fields(lm),
        data_hash=sha256_texts(texts),
        params=params,
        extra={"n_texts": len(texts)},
    )
    return save_profile(out_dir, profile, manifest, name=name)


def probe_language_pair(
    lm: LoadedModel,
    prompts: Sequence[str],
    layers: Sequence[int] | None,
    reduce: str,
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    batch_size: int = 16,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    probe_hash: str | None = None,
    extra: Mapping[str, Any] | None = None,
    backend: str = "hf",
) -> Path:
    """Probe activations A[l, j, n] for the given layers (None = every layer) written as artifact `name`.

    probe_hash (the probe set's content hash) becomes the data hash; without it, the prompts are hashed.
    """
    prompts = list(prompts)
    layer_list = list(range(lm.num_layers)) if layers is None else [int(x) for x in layers]
    acts = get_backend(backend).probe(
        lm,
        prompts,
        layers=layer_list,
        reduce=reduce,  # type: ignore[arg-type]
        batch_size=batch_size,
        progress=progress,
        should_cancel=should_cancel,
    )
    manifest = make_manifest(
        "probe_activations",
        **model_manifest_fields(lm),
        data_hash=probe_hash or sha256_texts(prompts),
        params={"reduce": reduce, "batch_size": batch_size, "include_bos": False},
        extra={"n_prompts": len(prompts), **dict(extra or {})},
    )
    return save_probe_acts(out_dir, name, acts, layer_list, manifest)


def _prob(p: LanguageProfile | Tensor) -> Tensor:
    return p.prob if isinstance(p, LanguageProfile) else p


def rank_pair(
    profiles: Mapping[str, LanguageProfile | Tensor],
    probe_acts: Tensor,
    layers: Sequence[int],
    source: str,
    target: str,
    candidates: Sequence[str] | None = None,
    *,
    settings: CoreSettings | None = None,
    selection: str | None = None,
    top_rate: float | None = None,
    bridge_set_kind: str | None = None,
    k: int | None = None,
    hsic_variant: str | None = None,
    lape_languages: Sequence[str] | None = None,
    lape_ratio: float | None = None,
    lape_quantile: float | None = None,
    full_fraction: float | None = None,
    provenance: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> Ranking:
    """Rank candidate bridges for source -> target (method.md steps 1, 4-6): a bridgex.ranking.Ranking.

    profiles: language -> LanguageProfile or activation-probability tensor [L, I]. "top_rate" sets are per
    language. "lape" normalises over one fixed language set, `lape_languages` (settings: the 15 paper
    languages) plus source, target and candidates when they are outside it, so T_b never depends on which
    pair is analysed, and the CLI and the service agree; every one of them needs a profile. Candidates default
    to settings.candidates (or en de fr it pt es), minus source and target. Explicit keyword arguments override
    settings (selection, top_rate, bridge_set, bridge_k, hsic_variant, lape_*, full_fraction).
    """
    s = settings or _DEFAULTS
    selection = selection or s.selection
    top_rate = float(top_rate if top_rate is not None else s.top_rate)
    bridge_set_kind = bridge_set_kind or s.bridge_set
    k = int(k if k is not None else s.bridge_k)
    hsic_variant = hsic_variant or s.hsic_variant
    lape_ratio = float(lape_ratio if lape_ratio is not None else s.lape_ratio)
    lape_quantile = float(lape_quantile if lape_quantile is not None else s.lape_quantile)
    full_fraction = float(full_fraction if full_fraction is not None else s.full_fraction)
    cands = [c for c in (candidates or s.candidates) if c not in (source, target)]
    if not cands:
        raise ValueError(f"no candidate bridges left for {source}->{target} (candidates minus source and target)")
    needed = [source, target, *cands]
    if selection == "lape":
        fixed = list(lape_languages or (settings.lape_languages if settings is not None else None) or profiles)
        needed = list(dict.fromkeys([*fixed, *needed]))
    missing = [c for c in needed if c not in profiles]
    if missing:
        raise ValueError(f"missing language profiles for {missing}; have {sorted(profiles)}")
    probs = {code: _prob(profiles[code]) for code in needed}
    sets, report = language_sets(
        probs,
        method=selection,
        top_rate=top_rate,  # type: ignore[arg-type]
        lape_ratio=lape_ratio,
        lape_quantile=lape_quantile,
    )
    pair = pair_overlap(sets, source, target)
    bridges = {
        b: bridge_set(
            sets,
            b,
            source,
            target,
            probe_acts,
            layers,
            kind=bridge_set_kind,  # type: ignore[arg-type]
            k=k,
            full_fraction=full_fraction,
        )
        for b in cands
    }
    params = {
        "selection": selection,
        "top_rate": top_rate,
        "bridge_set": bridge_set_kind,
        "k": k,
        **(
            {"lape_languages": needed, "lape_ratio": lape_ratio, "lape_quantile": lape_quantile}
            if selection == "lape"
            else {}
        ),
        **({"full_fraction": full_fraction} if bridge_set_kind == "full" else {}),
        "set_sizes": report.sizes,
        "set_thresholds": report.thresholds,
        "n_probe": int(probe_acts.shape[2]),
    }
    prov = {"src": source, "tgt": target, **dict(provenance or {})}
    ranking = rank_bridges(
        probe_acts,
        layers,
        pair,
        bridges,
        hsic_variant=hsic_variant,
        candidates=cands,  # type: ignore[arg-type]
        provenance=prov,
        params=params,
        device=device,
        progress=progress,
        should_cancel=should_cancel,
    )
    codes, overlap = overlap_matrix(sets, needed)
    _, sim = similarity_matrix(probs, sets, needed)
    ranking.language_overlap = {
        "codes": codes,
        "overlap": overlap.tolist(),
        "similarity": [[round(float(x), 6) for x in row] for row in sim],
    }
    return ranking
