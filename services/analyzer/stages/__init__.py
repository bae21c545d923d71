"""The stages of an analysis, as plain functions (Celery tasks and scripts/real_analysis.py call them).

data -> model -> probe set (per pair) -> profiles (per language, reused across pairs) -> probe activations
-> rank -> validate -> publish, one module per stage. Artifacts live under `settings.artifacts_path/<model-slug>/`,
written atomically (bridgex.atomic), each reused when its manifest says it was built from the same model
weights, data and parameters:

    profiles/<params>/profile-<lang>.{safetensors,json}     params: chunk_tokens, max_tokens
    probes/<src>-<tgt>/probes-<params>.json                 params: gold filter, caps, dictionary hash
    acts/<src>-<tgt>/acts-<probe_hash>-<reduce>-<layers>.{safetensors,json}
    rankings/<src>-<tgt>/ranking-<probe_hash>-<params>.json
"""

from services.analyzer.config import AnalyzerSettings
from services.analyzer.stages.activations import activations_only, probe_acts, window_layers
from services.analyzer.stages.common import load_lm, model_root, model_slug
from services.analyzer.stages.context import SHUTDOWN, WEIGHTS, AnalysisFailed, JobContext
from services.analyzer.stages.data import ensure_data, job_languages, job_pairs
from services.analyzer.stages.job import run_analysis
from services.analyzer.stages.probes import check_worker_weights, dictionary, probe_set, probe_set_only
from services.analyzer.stages.profiles import monolingual, profile_language, profile_one
from services.analyzer.stages.rank import rank
from services.analyzer.stages.validate import validate

__all__ = [
    "SHUTDOWN",
    "WEIGHTS",
    "AnalysisFailed",
    "AnalyzerSettings",
    "JobContext",
    "activations_only",
    "check_worker_weights",
    "dictionary",
    "ensure_data",
    "job_languages",
    "job_pairs",
    "load_lm",
    "model_root",
    "model_slug",
    "monolingual",
    "probe_acts",
    "probe_set",
    "probe_set_only",
    "profile_language",
    "profile_one",
    "rank",
    "run_analysis",
    "validate",
    "window_layers",
]
