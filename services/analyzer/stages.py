"""The stages of an analysis, as plain functions (Celery tasks and scripts/real_analysis.py call them).

probe set (per pair) -> profiles (per language, reused across pairs) -> probe activations -> rank -> publish.
Artifacts live under `settings.artifacts_path/<model-slug>/`, written atomically (bridgex.artifacts), each
reused when its manifest says it was built from the same model weights, data and parameters:

    profiles/<params>/profile-<lang>.{safetensors,json}     params: chunk_tokens, max_tokens
    probes/<src>-<tgt>/probes-<params>.json                 params: gold filter, caps, dictionary hash
    acts/<src>-<tgt>/acts-<probe_hash>-<reduce>-<layers>.{safetensors,json}
    rankings/<src>-<tgt>/ranking-<probe_hash>-<params>.json
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridgex.cancel import Cancelled, check_cancel

from services.common.analysis import AnalysisSpec

from .config import AnalyzerSettings

log = logging.getLogger(__name__)


class AnalysisFailed(Exception):
    """A failure a person can act on (bad data, too few probes, worker down); the message says what to do."""


# Overall percent per stage: (start, end). Profiles dominate on CPU. The probe set comes first: it is cheap
# and the likeliest to fail (small dictionary, gold filter), so a doomed job fails before the costly profiles.
WEIGHTS = {"data": (0, 5), "model": (5, 8), "probes": (8, 25), "profile": (25, 60), "activations": (60, 78),
           "rank": (78, 82), "validate": (82, 98), "publish": (98, 100)}


@dataclass
class JobContext:
    """Progress and cooperative cancel for one run; also usable without a job (scripts): job_id=None."""

    settings: AnalyzerSettings
    job_id: str | None = None
    store: Any = None
    request_id: str | None = None
    force: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    on_progress: Callable[[str, int, int, float], None] | None = None
    _last_check: float = 0.0
    _last_report: float = 0.0
    _cancelled: bool = False

    def should_cancel(self) -> bool:
        """Checked between batches and layers; reads the Redis flag at most every 0.2 s."""
        if self._cancelled:
            return True
        if self.store is None or self.job_id is None:
            return False
        now = time.monotonic()
        if now - self._last_check < 0.2:
            return False
        self._last_check = now
        try:
            self._cancelled = bool(self.store.cancel_requested(self.job_id))
        except Exception as e:  # Redis blip: keep working, read the flag again next time
            log.warning("job %s: cannot read the cancel flag: %s", self.job_id, e)
        return self._cancelled

    def check(self, where: str) -> None:
        check_cancel(self.should_cancel, f"cancelled during {where}")

    def progress(self, stage: str, current: int, total: int, *, sub: tuple[int, int] | None = None,
                 force: bool = False) -> None:
        """Stage progress; `sub` = (index, count) spreads a stage over several items (languages)."""
        lo, hi = WEIGHTS.get(stage, (0, 100))
        frac = (current / total) if total else 0.0
        if sub is not None:
            frac = (sub[0] + frac) / max(1, sub[1])
        pct = lo + (hi - lo) * min(1.0, frac)
        if self.on_progress is not None:
            self.on_progress(stage, current, total, pct)
        now = time.monotonic()
        if self.store is None or self.job_id is None or (not force and now - self._last_report < 0.25):
            return
        self._last_report = now
        try:
            self.store.progress(self.job_id, stage, current, total, percent=pct)
        except Exception as e:  # progress is advisory: a Redis blip must not kill an hour of profiling
            log.warning("job %s: cannot record progress: %s", self.job_id, e)

    def timed(self, name: str) -> _Timer:
        return _Timer(self, name)


class _Timer:
    def __init__(self, ctx: JobContext, name: str) -> None:
        self.ctx, self.name = ctx, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.ctx.timings[self.name] = self.ctx.timings.get(self.name, 0.0) + time.perf_counter() - self.t0


# ----------------------------------------------------------------------------------------------- helpers


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "model"


def model_slug(lm: Any) -> str:
    """Folder name of a model: its name (last path part) + revision; a path never leaks into the tree."""
    name = Path(str(lm.model_id)).name if "/" in str(lm.model_id) else str(lm.model_id)
    return f"{slug(name)}@{slug(str(lm.revision))}"


def model_root(settings: AnalyzerSettings, lm: Any) -> Path:
    return Path(settings.artifacts_path) / model_slug(lm)


def _short(obj: Any) -> str:
    from bridgex.artifacts import sha256_json

    return sha256_json(obj)[:12]


def load_lm(settings: AnalyzerSettings, model: str | None = None, revision: str | None = None) -> Any:
    from .models import configure_capture, get_model

    configure_capture(settings)
    return get_model(model or settings.model, revision=revision or settings.model_revision,
                     device=settings.device, dtype=settings.dtype, keep=settings.models_kept)


def data_layout(settings: AnalyzerSettings) -> Any:
    from bridgex.data.layout import DataLayout

    return DataLayout(settings.data_path)


# ----------------------------------------------------------------------------------------------- data


def job_languages(spec: AnalysisSpec) -> list[str]:
    """Languages whose profiles the ranking needs: the pair, the candidates, and for LAPE its fixed set."""
    langs = [spec.source, spec.target, *spec.candidates]
    if spec.selection == "lape":
        langs += list(spec.lape_languages or ())
    return list(dict.fromkeys(langs))


def job_pairs(spec: AnalysisSpec) -> list[tuple[str, str]]:
    """Dictionaries the job reads: the pair (probes, dev words) and source->bridge for every bridge the dev
    validation may measure with demonstrations (the candidates, and English, which it always measures)."""
    from bridgex.demos import demo_pairs

    bridges = [*spec.candidates, *(["en"] if "en" not in (spec.source, spec.target) else [])]
    return demo_pairs(spec.source, spec.target, list(dict.fromkeys(bridges)))


def ensure_data(spec: AnalysisSpec, settings: AnalyzerSettings, ctx: JobContext | None = None) -> dict[str, Any]:
    """The data stage: gather what this job reads and is not in the data directory yet (only those sources,
    under the data directory's lock, so two jobs never prepare the same data at once)."""
    from bridgex.data.ensure import ensure_data as ensure
    from bridgex.data.ensure import missing_data
    from bridgex.data.prepare import PrepareConfig, PrepareError

    ctx = ctx or JobContext(settings=settings)
    ctx.progress("data", 0, 1, force=True)
    if not settings.data_auto:
        langs, pairs = missing_data(settings.data_path, job_pairs(spec), job_languages(spec))
        return {"skipped": "data_auto is off", "missing_pairs": [f"{s}-{t}" for s, t in pairs],
                "missing_languages": langs}
    try:
        report = ensure(PrepareConfig(data_dir=settings.data_path), job_pairs(spec), job_languages(spec),
                        log=log.info, progress=lambda cur, tot: ctx.progress("data", cur, tot))
    except PrepareError as e:
        raise AnalysisFailed(f"could not gather the data for {spec.source}-{spec.target}: {e}") from e
    ctx.progress("data", 1, 1, force=True)
    return report


# ----------------------------------------------------------------------------------------------- profiles


def monolingual(settings: AnalyzerSettings, language: str) -> list[str]:
    try:
        texts = list(data_layout(settings).monolingual(language))
    except FileNotFoundError as e:
        raise AnalysisFailed(
            f"no monolingual text for {language!r} under {settings.data_path} ({e}); run "
            f"`bridgex data prepare` or add the text file, or drop {language!r} from the candidates") from e
    if not any(t.strip() for t in texts):
        raise AnalysisFailed(f"the monolingual text of {language!r} under {settings.data_path} is empty")
    return texts


def profile_language(lm: Any, language: str, settings: AnalyzerSettings, ctx: JobContext | None = None, *,
                     sub: tuple[int, int] = (0, 1), force: bool = False) -> Any:
    """The LanguageProfile of `language` for `lm`: reused from disk when model weights, text and parameters
    match, else computed (cancel checked between batches) and written atomically."""
    from bridgex import artifacts, pipeline

    ctx = ctx or JobContext(settings=settings)
    texts = monolingual(settings, language)
    params = {"chunk_tokens": settings.chunk_tokens, "max_tokens": settings.profile_max_tokens}
    folder = model_root(settings, lm) / "profiles" / _short(params)
    dhash = artifacts.sha256_texts(texts)
    name = artifacts.profile_name(language)
    if not force:
        try:
            prof = artifacts.load_profile(folder, name)
            meta = prof.meta or {}
            if meta.get("data_hash") == dhash and meta.get("weight_hash") == lm.weight_hash:
                ctx.progress("profile", 1, 1, sub=sub)
                return prof
        except (FileNotFoundError, artifacts.ArtifactError, KeyError, ValueError):
            pass
    pipeline.profile_language(lm, texts, language, settings, folder,
                              progress=lambda cur, tot: ctx.progress("profile", cur, tot, sub=sub),
                              should_cancel=ctx.should_cancel, name=name)
    return artifacts.load_profile(folder, name)


def profile_one(language: str, settings: AnalyzerSettings, *, force: bool = False) -> dict[str, Any]:
    """Task body of `bridgex.profile_language`."""
    from bridgex.languages import normalize_code

    lm = load_lm(settings)
    code = normalize_code(language)
    prof = profile_language(lm, code, settings, force=force)
    return {"language": code, "n_tokens": prof.n_tokens, "model": lm.model_id, "revision": lm.revision}


# ----------------------------------------------------------------------------------------------- probes


def dictionary(settings: AnalyzerSettings, source: str, target: str) -> Any:
    """Word pairs for probing (the "probe" part: the evaluation's words stay unseen)."""
    try:
        return data_layout(settings).dictionary(source, target, "probe")
    except FileNotFoundError as e:
        raise AnalysisFailed(f"no {source}-{target} probe dictionary: {e}" + (
            "" if settings.data_auto else " (BRIDGEX_DATA_AUTO is off: set it to gather the data on first need)")
        ) from e


def check_worker_weights(settings: AnalyzerSettings, lm: Any, what: str) -> str:
    """Refuse a generation worker that serves other weights than the analysis loaded: the gold filter and the
    dev validation would measure another model than the one profiled. Returns "verified", or "unverified"
    when the worker does not say which weights it serves (a vLLM server not started by our launcher)."""
    import asyncio

    from bridgex.client import GenerationClient, GenerationError

    async def go() -> dict[str, Any] | None:
        async with GenerationClient(settings.worker_url, timeout=10, retries=settings.worker_retries,
                                    api_key=settings.worker_key) as c:
            return await c.identity()

    try:
        ident = asyncio.run(go())
    except GenerationError as e:
        raise AnalysisFailed(f"the {what} cannot reach the generation worker at {settings.worker_url} "
                             f"({type(e).__name__}: {e}); start the worker (`make run`)") from e
    if ident is None:
        log.warning("worker %s does not say which weights it serves; the %s cannot check them",
                    settings.worker_url, what)
        return "unverified"
    theirs, ours = str(ident.get("weight_hash") or "unknown"), str(lm.weight_hash)
    same = (theirs == ours) if "unknown" not in (theirs, ours) else (
        ident.get("model_id") == lm.model_id and ident.get("revision") == lm.revision)
    if not same:
        raise AnalysisFailed(
            f"the generation worker at {settings.worker_url} serves {ident.get('model_id')} "
            f"(revision {ident.get('revision')}, weights {theirs[:12]}), but this analysis loaded {lm.model_id} "
            f"(revision {lm.revision}, weights {ours[:12]}): the {what} would measure another model. Point "
            "BRIDGEX_MODEL (and BRIDGEX_MODEL_REVISION) of the worker and the analyzer at the same folder or "
            "hub id + revision.")
    return "verified"


def probe_set(lm: Any, spec: AnalysisSpec, settings: AnalyzerSettings, ctx: JobContext | None = None, *,
              force: bool = False) -> tuple[Any, Path]:
    """Build (or reuse) the pair's probe set. The gold filter runs against settings.worker_url."""
    from bridgex.artifacts import sha256_json
    from bridgex.demos import word_demos
    from bridgex.probes import ProbeSet, ProbeSetError, build_probe_set

    ctx = ctx or JobContext(settings=settings)
    src, tgt = spec.source, spec.target
    d = dictionary(settings, src, tgt)
    pairs = [(p.source, p.target) for p in d.pairs] if hasattr(d, "pairs") else list(d)
    k = int(spec.gold_filter_k or 0) if spec.gold_filter else 0
    demos = word_demos(str(settings.data_path), src, tgt, None, k, "")[1] if k else []
    params = {"gold_filter": bool(spec.gold_filter), "probe_max": int(spec.probe_max),
              "probe_min": int(spec.probe_min), "dictionary": sha256_json(sorted(pairs))[:16],
              "filter_model": lm.weight_hash if spec.gold_filter else None,
              "filter_demos": [[x.source_text, x.target_text] for x in demos],
              "fallback": spec.probe_fallback}
    path = model_root(settings, lm) / "probes" / f"{src}-{tgt}" / f"probes-{_short(params)}.json"
    if path.exists() and not force:
        try:
            ps = ProbeSet.load(path)
            ctx.progress("probes", 1, 1)
            return ps, path
        except (ProbeSetError, ValueError) as e:
            log.warning("rebuilding unreadable probe set %s: %s", path, e)
    if params["gold_filter"]:
        check_worker_weights(settings, lm, "gold filter")
    try:
        ps = build_probe_set(
            pairs, src, tgt, gold_filter=params["gold_filter"], worker_url=settings.worker_url,
            model=settings.served_model_name, probe_max=params["probe_max"], probe_min=params["probe_min"],
            demos=demos, fallback=params["fallback"], concurrency=settings.gold_filter_concurrency,
            timeout=settings.gold_filter_timeout_s, retries=settings.worker_retries, api_key=settings.worker_key,
            request_id=ctx.request_id, should_cancel=ctx.should_cancel,
            progress=lambda cur, tot: ctx.progress("probes", cur, tot),
        )
    except ProbeSetError as e:
        raise AnalysisFailed(str(e)) from e
    except Cancelled:
        raise
    except Exception as e:
        from bridgex.client import GenerationError

        if isinstance(e, GenerationError):
            raise AnalysisFailed(
                f"the gold filter could not use the generation worker at {settings.worker_url} "
                f"({type(e).__name__}: {e}); start the worker, or submit with gold_filter=false") from e
        raise
    ps.params = {**ps.params, **params}
    ps.save(path)
    return ps, path


def probe_set_only(spec: AnalysisSpec, settings: AnalyzerSettings, *, force: bool = False) -> dict[str, Any]:
    lm = load_lm(settings, spec.model, spec.revision)
    ps, path = probe_set(lm, spec, settings, force=force)
    return {"path": str(path), "probe_hash": ps.hash, "size": len(ps)}


# ----------------------------------------------------------------------------------------------- activations


def window_layers(lm: Any, window: list[float] | tuple[float, float]) -> list[int]:
    from bridgex.ranking import window_layers as wl

    return list(wl(lm.num_layers, (float(window[0]), float(window[1]))))


def probe_acts(lm: Any, ps: Any, layers: list[int], spec: AnalysisSpec, settings: AnalyzerSettings,
               ctx: JobContext | None = None, *, force: bool = False) -> tuple[Any, Path]:
    """A[l, j, n] over the window layers for the probe prompts; reused from disk by probe hash."""
    from bridgex import artifacts, pipeline

    ctx = ctx or JobContext(settings=settings)
    folder = model_root(settings, lm) / "acts" / f"{ps.source}-{ps.target}"
    name = f"acts-{ps.hash}-{spec.reduce}-{_short(layers)}"
    if not force:
        try:
            acts, got_layers, manifest = artifacts.load_probe_acts(folder, name)
            if got_layers == layers and manifest.get("weight_hash") == lm.weight_hash:
                ctx.progress("activations", 1, 1)
                return acts, folder / name
        except (FileNotFoundError, artifacts.ArtifactError, KeyError, ValueError):
            pass
    pipeline.probe_language_pair(
        lm, ps.prompts, layers, spec.reduce, folder, name, batch_size=max(1, 2 * settings.batch_size),
        progress=lambda cur, tot: ctx.progress("activations", cur, tot), should_cancel=ctx.should_cancel,
        probe_hash=ps.hash, extra={"source": ps.source, "target": ps.target}, backend=settings.capture_backend,
    )
    acts, _, _ = artifacts.load_probe_acts(folder, name)
    return acts, folder / name


def activations_only(spec: AnalysisSpec, settings: AnalyzerSettings, *, force: bool = False) -> dict[str, Any]:
    lm = load_lm(settings, spec.model, spec.revision)
    ps, _ = probe_set(lm, spec, settings)
    layers = window_layers(lm, spec.window)
    acts, path = probe_acts(lm, ps, layers, spec, settings, force=force)
    return {"path": str(path), "probe_hash": ps.hash, "layers": layers, "shape": list(acts.shape)}


# ----------------------------------------------------------------------------------------------- ranking


def rank(lm: Any, profiles: dict[str, Any], acts: Any, layers: list[int], ps: Any, spec: AnalysisSpec,
         ctx: JobContext) -> dict[str, Any]:
    """bridgex.pipeline.rank_pair with the request's parameters (cancel checked between layers)."""
    from bridgex import pipeline

    src, tgt = spec.source, spec.target
    ranking = pipeline.rank_pair(
        profiles, acts, layers, src, tgt, list(spec.candidates), settings=ctx.settings,
        selection=spec.selection, top_rate=float(spec.top_rate), bridge_set_kind=spec.bridge_set,
        k=int(spec.k), hsic_variant=spec.hsic_variant, lape_languages=spec.lape_languages,
        lape_ratio=spec.lape_ratio, lape_quantile=spec.lape_quantile,
        full_fraction=spec.full_fraction,
        provenance={"model_id": lm.model_id, "revision": lm.revision, "probe_hash": ps.hash,
                    "method_version": spec.method_version},
        progress=lambda cur, tot: ctx.progress("rank", cur, tot), should_cancel=ctx.should_cancel,
        device=lm.device,  # HSIC where the model is: the GPU when there is one
    )
    out = ranking.model_dump(mode="json")
    out["params"] = {**out.get("params", {}), "window": list(spec.window), "reduce": spec.reduce,
                     "gold_filter": spec.gold_filter, "gold_filter_k": spec.gold_filter_k,
                     "probe_fallback": spec.probe_fallback}
    out["probe_filter"] = ps.filter
    out["probe_counts"] = {"size": len(ps), "tried": ps.tried, "kept": ps.kept, "errors": ps.errors,
                           "available": ps.available}
    if out.get("best") is None:
        raise AnalysisFailed(
            f"no candidate could be scored for {src}->{tgt}: the pair's shared neurons "
            f"{ranking.pair_set_sizes} or the bridge sets are empty in every window layer {layers}. "
            f"Try selection='lape' or a larger top_rate, bridge_set='full', or a wider window.")
    return out


# ----------------------------------------------------------------------------------------------- validation


def validate(ranking: dict[str, Any], spec: AnalysisSpec, settings: AnalyzerSettings, ctx: JobContext,
             lm: Any = None) -> dict[str, Any]:
    """Measure the dev split and decide what `auto` serves (bridgex.serving). Returns {"served", "validation"}.

    Only the "validated" policy measures; "hsic" serves the argmax as the paper. Too few dev words: nothing is
    measured and "validated" serves none (it cannot show a bridge is not worse than no bridge)."""
    import asyncio

    from bridgex.client import GenerationClient, GenerationError
    from bridgex.serving import choose, validation_conditions

    from .validation import ValidationFailed, dev_words, measure

    src, tgt, policy = spec.source, spec.target, spec.serve_policy
    order = [c["code"] for c in sorted(ranking.get("ranked", []), key=lambda c: c.get("rank", 0))
             if c.get("score") is not None]
    info: dict[str, Any] = {"policy": policy, "k_shot": int(spec.k_shot or 0)}
    dev = None
    if policy == "validated":
        try:
            words = dev_words(str(settings.data_path), src, tgt, int(spec.dev_size or settings.dev_size))
        except FileNotFoundError:
            words = []
        info["dev_words"] = len(words)
        if len(words) < int(spec.dev_min or settings.dev_min):
            info["skipped"] = f"only {len(words)} dev words (dev_min {spec.dev_min})"
        else:
            conditions = validation_conditions(order, int(spec.validate_top_m or 2), src, tgt)
            if lm is not None:
                info["worker_weights"] = check_worker_weights(settings, lm, "dev validation")

            async def go() -> Any:
                async with GenerationClient(settings.worker_url, model=settings.served_model_name,
                                            timeout=settings.gold_filter_timeout_s,
                                            retries=settings.worker_retries,
                                            concurrency=settings.gold_filter_concurrency,
                                            api_key=settings.worker_key) as client:
                    return await measure(client, words, src, tgt, conditions, data_root=str(settings.data_path),
                                         k_shot=info["k_shot"], concurrency=settings.gold_filter_concurrency,
                                         progress=lambda cur, tot: ctx.progress("validate", cur, tot),
                                         check=lambda: ctx.check("validation"))

            try:
                dev, notes = asyncio.run(go())
            except (GenerationError, ValidationFailed) as e:
                raise AnalysisFailed(
                    f"the dev validation could not use the generation worker at {settings.worker_url} "
                    f"({type(e).__name__}: {e}); start the worker, or submit with serve_policy=hsic") from e
            info.update({"conditions": conditions, "notes": notes,
                         "scores": {c: v.model_dump(mode="json") for c, v in dev.items()}})
    ctx.progress("validate", 1, 1, force=True)
    served = choose(policy, order, dev, margin=int(spec.serve_margin or 1))
    return {"served": served.model_dump(mode="json"), "validation": info}


# ----------------------------------------------------------------------------------------------- whole job


def run_analysis(spec: AnalysisSpec, ctx: JobContext, *, redis: Any = None,
                 publish: bool = True) -> dict[str, Any]:
    """The whole job on one process. Returns the small result stored in the job record."""
    from bridgex import METHOD_VERSION
    from bridgex.atomic import atomic_write_text
    from bridgex.fingerprint import config_fingerprint, method_params

    from services.common.bridges import BridgeStore, best_of

    settings = ctx.settings
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
    profiles: dict[str, Any] = {}
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
        ranking.update(validate(ranking, spec, settings, ctx, lm))
    ctx.check("publish")
    request = spec.as_dict()
    config = config_fingerprint(request)
    provenance = {"model_id": lm.model_id, "weight_hash": lm.weight_hash, "loaded_revision": lm.revision,
                  "probe_hash": ps.hash, "probe_size": len(ps), "gold_filtered": ps.gold_filtered,
                  "probe_filter": ps.filter, "probe_tried": ps.tried, "probe_kept": ps.kept,
                  "job_id": ctx.job_id, "request": request, "layers": layers, "config": config,
                  "data": {k: data_report[k] for k in ("built", "reused", "seconds", "skipped") if k in data_report}}
    ranking = {**ranking, "source": spec.source, "target": spec.target,
               "provenance": {**(ranking.get("provenance") or {}), **provenance}}
    folder = model_root(settings, lm) / "rankings" / f"{spec.source}-{spec.target}"
    rank_path = folder / f"ranking-{ps.hash}-{_short(request)}.json"
    atomic_write_text(rank_path, json.dumps(ranking, ensure_ascii=False, indent=1, default=str))
    key = None
    if publish and redis is not None:
        key = BridgeStore(redis).publish(
            ranking, model=spec.model or settings.model, revision=spec.revision, config=config,
            params=method_params(request), source=spec.source, target=spec.target, probe_hash=ps.hash,
            method_version=spec.method_version or METHOD_VERSION)
    ctx.progress("publish", 1, 1, force=True)
    ctx.timings["total"] = time.perf_counter() - t_start
    best, score = best_of(ranking)
    summary = [{"code": c.get("code"), "score": c.get("score"), "rank": c.get("rank")}
               for c in ranking.get("ranked", [])]
    return {
        "best": best, "score": score, "served": ranking["served"], "ranking": summary, "cache_key": key,
        "config": config, "probe_hash": ps.hash, "probe_size": len(ps), "probe_filter": ps.filter,
        "probe_counts": ranking.get("probe_counts"), "layers": layers, "data": provenance["data"],
        "dev": (ranking.get("validation") or {}).get("scores"),
        "artifacts": {"ranking": str(rank_path), "probes": str(ps_path), "activations": str(acts_path),
                      "root": str(model_root(settings, lm))},
        "timings_s": {k: round(v, 3) for k, v in ctx.timings.items()},
    }
