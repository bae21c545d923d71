"""The activation stage: A[l, j, n] of the probe prompts over the window layers, reused by probe hash."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bridgex import artifacts, pipeline
from bridgex.models import LoadedModel
from bridgex.probes import ProbeSet
from bridgex.ranking import window_layers as wl
from torch import Tensor

from services.analyzer.config import AnalyzerSettings
from services.analyzer.stages.common import _short, for_job, load_lm, model_root
from services.analyzer.stages.context import JobContext
from services.analyzer.stages.probes import probe_set
from services.common.analysis import AnalysisSpec

log = logging.getLogger(__name__)


def window_layers(lm: LoadedModel, window: list[float] | tuple[float, float]) -> list[int]:
    return list(wl(lm.num_layers, (float(window[0]), float(window[1]))))


def probe_acts(
    lm: LoadedModel,
    ps: ProbeSet,
    layers: list[int],
    spec: AnalysisSpec,
    settings: AnalyzerSettings,
    ctx: JobContext | None = None,
    *,
    force: bool = False,
) -> tuple[Tensor, Path]:
    """A[l, j, n] over the window layers for the probe prompts; reused from disk by probe hash."""

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
        lm,
        ps.prompts,
        layers,
        spec.reduce,
        folder,
        name,
        batch_size=max(1, 2 * settings.batch_size),
        progress=lambda cur, tot: ctx.progress("activations", cur, tot),
        should_cancel=ctx.should_cancel,
        probe_hash=ps.hash,
        extra={"source": ps.source, "target": ps.target},
        backend=settings.capture_backend,
    )
    acts, _, _ = artifacts.load_probe_acts(folder, name)
    return acts, folder / name


def activations_only(spec: AnalysisSpec, settings: AnalyzerSettings, *, force: bool = False) -> dict[str, Any]:
    spec, settings = for_job(spec, settings)
    lm = load_lm(settings, spec.model, spec.revision)
    ps, _ = probe_set(lm, spec, settings)
    layers = window_layers(lm, spec.window)
    acts, path = probe_acts(lm, ps, layers, spec, settings, force=force)
    return {"path": str(path), "probe_hash": ps.hash, "layers": layers, "shape": list(acts.shape)}
