"""One settings object for every BridgeX process, read from `BRIDGEX_*` environment variables (and `.env`).

Services and the CLI call `get_settings()`; tests build `Settings(...)` directly or set env vars.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridgex.languages import DEFAULT_CANDIDATES

DEFAULT_MODEL = "gemma-3-270m"
"""Alias of the default model: Gemma-3-270M base, assembled offline from its PyPI wheel (see bridgex.models)."""

DEFAULT_WINDOW = (0.3125, 0.6875)
DEFAULT_LAPE_LANGUAGES = ("en", "de", "fr", "it", "pt", "es", "zh", "ja", "ar", "he", "id", "tl", "fi", "hu", "sw")
"""The 15 paper languages: LAPE normalises over one fixed set, so T_b never depends on the pair analysed."""


def _home() -> Path:
    return Path.home() / ".cache" / "bridgex"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BRIDGEX_", env_file=".env", extra="ignore", protected_namespaces=()
    )

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

    # --- infrastructure ----------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    result_backend: str | None = None
    redis_password: SecretStr | None = Field(
        None, description="Put into every redis:// URL above that carries no credentials (from a Secret).")
    worker_url: str = "http://127.0.0.1:8001"
    worker_api_key: SecretStr | None = Field(
        None, description="Bearer key the generation worker requires (except /health); clients send it.")
    worker_timeout_s: float = 60.0
    worker_retries: int = 2
    analyze_queue: str = "analyze"
    visibility_timeout_s: int = 6 * 3600
    job_ttl_s: int = 7 * 24 * 3600
    models_kept: int = Field(1, ge=1, description="Models kept loaded in an analyzer process.")
    job_lease_s: int = Field(60, ge=1, description="Lease (with heartbeat) that stops two workers running one job.")

    # --- generation worker (vLLM, launched by services.worker) -------------------------------------
    served_model_name: str | None = Field(None, description="Name in /v1/models; defaults to `model`.")
    max_batch_size: int = Field(16, ge=1, description="vLLM --max-num-seqs.")
    max_model_len: int | None = Field(None, description="vLLM --max-model-len (None: 4096 on CPU, model's on GPU).")
    max_tokens_limit: int = Field(512, ge=1, description="Gateway: largest max_tokens a client may ask for.")
    worker_kv_cache_gib: int = Field(1, ge=1, description="CPU: VLLM_CPU_KVCACHE_SPACE (whole GiB; vLLM reads an int).")
    worker_cpu_bind: str = Field("auto", description="CPU: VLLM_CPU_OMP_THREADS_BIND ('auto': every CPU we "
                                 "may use; '' leaves vLLM's default, core 0 only).")
    worker_enforce_eager: bool | None = Field(None, description="vLLM --enforce-eager (None: on CPU only).")
    worker_args: str = Field("", description="Extra vLLM server flags (shell syntax).")
    worker_max_body_bytes: int = Field(256 * 1024, ge=1024, description="Worker guard: largest request body.")
    worker_max_prompts: int = Field(8, ge=1, description="Worker guard: prompts in one request (a list prompt "
                                    "or n); one caller cannot fill the batch and starve the rest.")

    # --- gateway -----------------------------------------------------------------------------------
    api_keys: dict[str, list[str]] = Field(
        default_factory=dict,
        description='JSON: {"key": ["translate", "analyze", "admin"]}. Never commit real keys.',
    )
    auth_open: bool = Field(False, description="Explicit open mode (no keys, loopback bind only). `make run` "
                            "uses it and says so. Refused together with api_keys.")
    rate_limit_per_minute: int = Field(600, ge=1, description="Per key (per client in open mode); a batch "
                                       "costs one per item.")
    auth_fail_limit: int = Field(20, ge=1, description="Failed authentications per client and minute before "
                                 "that client is locked out.")
    auth_lockout_s: int = Field(300, ge=1, description="How long a client that guessed keys is refused.")
    max_text_chars: int = Field(2000, ge=1)
    max_text_tokens: int = Field(512, ge=1, description="Text limit in the model's tokens (the cost of a "
                                 "request; 2,000 emoji are ~8x the tokens of 2,000 letters).")
    api_host: str = Field("127.0.0.1", description="Gateway bind address (`python -m services.api`).")
    api_port: int = Field(8000, ge=1, le=65535)
    api_max_concurrency: int = Field(256, ge=1, description="Connections+requests in flight; beyond, 503.")
    api_max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body; beyond, 413.")
    api_header_timeout_s: float = Field(10.0, gt=0, description="A client must send its request head (and "
                                        "each body chunk) within this; else the connection is closed / 408.")
    api_keepalive_s: float = Field(5.0, gt=0, description="Idle keep-alive connections are closed after this.")
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Proxies whose X-Forwarded-For is believed (IPs/CIDRs, comma-separated); none by default.")
    batch_concurrency: int = Field(8, ge=1, description="Items of one /translate/batch in flight at once, so a "
                                   "64-item batch interleaves with other callers instead of queueing ahead of them.")
    analyze_max_candidates: int = Field(16, ge=1, description="Largest candidate list of one /analyze request.")
    fallback_bridge: str | None = Field(None, description="Bridge served on a cache miss (overrides the policy).")
    fallback_policy: Literal["none", "typology"] = Field(
        "none", description="Cache miss without fallback_bridge: translate directly (never worse than no bridge) "
        "or use the typology-nearest candidate (unvalidated).")
    k_shot: int = Field(3, ge=0, description="Demonstrations in translate prompts and the dev validation "
                        "(measured: k=3 beats zero-shot on the default model, docs/results.md).")

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
    gold_filter_concurrency: int = Field(4, ge=1, description="Gold-filter requests in flight at once.")
    gold_filter_timeout_s: float = Field(120.0, gt=0, description="Timeout of one gold-filter request.")
    probe_fallback: Literal["unfiltered", "fail"] = Field(
        "unfiltered", description="Below probe_min kept words: rank on unfiltered probes (labelled) or fail.")
    lape_languages: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_LAPE_LANGUAGES, description="The fixed language set LAPE normalises over (CLI and service).")
    lape_ratio: float = Field(0.01, gt=0, le=1)
    lape_quantile: float = Field(0.95, gt=0, le=1)
    full_fraction: float = Field(0.95, gt=0, le=1, description="'full' bridge set: share of active probes.")
    serve_policy: Literal["validated", "hsic"] = Field(
        "validated", description="What auto serves: the measured best on dev words (or none), or HSIC argmax.")
    validate_top_m: int = Field(2, ge=1, description="HSIC candidates measured on the dev split (plus en).")
    serve_margin: int = Field(1, ge=1, description="Dev words a bridge must win over direct translation (DECISION).")
    dev_size: int = Field(100, ge=1, description="Dev words measured per condition (common words first).")
    dev_min: int = Field(20, ge=1, description="Fewer dev words than this: no validation, auto serves none.")
    analysis_retry_base_s: float = Field(300.0, gt=0, description="First wait before auto re-analyses a failure.")
    analysis_retry_max_s: float = Field(86400.0, gt=0, description="Longest wait between auto re-analyses.")
    data_auto: bool = Field(True, description="Gather a pair's missing data (dictionaries, text) on first need.")
    data_wait_s: float = Field(20.0, ge=0, description="Gateway: wait this long for demo data being gathered.")
    hsic_variant: Literal["reference", "cka"] = "reference"
    capture_backend: Literal["hf", "vllm"] = Field(
        "hf", description="Activation capture engine (bridgex.capture): HF forward hooks or inside vLLM's V1 engine.")
    capture_tensor_parallel: int = Field(1, ge=1, description="vLLM capture: tensor-parallel ranks (GPU).")
    profile_max_tokens: int = 50_000
    batch_size: int = 8
    chunk_tokens: int = 256

    @field_validator("candidates", "lape_languages", "trusted_proxies", mode="before")
    @classmethod
    def _split_candidates(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return tuple(json.loads(text))
            return tuple(c.strip() for c in text.split(",") if c.strip())
        return v

    @model_validator(mode="after")
    def _redis_credentials(self) -> Settings:
        if self.redis_password is not None:
            pw = self.redis_password.get_secret_value()
            self.redis_url = with_password(self.redis_url, pw)
            if self.broker_url:
                self.broker_url = with_password(self.broker_url, pw)
            if self.result_backend:
                self.result_backend = with_password(self.result_backend, pw)
        return self

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

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def backend(self) -> str:
        return self.result_backend or self.redis_url


def with_password(url: str, password: str) -> str:
    """`url` with `password` as its credentials when it is a redis URL that has none."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or "@" in parts.netloc or not password:
        return url
    return urlunsplit(parts._replace(netloc=f":{quote(password, safe='')}@{parts.netloc}"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
