"""The data stage: gather what a job reads (dictionaries, text) that the data directory lacks."""

from __future__ import annotations

import logging
from typing import Any

from bridgex.data.ensure import ensure_data as ensure
from bridgex.data.ensure import missing_data
from bridgex.data.prepare import PrepareConfig, PrepareError
from bridgex.demos import prime

from services.analyzer.config import AnalyzerSettings
from services.analyzer.stages.context import AnalysisFailed, JobContext
from services.common.analysis import AnalysisSpec

log = logging.getLogger(__name__)


def job_languages(spec: AnalysisSpec) -> list[str]:
    """Languages whose profiles the ranking needs (AnalysisSpec.languages; the data hash covers their text)."""
    return spec.languages()


def job_pairs(spec: AnalysisSpec) -> list[tuple[str, str]]:
    """Dictionaries the job reads (AnalysisSpec.pairs; the data hash covers them)."""
    return spec.pairs()


def ensure_data(spec: AnalysisSpec, settings: AnalyzerSettings, ctx: JobContext | None = None) -> dict[str, Any]:
    """The data stage: gather what this job reads and is not in the data directory yet (only those sources,
    under the data directory's lock, so two jobs never prepare the same data at once)."""

    ctx = ctx or JobContext(settings=settings)
    ctx.progress("data", 0, 1, force=True)
    if not settings.data_auto:
        langs, pairs = missing_data(settings.data_path, job_pairs(spec), job_languages(spec))
        return {
            "skipped": "data_auto is off",
            "missing_pairs": [f"{s}-{t}" for s, t in pairs],
            "missing_languages": langs,
        }
    try:
        report = ensure(
            PrepareConfig(data_dir=settings.data_path),
            job_pairs(spec),
            job_languages(spec),
            log=log.info,
            progress=lambda cur, tot: ctx.progress("data", cur, tot),
        )
    except PrepareError as e:
        raise AnalysisFailed(f"could not gather the data for {spec.source}-{spec.target}: {e}") from e
    # the demonstration order of what is there now (both directions), so the gateway reads it, not computes it
    prime(str(settings.data_path), job_pairs(spec))
    ctx.progress("data", 1, 1, force=True)
    return report
