"""Settings every BridgeX service shares on top of `bridgex.settings.CoreSettings`: Redis (cache, broker,
results), the analysis queue and job records, what `auto` and /analyze default to. The gateway, the analyzer and
the worker each extend this (or the core) in their own package."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote, urlsplit, urlunsplit

from bridgex.settings import CoreSettings
from pydantic import Field, SecretStr, model_validator


class ServiceSettings(CoreSettings):
    # --- Redis -------------------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str | None = None
    result_backend: str | None = None
    redis_password: SecretStr | None = Field(
        None, description="Put into every redis:// URL above that carries no credentials (from a Secret)."
    )

    # --- jobs --------------------------------------------------------------------------------------
    analyze_queue: str = "analyze"
    visibility_timeout_s: int = 6 * 3600
    job_ttl_s: int = 7 * 24 * 3600
    k_shot: int = Field(
        3,
        ge=0,
        description="Demonstrations in translate prompts and the dev validation "
        "(measured: k=3 beats zero-shot on the default model, docs/results.md).",
    )
    analyze_max_candidates: int = Field(16, ge=1, description="Largest candidate list of one /analyze request.")
    analysis_retry_base_s: float = Field(300.0, gt=0, description="First wait before auto re-analyses a failure.")
    analysis_retry_max_s: float = Field(86400.0, gt=0, description="Longest wait between auto re-analyses.")

    # --- the generation worker's weights ------------------------------------------------------------
    allow_unverified_worker: bool = Field(
        False,
        description="Accept a generation worker that does not report its weights (GET /bridgex/identity, as a "
        "plain `vllm serve`): analyses run against it and `auto` serves measured bridges beside it. Off: such a "
        "worker fails the analysis and `auto` serves the fallback; run the worker with `python -m services.worker`.",
    )

    @model_validator(mode="after")
    def _redis_credentials(self) -> ServiceSettings:
        if self.redis_password is not None:
            pw = self.redis_password.get_secret_value()
            self.redis_url = with_password(self.redis_url, pw)
            if self.broker_url:
                self.broker_url = with_password(self.broker_url, pw)
            if self.result_backend:
                self.result_backend = with_password(self.result_backend, pw)
        return self

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
def get_settings() -> ServiceSettings:
    return ServiceSettings()
