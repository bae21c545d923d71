"""Render `vllm serve` arguments from BridgeX settings, so CPU and GPU workers serve the same model name.

Why `--generation-config vllm`: otherwise vLLM applies the model's generation_config.json as default sampling
parameters, and a request that leaves e.g. top_k unset would sample differently on GPU than on our CPU worker.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from bridgex.settings import DEFAULT_MODEL, Settings

DEFAULT_HUB_ID = "google/gemma-3-270m"
"""What the offline alias means to vLLM (GPU images download or mount it; CPU builds it from a wheel)."""
_ALIASES = {DEFAULT_MODEL, "default"}


def _host_port(settings: Settings, host: str | None, port: int | None) -> tuple[str, int]:
    url = urlparse(settings.worker_url)
    host = host or os.environ.get("BRIDGEX_WORKER_HOST") or "0.0.0.0"
    port = port or int(os.environ.get("BRIDGEX_WORKER_PORT") or url.port or 8001)
    return host, port


def render_vllm_args(settings: Settings, *, host: str | None = None, port: int | None = None) -> list[str]:
    """Arguments after `vllm` (start with `serve`): model, served name, context, greedy defaults, host/port.

    Host/port come from the arguments, else BRIDGEX_WORKER_HOST / BRIDGEX_WORKER_PORT, else worker_url's port.
    """
    model = DEFAULT_HUB_ID if settings.model in _ALIASES else settings.model
    served = settings.served_model_name or settings.model
    h, p = _host_port(settings, host, port)
    args = ["serve", model, "--served-model-name", served, "--generation-config", "vllm",
            "--host", h, "--port", str(p), "--max-num-seqs", str(settings.max_batch_size)]
    if settings.max_model_len:
        args += ["--max-model-len", str(settings.max_model_len)]
    if settings.model_revision:
        args += ["--revision", settings.model_revision]
    if settings.dtype != "auto":
        args += ["--dtype", settings.dtype]
    return args
