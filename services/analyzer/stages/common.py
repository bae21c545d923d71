"""Where a model's artifacts live, the model loaded for a job, the data directory's layout, and who answers the
analyzer's own generation requests (the worker, or the analyzer's own model)."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bridgex.artifacts import sha256_json
from bridgex.data.layout import DataLayout
from bridgex.generation.client import GenerationClient
from bridgex.generation.local import LocalEngine
from bridgex.models import LoadedModel

from services.analyzer.config import AnalyzerSettings
from services.analyzer.models import configure_capture, get_model
from services.analyzer.stages.context import AnalysisFailed
from services.common.analysis import AnalysisSpec

log = logging.getLogger(__name__)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "model"


def model_slug(lm: LoadedModel) -> str:
    """Folder name of a model: its name (last path part) + revision; a path never leaks into the tree."""
    name = Path(str(lm.model_id)).name if "/" in str(lm.model_id) else str(lm.model_id)
    return f"{slug(name)}@{slug(str(lm.revision))}"


def model_root(settings: AnalyzerSettings, lm: LoadedModel) -> Path:
    return Path(settings.artifacts_path) / model_slug(lm)


def _short(obj: Any) -> str:
    return sha256_json(obj)[:12]


ENGINE_PARAMS = ("batch_size", "chunk_tokens", "profile_max_tokens")
"""Method parameters of the spec that the method modules read from settings (bridgex.pipeline)."""


def for_job(spec: AnalysisSpec, settings: AnalyzerSettings) -> tuple[AnalysisSpec, AnalyzerSettings]:
    """The job's spec with what an older queued job left out taken from this analyzer's settings (so what is
    published says what was run), and the settings with the spec's parameters (so what runs is what the
    fingerprint says). The capture backend is this process's engine: a job that asks for another one fails."""
    if spec.capture_backend not in (None, settings.capture_backend):
        raise AnalysisFailed(
            f"the job asks for capture backend {spec.capture_backend!r}; this analyzer captures with "
            f"{settings.capture_backend!r} (BRIDGEX_CAPTURE_BACKEND): the gateway and the analyzer disagree"
        )
    filled = {
        name: getattr(settings, name) for name in ("capture_backend", *ENGINE_PARAMS) if getattr(spec, name) is None
    }
    spec = dataclasses.replace(spec, **filled) if filled else spec
    update = {name: getattr(spec, name) for name in ENGINE_PARAMS if getattr(spec, name) != getattr(settings, name)}
    return spec, (settings.model_copy(update=update) if update else settings)


def load_lm(settings: AnalyzerSettings, model: str | None = None, revision: str | None = None) -> LoadedModel:
    configure_capture(settings)
    return get_model(
        model or settings.model,
        revision=revision or settings.model_revision,
        device=settings.device,
        dtype=settings.dtype,
        keep=settings.models_kept,
    )


def data_layout(settings: AnalyzerSettings) -> DataLayout:
    return DataLayout(settings.data_path)


def measuring_client(settings: AnalyzerSettings) -> GenerationClient:
    """The worker client of the gold filter and the dev validation: their per-request timeout and concurrency
    (a busy worker slows them down instead of failing them)."""
    return GenerationClient.from_settings(
        settings, timeout=settings.gold_filter_timeout_s, concurrency=settings.gold_filter_concurrency
    )


def dtype_name(lm: LoadedModel) -> str:
    """The loaded model's dtype as the worker's identity names it ("float32", "bfloat16")."""
    return str(getattr(lm.model, "dtype", "")).removeprefix("torch.")


def measuring_engine(settings: AnalyzerSettings, lm: LoadedModel | None, identity: dict[str, Any] | None) -> str:
    """Who answers the gold filter and the dev validation: "local" (the analyzer's own model, bridgex.generation.
    local) when `measure_engine` is local and the worker said it serves these weights (`identity`, checked by
    stages.probes.worker_check) in the loaded model's dtype, float32, so the greedy answers are the served
    model's (docs/results.md run 16 compares them word for word); else "worker"."""
    if settings.measure_engine != "local" or lm is None or not identity:
        return "worker"
    theirs = identity.get("dtype")
    if theirs != dtype_name(lm) or theirs != "float32":
        # in 16-bit types two kernels' rounding flips near-tied greedy choices too often to stand for the worker
        log.info("the worker serves %s, the analyzer loaded %s: the worker measures", theirs, dtype_name(lm))
        return "worker"
    return "local"


@asynccontextmanager
async def measurer(settings: AnalyzerSettings, lm: LoadedModel | None, engine: str) -> AsyncIterator[Any]:
    """The client `engine` names (measuring_engine), open: either answers `complete` alike."""
    if engine == "local" and lm is not None:
        async with LocalEngine(lm.model, lm.tokenizer, max_batch=settings.local_batch, name=lm.model_id) as e:
            yield e
    else:
        async with measuring_client(settings) as c:
            yield c


def measuring_concurrency(settings: AnalyzerSettings, engine: str) -> int:
    """Requests in flight: the local engine's batch, or the worker's batch size."""
    return settings.local_batch if engine == "local" else settings.gold_filter_concurrency
