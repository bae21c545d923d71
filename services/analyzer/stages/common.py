"""Where a model's artifacts live, the model loaded for a job, the data directory's layout, and the client of
the analyzer's own generation requests."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from bridgex.artifacts import sha256_json
from bridgex.data.layout import DataLayout
from bridgex.generation.client import GenerationClient
from bridgex.models import LoadedModel

from services.analyzer.config import AnalyzerSettings
from services.analyzer.models import configure_capture, get_model

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
