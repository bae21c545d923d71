"""The whole analysis on one process, and its published ranking."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bridgex import METHOD_VERSION
from bridgex.atomic import atomic_write_text
from bridgex.fingerprint import config_fingerprint, method_params
from bridgex.profiling import LanguageProfile
from redis import Redis

from services.analyzer.stages.activations import probe_acts, window_layers
from services.analyzer.stages.common import _short, for_job, load_lm, model_root
from services.analyzer.stages.context import AnalysisFailed, JobContext
from services.analyzer.stages.data import ensure_data, job_languages
from services.analyzer.stages.probes import check_worker_weights, probe_set
from services.analyzer.stages.profiles import profile_language
from services.analyzer.stages.rank import rank
from services.analyzer.stages.validate import validate
from services.common.analysis import AnalysisSpec
from services.common.bridges import BridgeStore, best_of

log = logging.getLogger(__name__)


def run_analysis(
    spec: AnalysisSpec, ctx: JobContext, *, redis: Redis | None = None, publish: bool = True
) -> dict[str, Any]:
    """The whole job on one process. Returns the small result stored in the job record."""

    spec, settings = for_job(spec, ctx.settings)
    t_start = time.perf_counter()
    with ctx.timed("data"):
        data_report = ensure_data(spec, settings, ctx)
    ctx.progress("model", 0, 1, force=True)
    with ctx.timed("load_model"):
        try:
            lm = load_lm(settings, spec.model, spec.revision)
        except (FileNotFoundError, OSError) as e:
            raise AnalysisFailed(f"cannot load model {spec.model!r}: {e}") from e
    ctx.progress("model", 1, 1, force=True)
    with ctx.timed("probe_set"):
        ps, ps_path = probe_set(lm, spec, settings, ctx, force=ctx.force)
    langs = job_languages(spec)
    profiles: dict[str, LanguageProfile] = {}
    with ctx.timed("profiles"):
        for i, code in enumerate(langs):
            ctx.check("profiling")
            profiles[code] = profile_language(lm, code, settings, ctx, sub=(i, len(langs)))
    layers = window_layers(lm, spec.window)
    with ctx.timed("probe_activations"):
        acts, acts_path = probe_acts(lm, ps, layers, spec, settings, ctx, force=ctx.force)
    with ctx.timed("rank"):
        ranking = rank(lm, profiles, acts, layers, ps, spec, ctx)
    with ctx.timed("validate"):
        kept = ps.words if ps.filter == "gold" else []
        ranking.update(validate(ranking, spec, settings, ctx, lm, kept=kept))
    ctx.check("publish")
    # auto serves a ranking only while the worker serves the weights it was made on (services.api.services.
    # weights): a ranking of other weights would be re-analysed, and published stale, again and again
    worker_weights = (ranking.get("validation") or {}).get("worker_weights") or check_worker_weights(
        settings, lm, "published ranking", needs_worker=False
    )
    request = spec.as_dict()
    config = config_fingerprint(request)
    provenance = {
        "model_id": lm.model_id,
        "weight_hash": lm.weight_hash,
        "worker_weights": worker_weights,
        "loaded_revision": lm.revision,
        "probe_hash": ps.hash,
        "probe_size": len(ps),
        "gold_filtered": ps.gold_filtered,
        "probe_filter": ps.filter,
        "probe_tried": ps.tried,
        "probe_kept": ps.kept,
        "job_id": ctx.job_id,
        "request": request,
        "layers": layers,
        "config": config,
        "data": {k: data_report[k] for k in ("built", "reused", "seconds", "skipped") if k in data_report},
    }
    ranking = {
        **ranking,
        "source": spec.source,
        "target": spec.target,
        "provenance": {**(ranking.get("provenance") or {}), **provenance},
    }
    folder = model_root(settings, lm) / "rankings" / f"{spec.source}-{spec.target}"
    rank_path = folder / f"ranking-{ps.hash}-{_short(request)}.json"
    atomic_write_text(rank_path, json.dumps(ranking, ensure_ascii=False, indent=1, default=str))
    key = None
    if publish and redis is not None:
        key = BridgeStore(redis).publish(
            ranking,
            model=spec.model or settings.model,
            revision=spec.revision,
            config=config,
            params=method_params(request),
            source=spec.source,
            target=spec.target,
            probe_hash=ps.hash,
            method_version=spec.method_version or METHOD_VERSION,
        )
    ctx.progress("publish", 1, 1, force=True)
    ctx.timings["total"] = time.perf_counter() - t_start
    best, score = best_of(ranking)
    summary = [
        {"code": c.get("code"), "score": c.get("score"), "rank": c.get("rank")} for c in ranking.get("ranked", [])
    ]
    return {
        "best": best,
        "score": score,
        "served": ranking["served"],
        "ranking": summary,
        "cache_key": key,
        "config": config,
        "probe_hash": ps.hash,
        "probe_size": len(ps),
        "probe_filter": ps.filter,
        "probe_counts": ranking.get("probe_counts"),
        "layers": layers,
        "data": provenance["data"],
        "dev": (ranking.get("validation") or {}).get("scores"),
        "artifacts": {
            "ranking": str(rank_path),
            "probes": str(ps_path),
            "activations": str(acts_path),
            "root": str(model_root(settings, lm)),
        },
        "timings_s": {k: round(v, 3) for k, v in ctx.timings.items()},
    }
