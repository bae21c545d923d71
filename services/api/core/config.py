"""The gateway's settings: the shared service settings plus auth, limits, the HTTP server and the fallback
policy of `auto` (BRIDGEX_* variables)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from bridgex.settings import split_list
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from services.common.config import ServiceSettings


class KeyQuota(BaseModel):
    """One key's quota (BRIDGEX_KEY_QUOTAS); services.api.services.usage enforces it."""

    model_config = ConfigDict(extra="forbid")

    chars_per_day: int = Field(
        ..., ge=0, description="Characters of source text per UTC day (successful translations; 0 blocks the key)."
    )


class ApiSettings(ServiceSettings):
    api_keys: dict[str, list[str]] = Field(
        default_factory=dict,
        description='JSON: {"key": ["translate", "analyze", "admin"]}. Never commit real keys.',
    )
    auth_open: bool = Field(
        False,
        description="Explicit open mode (no keys, loopback bind only). `make run` "
        "uses it and says so. Refused together with api_keys.",
    )
    key_quotas: dict[str, KeyQuota] = Field(
        default_factory=dict,
        description='JSON: {"<key id or key>": {"chars_per_day": N}}; a key id is the 12-hex name GET /usage shows. '
        "Keys without an entry have no quota; an entry naming no configured key is refused at start.",
    )
    rate_limit_per_minute: int = Field(
        600, ge=1, description="Per key (per client in open mode); a batch costs one per item."
    )
    auth_fail_limit: int = Field(
        20, ge=1, description="Failed authentications per client and minute before that client is locked out."
    )
    auth_lockout_s: int = Field(300, ge=1, description="How long a client that guessed keys is refused.")
    max_text_chars: int = Field(2000, ge=1)
    max_text_tokens: int = Field(
        512,
        ge=1,
        description="Text limit in the model's tokens (the cost of a "
        "request; 2,000 emoji are ~8x the tokens of 2,000 letters).",
    )
    api_host: str = Field("127.0.0.1", description="Gateway bind address (`python -m services.api`).")
    api_port: int = Field(8000, ge=1, le=65535)
    api_max_concurrency: int = Field(256, ge=1, description="Connections+requests in flight; beyond, 503.")
    api_max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest request body; beyond, 413.")
    api_header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A client must send its request head (and "
        "each body chunk) within this; else the connection is closed / 408.",
    )
    api_keepalive_s: float = Field(5.0, gt=0, description="Idle keep-alive connections are closed after this.")
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Proxies whose X-Forwarded-For is believed (IPs/CIDRs, comma-separated); none by default."
    )
    batch_concurrency: int = Field(
        8,
        ge=1,
        description="Items of one /translate/batch in flight at once, so a "
        "64-item batch interleaves with other callers instead of queueing ahead of them.",
    )
    fallback_bridge: str | None = Field(None, description="Bridge served on a cache miss (overrides the policy).")
    fallback_policy: Literal["none", "typology"] = Field(
        "none",
        description="Cache miss without fallback_bridge: translate directly (never worse than no bridge) "
        "or use the typology-nearest candidate (unvalidated).",
    )
    max_tokens_limit: int = Field(512, ge=1, description="Gateway: largest max_tokens a client may ask for.")
    data_wait_s: float = Field(
        20.0,
        ge=0,
        description="Gateway: an explicit k_shot waits this long for its data, gathered by the analyzer (the default "
        "k_shot never waits: it answers zero-shot with a warning).",
    )
    detect_min_confidence: float = Field(
        0.6,
        ge=0,
        le=1,
        description="source=auto: below this detection confidence (relative among the 15 languages) /translate "
        "answers 422 language_undetermined with the candidates instead of guessing (DECISION, docs/results.md run 7).",
    )

    glossary_max_entries: int = Field(1000, ge=1, description="Entries one glossary may hold (POST /glossaries).")
    glossary_max_term_chars: int = Field(
        200, ge=1, description="Characters of one glossary term, and of the translation it prescribes."
    )
    glossary_max_per_key: int = Field(100, ge=1, description="Glossaries one key may hold at once (409 beyond).")
    glossary_max_applied: int = Field(
        32,
        ge=1,
        description="Glossary terms one /translate enforces as demonstrations (in order of occurrence); further "
        "ones found in the text are listed as not enforced, with a warning.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, v: object) -> object:
        return split_list(v)


@lru_cache(maxsize=1)
def get_settings() -> ApiSettings:
    return ApiSettings()


__all__ = ["ApiSettings", "KeyQuota", "get_settings"]
