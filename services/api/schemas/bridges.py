"""Models of /bridges and /languages. A ranking is the analyzer's published JSON, passed through as is."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Ranking(BaseModel):
    """Published ranking: ranked candidates (per-layer scores, set sizes), best, provenance, cache_key."""

    model_config = ConfigDict(extra="allow")

    cache_key: str
    config: str | None = None
    ranked: list[dict[str, Any]] = []
    best_code: str | None = None
    best_score: float | None = None
    served_bridge: str | None = None
    served_reason: str | None = None
    served: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    provenance: dict[str, Any] = {}


class PairBest(BaseModel):
    source: str
    target: str
    best: str | None
    score: float | None
    served: str | None = None
    served_reason: str | None = None
    cache_key: str
    published_at: str | None = None


class BridgeMatrix(BaseModel):
    model: str
    revision: str | None
    config: str | None = None
    pairs: list[PairBest]
    configuration: dict[str, Any] | None = Field(
        None,
        description="This gateway's method configuration against the analyzer's (fingerprints, agree, the "
        "parameters that differ): when they differ, `auto` looks up rankings the analyzer never computes.",
    )


class TargetOut(BaseModel):
    """A target of a language, and what `auto` serves for the pair."""

    code: str
    measured: bool = Field(
        False, description="An analysis of the pair is published under the configuration `auto` serves."
    )
    served_bridge: str | None = Field(
        None, description="The bridge `auto` serves for the pair when measured (null: direct translation)."
    )


class LanguageOut(BaseModel):
    code: str
    iso639_3: str
    name: str
    native: str
    family: str
    script: str
    flores: str | None = None
    targets: list[TargetOut] = Field(
        default_factory=list, description="Every other listed language: any pair of them can be translated."
    )


class LanguageList(BaseModel):
    languages: list[LanguageOut]
    note: str
    measured_pairs: int = Field(0, description="Pairs with a published analysis that `auto` serves.")
    warnings: list[str] = Field(default_factory=list)
