"""Models loaded lazily inside the worker process and kept between jobs (bounded by settings.models_kept).

Never loaded at import or in a parent before fork: CUDA cannot be re-initialised in a forked child.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported at first load, in the process that uses it
    from bridgex.models import LoadedModel

    from services.analyzer.config import AnalyzerSettings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: OrderedDict[tuple[str, str | None, str, str], LoadedModel] = OrderedDict()


def get_model(name: str, *, revision: str | None, device: str, dtype: str, keep: int) -> LoadedModel:
    """The LoadedModel for (name, revision, device, dtype); least recently used ones beyond `keep` dropped."""
    key = (name, revision, device, dtype)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        from bridgex.models import load_model

        log.info("loading model %s (revision %s) on %s", name, revision, device)
        lm = load_model(None if name in ("", "default") else name, device=device, dtype=dtype, revision=revision)
        _cache[key] = lm
        while len(_cache) > max(1, keep):
            old, _ = _cache.popitem(last=False)
            log.info("dropping model %s to stay within models_kept=%d", old, keep)
            _free()
        return lm


def configure_capture(settings: AnalyzerSettings) -> None:
    """Register the vLLM capture engine with this process's settings (once; "hf" needs nothing)."""
    if settings.capture_backend != "vllm":
        return
    from bridgex.capture import _BACKENDS, register_backend

    current = _BACKENDS.get("vllm")
    want = dict(
        tensor_parallel_size=settings.capture_tensor_parallel,
        kv_cache_gib=settings.worker_kv_cache_gib,
        cpu_bind=settings.worker_cpu_bind,
        max_model_len=settings.max_model_len or 4096,
    )
    if current is not None and all(getattr(current, k, None) == v for k, v in want.items()):
        return
    from bridgex.capture.vllm_engine import VLLMBackend

    register_backend(VLLMBackend(**want))


def _free() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # freeing memory is best effort
        pass


def loaded() -> list[tuple[str, str | None, str, str]]:
    return list(_cache)
