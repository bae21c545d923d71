"""The shared base of every BridgeX process's settings, read from `BRIDGEX_*` environment variables (and `.env`):
the model, storage, the generation worker's address, vLLM's CPU environment and the method's parameters.

The CLI and the evaluation harness use `CoreSettings` (`get_settings()`). Each service extends it with its own
fields in its own package (services.common.config, services.api.core.config, services.analyzer.config,
services.worker.config); the method modules themselves take explicit arguments and import no settings.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridgex.languages import DEFAULT_CANDIDATES

DEFAULT_MODEL = "gemma-3-270m"
"""Alias of the default model: Gemma-3-270M base, assembled offline from its PyPI wheel (see bridgex.models)."""

DEFAULT_WINDOW = (0.3125, 0.6875)
DEFAULT_LAPE_LANGUAGES = ("en", "de", "fr", "it", "pt", "es", "zh", "ja", "ar", "he", "id", "tl", "fi", "hu", "sw")
"""The 15 paper languages: LAPE normalises over one fixed set, so T_b never depends on the pair analysed."""


def split_list(v: object) -> object:
    """A list setting from the environment: JSON (`["en","de"]`) or comma-separated (`en,de`)."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            return tuple(json.loads(text))
        return tuple(c.strip() for c in text.split(",") if c.strip())
    return v


def _home() -> Path:
    return Path.home() / ".cache" / "bridgex"


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRIDGEX_", env_file=".env", extra="ignore", protected_namespaces=())

    # --- model -------------------------------------------------------------------------------------
    model: str = Field(DEFAULT_MODEL, description="Hub id, local folder, or the alias 'gemma-3-270m'.")
    model_revision: str | None = Field(None, description="Hub revision; local folders use a weight hash.")
    device: str = Field("auto", description="'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:1'.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    log_level: str = "INFO"

    # --- storage -----------------------------------------------------------------------------------
    home: Path = Field(default_factory=_home, description="Root for caches, converted models, artifacts.")
    cache_dir: Path | None = None
    data_dir: Path | None = None
    artifacts_dir: Path | None = None

    # --- generation worker: where it is (every client) ------------------------------------------
    worker_url: str = "http://127.0.0.1:8001"
    worker_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Several generation workers (JSON list or comma-separated): clients spread over them and take "
        "the dead out; set, it wins over worker_url (which the worker launcher still reads its port from).",
    )
    worker_api_key: SecretStr | None = Field(
        None, description="Bearer key the generation worker requires (except /health); clients send it."
    )
    worker_timeout_s: float = 60.0
    worker_retries: int = 2

    # --- vLLM (the worker, and capture inside vLLM) ------------------------------------------------
    served_model_name: str | None = Field(None, description="Name in /v1/models; defaults to `model`.")
    max_model_len: int | None = Field(None, description="vLLM --max-model-len (None: 4096 on CPU, model's on GPU).")
    worker_kv_cache_gib: int = Field(1, ge=1, description="CPU: VLLM_CPU_KVCACHE_SPACE (whole GiB; vLLM reads an int).")
    worker_cpu_bind: str = Field(
        "auto",
        description="CPU: VLLM_CPU_OMP_THREADS_BIND ('auto': every CPU we "
        "may use; '' leaves vLLM's default, core 0 only).",
    )

    # --- method (method.md; DECISIONs are configurable) --------------------------------------------
    top_rate: float = 0.01
    selection: Literal["top_rate", "lape"] = "top_rate"
    bridge_set: Literal["specific", "full"] = "specific"
    bridge_k: int = 64
    window: tuple[float, float] = DEFAULT_WINDOW
    candidates: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CANDIDATES
    probe_reduce: Literal["mean", "last"] = "mean"
    gold_filter: bool = True
    probe_max: int = 500
    probe_min: int = 32
    gold_filter_k: int = Field(3, ge=0, le=16, description="Demonstrations in gold-filter prompts (DECISION).")
    gold_filter_concurrency: int = Field(
        16, ge=1, description="Gold-filter and dev-validation requests in flight at once (the worker's batch size)."
    )
    gold_filter_timeout_s: float = Field(120.0, gt=0, description="Timeout of one gold-filter request.")
    screen_tokens: int = Field(
        3,
        ge=0,
        le=15,
        description="Gold filter and dev validation: decode a word's answer for this many tokens first, and whole "
        "only when they do not decide its verdict (0: always whole). Same verdicts, fewer decode steps.",
    )
    probe_fallback: Literal["unfiltered", "fail"] = Field(
        "unfiltered", description="Below probe_min kept words: rank on unfiltered probes (labelled) or fail."
    )
    lape_languages: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_LAPE_LANGUAGES, description="The fixed language set LAPE normalises over (CLI and service)."
    )
    lape_ratio: float = Field(0.01, gt=0, le=1)
    lape_quantile: float = Field(0.95, gt=0, le=1)
    full_fraction: float = Field(0.95, gt=0, le=1, description="'full' bridge set: share of active probes.")
    serve_policy: Literal["validated", "hsic"] = Field(
        "validated", description="What auto serves: the measured best on dev words (or none), or HSIC argmax."
    )
    validate_top_m: int = Field(2, ge=1, description="HSIC candidates measured on the dev split (plus en).")
    serve_incumbent: Literal["none", "en"] = Field(
        "en",
        description="What auto serves unless a challenger beats it on the dev words (DECISION): 'none' (direct), "
        "or 'en' (English as the bridge, for pairs without English; pairs with English always start from none).",
    )
    serve_alpha: float = Field(
        0.05, gt=0, lt=0.5, description="Family-wise error rate of the serving test (one-sided sign tests, Holm)."
    )
    demo_choice: Literal["frequent", "direct", "kept"] = Field(
        "frequent",
        description="Demonstration words the analysis measures and auto serves (DECISION, bridgex.demos): "
        "most common, not pivot-composed first, or the gold filter's kept words first.",
    )
    dev_size: int = Field(100, ge=1, description="Dev words of the first look of the sequential test.")
    dev_max: int = Field(400, ge=1, description="Most dev words measured while the decision is open (later looks).")
    dev_min: int = Field(20, ge=1, description="Fewer dev words than this: no validation, auto serves none.")
    data_auto: bool = Field(True, description="Gather a pair's missing data (dictionaries, text) on first need.")
    hsic_variant: Literal["reference", "cka"] = "reference"
    capture_backend: Literal["hf", "vllm"] = Field(
        "hf", description="Activation capture engine (bridgex.capture): HF forward hooks or inside vLLM's V1 engine."
    )
    capture_tensor_parallel: int = Field(1, ge=1, description="vLLM capture: tensor-parallel ranks (GPU).")
    profile_max_tokens: int = 50_000
    batch_size: int = 8
    chunk_tokens: int = 256

    @field_validator("candidates", "lape_languages", mode="before")
    @classmethod
    def _split_codes(cls, v: object) -> object:
        return split_list(v)

    @field_validator("worker_urls", mode="before")
    @classmethod
    def _split_urls(cls, v: object) -> object:
        return split_list(v)

    @field_validator("worker_urls")
    @classmethod
    def _check_urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        urls = tuple(dict.fromkeys(u.strip().rstrip("/") for u in v if u.strip()))
        bad = [u for u in urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"worker URLs must start with http:// or https://: {bad}")
        return urls

    @property
    def worker_endpoints(self) -> tuple[str, ...]:
        """The generation workers clients use: BRIDGEX_WORKER_URLS when it names any, else BRIDGEX_WORKER_URL."""
        return self.worker_urls or (self.worker_url.rstrip("/"),)

    @property
    def worker_key(self) -> str | None:
        """The worker API key as a plain string (None: the worker is open)."""
        return self.worker_api_key.get_secret_value() if self.worker_api_key else None

    @property
    def cache_path(self) -> Path:
        return self.cache_dir or self.home / "cache"

    @property
    def data_path(self) -> Path:
        return self.data_dir or self.home / "data"

    @property
    def artifacts_path(self) -> Path:
        return self.artifacts_dir or self.home / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> CoreSettings:
    return CoreSettings()
