"""The rank stage: bridgex.pipeline.rank_pair with the job's parameters."""

from __future__ import annotations

import logging
from typing import Any

from bridgex import pipeline
from bridgex.models import LoadedModel
from bridgex.probes import ProbeSet
from bridgex.profiling import LanguageProfile
from torch import Tensor

from services.analyzer.stages.context import AnalysisFailed, JobContext
from services.common.analysis import AnalysisSpec

log = logging.getLogger(__name__)


def rank(
    lm: LoadedModel,
    profiles: dict[str, LanguageProfile],
    acts: Tensor,
    layers: list[int],
    ps: ProbeSet,
    spec: AnalysisSpec,
    ctx: JobContext,
) -> dict[str, Any]:
    """bridgex.pipeline.rank_pair with the request's parameters (cancel checked between layers)."""

    src, tgt = spec.source, spec.target
    ranking = pipeline.rank_pair(
        profiles,
        acts,
        layers,
        src,
        tgt,
        list(spec.candidates),
        settings=ctx.settings,
        selection=spec.selection,
        top_rate=float(spec.top_rate),
        bridge_set_kind=spec.bridge_set,
        k=int(spec.k),
        hsic_variant=spec.hsic_variant,
        lape_languages=spec.lape_languages,
        lape_ratio=spec.lape_ratio,
        lape_quantile=spec.lape_quantile,
        full_fraction=spec.full_fraction,
        provenance={
            "model_id": lm.model_id,
            "revision": lm.revision,
            "probe_hash": ps.hash,
            "method_version": spec.method_version,
        },
        progress=lambda cur, tot: ctx.progress("rank", cur, tot),
        should_cancel=ctx.should_cancel,
        device=lm.device,  # HSIC where the model is: the GPU when there is one
    )
    out = ranking.model_dump(mode="json")
    out["params"] = {
        **out.get("params", {}),
        "window": list(spec.window),
        "reduce": spec.reduce,
        "gold_filter": spec.gold_filter,
        "gold_filter_k": spec.gold_filter_k,
        "probe_fallback": spec.probe_fallback,
    }
    out["probe_filter"] = ps.filter
    out["probe_counts"] = {
        "size": len(ps),
        "tried": ps.tried,
        "kept": ps.kept,
        "errors": ps.errors,
        "available": ps.available,
    }
    if out.get("best") is None:
        raise AnalysisFailed(
            f"no candidate could be scored for {src}->{tgt}: the pair's shared neurons "
            f"{ranking.pair_set_sizes} or the bridge sets are empty in every window layer {layers}. "
            f"Try selection='lape' or a larger top_rate, bridge_set='full', or a wider window."
        )
    return out
