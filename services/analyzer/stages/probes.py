"""The probe stage: the pair's probe set, gold-filtered by the served model: the analyzer's own copy of it where the
generation worker serves the same weights in the same dtype, else the worker."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from bridgex.artifacts import sha256_json
from bridgex.demos import word_demos
from bridgex.dictionaries import Dictionary
from bridgex.generation.client import GenerationClient, GenerationError, WorkerMismatch
from bridgex.generation.gold_filter import abuild_probe_set
from bridgex.models import LoadedModel
from bridgex.probes import ProbeSet, ProbeSetError

from services.analyzer.config import AnalyzerSettings
from services.analyzer.stages.common import (
    _short,
    data_layout,
    load_lm,
    measurer,
    measuring_concurrency,
    measuring_engine,
    model_root,
)
from services.analyzer.stages.context import AnalysisFailed, JobContext
from services.common.analysis import AnalysisSpec

log = logging.getLogger(__name__)


def dictionary(settings: AnalyzerSettings, source: str, target: str) -> Dictionary:
    """Word pairs for probing (the "probe" part: the evaluation's words stay unseen)."""
    try:
        return data_layout(settings).dictionary(source, target, "probe")
    except FileNotFoundError as e:
        raise AnalysisFailed(
            f"no {source}-{target} probe dictionary: {e}"
            + ("" if settings.data_auto else " (BRIDGEX_DATA_AUTO is off: set it to gather the data on first need)")
        ) from e


def _where(settings: AnalyzerSettings) -> str:
    """The worker URL(s) the analysis uses, for messages."""
    return ", ".join(settings.worker_endpoints)


def unverified_message(worker_url: str, what: str) -> str:
    """Why a worker that does not report its weights fails the job, and the two ways out."""
    return (
        f"the generation worker at {worker_url} does not report its weights (GET /bridgex/identity answers 404: "
        f"a plain `vllm serve`), so the {what} cannot check that it serves the weights this analysis loaded; run "
        "the worker with `python -m services.worker` (it reports them), or set BRIDGEX_ALLOW_UNVERIFIED_WORKER=true "
        "(on the analyzer and the gateway) to accept it unverified"
    )


def check_worker_weights(settings: AnalyzerSettings, lm: LoadedModel, what: str, *, needs_worker: bool = True) -> str:
    """worker_check's verdict alone: "verified", "unverified" or "unreachable"."""
    return worker_check(settings, lm, what, needs_worker=needs_worker)[0]


def worker_check(
    settings: AnalyzerSettings, lm: LoadedModel, what: str, *, needs_worker: bool = True
) -> tuple[str, dict[str, Any] | None]:
    """Refuse a generation worker that serves other weights than the analysis loaded: the gold filter and the
    dev validation would measure another model than the one profiled, and `auto` would serve the ranking of
    another model. Returns "verified", or "unreachable" when it cannot be reached and `needs_worker` is off (a
    ranking made without the worker). A worker that does not say which weights it serves (`GET /bridgex/identity`
    missing: a vLLM server not started by our launcher) fails the job, unless BRIDGEX_ALLOW_UNVERIFIED_WORKER is
    on: then it is "unverified" (and the ranking says so). With the verdict, the identity the worker reported
    when it is "verified"."""

    async def go() -> dict[str, Any] | None:
        # without needs_worker it is a question in passing: a down worker must not hold the job up
        timeout, retries = (10.0, None) if needs_worker else (3.0, 0)
        async with GenerationClient.from_settings(settings, timeout=timeout, retries=retries) as c:
            return await c.identity()

    try:
        ident = asyncio.run(go())
    except WorkerMismatch as e:  # BRIDGEX_WORKER_URLS: the filter would measure two models at once
        raise AnalysisFailed(f"the {what} cannot use the generation workers: {e}") from e
    except GenerationError as e:
        if not needs_worker:
            log.info("worker %s unreachable; the %s is published unverified: %s", _where(settings), what, e)
            return "unreachable", None
        raise AnalysisFailed(
            f"the {what} cannot reach the generation worker at {_where(settings)} "
            f"({type(e).__name__}: {e}); start the worker (`make run`)"
        ) from e
    if ident is None:
        if not settings.allow_unverified_worker:
            raise AnalysisFailed(unverified_message(_where(settings), what))
        log.warning(
            "worker %s does not say which weights it serves; the %s cannot check them "
            "(BRIDGEX_ALLOW_UNVERIFIED_WORKER is on)",
            _where(settings),
            what,
        )
        return "unverified", None
    theirs, ours = str(ident.get("weight_hash") or "unknown"), str(lm.weight_hash)
    same = (
        (theirs == ours)
        if "unknown" not in (theirs, ours)
        else (ident.get("model_id") == lm.model_id and ident.get("revision") == lm.revision)
    )
    if not same:
        raise AnalysisFailed(
            f"the generation worker at {_where(settings)} serves {ident.get('model_id')} "
            f"(revision {ident.get('revision')}, weights {theirs[:12]}), but this analysis loaded {lm.model_id} "
            f"(revision {lm.revision}, weights {ours[:12]}): the {what} would measure another model. Point "
            "BRIDGEX_MODEL (and BRIDGEX_MODEL_REVISION) of the worker and the analyzer at the same folder or "
            "hub id + revision, or restart the analyzer if the weights in that folder changed since it loaded them."
        )
    return "verified", ident


def probe_set(
    lm: LoadedModel,
    spec: AnalysisSpec,
    settings: AnalyzerSettings,
    ctx: JobContext | None = None,
    *,
    force: bool = False,
) -> tuple[ProbeSet, Path]:
    """Build (or reuse) the pair's probe set. The gold filter runs against settings.worker_endpoints."""

    ctx = ctx or JobContext(settings=settings)
    src, tgt = spec.source, spec.target
    d = dictionary(settings, src, tgt)
    pairs = [(p.source, p.target) for p in d.pairs]
    k = int(spec.gold_filter_k or 0) if spec.gold_filter else 0
    demos = word_demos(str(settings.data_path), src, tgt, None, k, "")[1] if k else []
    params = {
        "gold_filter": bool(spec.gold_filter),
        "probe_max": int(spec.probe_max),
        "probe_min": int(spec.probe_min),
        "dictionary": sha256_json(sorted(pairs))[:16],
        "filter_model": lm.weight_hash if spec.gold_filter else None,
        "filter_demos": [[x.source_text, x.target_text] for x in demos],
        "fallback": spec.probe_fallback,
    }
    path = model_root(settings, lm) / "probes" / f"{src}-{tgt}" / f"probes-{_short(params)}.json"
    if path.exists() and not force:
        try:
            ps = ProbeSet.load(path)
            ctx.progress("probes", 1, 1)
            return ps, path
        except (ProbeSetError, ValueError) as e:
            log.warning("rebuilding unreadable probe set %s: %s", path, e)
    engine = "worker"
    if params["gold_filter"]:
        engine = measuring_engine(settings, lm, worker_check(settings, lm, "gold filter")[1])

    async def build() -> ProbeSet:
        async with measurer(settings, lm, engine) as client:
            return await abuild_probe_set(
                pairs,
                src,
                tgt,
                gold_filter=params["gold_filter"],
                client=client,
                probe_max=params["probe_max"],
                probe_min=params["probe_min"],
                demos=demos,
                fallback=params["fallback"],
                concurrency=measuring_concurrency(settings, engine),
                screen_tokens=settings.screen_tokens,
                request_id=ctx.request_id,
                should_cancel=ctx.should_cancel,
                progress=lambda cur, tot: ctx.progress("probes", cur, tot),
            )

    try:
        ps = asyncio.run(build())
    except ProbeSetError as e:
        raise AnalysisFailed(str(e)) from e
    except GenerationError as e:
        if engine == "local":  # the analyzer's own model failed (memory, a bad model file): the worker may not
            raise AnalysisFailed(
                f"the gold filter failed on the analyzer's own model ({type(e).__name__}: {e}); set "
                "BRIDGEX_MEASURE_ENGINE=worker to measure through the generation worker, or submit with "
                "gold_filter=false"
            ) from e
        raise AnalysisFailed(
            f"the gold filter could not use the generation worker at {_where(settings)} "
            f"({type(e).__name__}: {e}); start the worker, or submit with gold_filter=false"
        ) from e
    ps.params = {**ps.params, **params, "engine": engine if params["gold_filter"] else None}
    ps.save(path)
    return ps, path


def probe_set_only(spec: AnalysisSpec, settings: AnalyzerSettings, *, force: bool = False) -> dict[str, Any]:
    lm = load_lm(settings, spec.model, spec.revision)
    ps, path = probe_set(lm, spec, settings, force=force)
    return {"path": str(path), "probe_hash": ps.hash, "size": len(ps)}
