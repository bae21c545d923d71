"""Request/response models of /translate and /translate/batch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

BridgeSource = Literal["explicit", "cache", "fallback", "none"]


class TranslateRequest(BaseModel):
    """One translation. `bridge`: "auto" (cached recommendation, else a labelled fallback), "none", a code."""

    text: str = Field(
        ..., min_length=1, description="A word (task=word) or a sentence (task=text).", examples=["water"]
    )
    source: str = Field(..., max_length=64, description="Source language code, e.g. 'en'.", examples=["en"])
    target: str = Field(..., max_length=64, description="Target language code, e.g. 'fr'.", examples=["fr"])
    bridge: str = Field(
        "auto", max_length=64, description='"auto", "none", or a bridge language code.', examples=["auto"]
    )
    task: Literal["word", "text"] = "word"
    k_shot: int | None = Field(None, ge=0, le=16, description="Demonstrations (default settings.k_shot).")
    max_tokens: int | None = Field(None, ge=1, description="Tokens per generation step (default 16 / 128).")
    use_cache: bool = Field(True, description="false: bypass the bridge cache for auto (use the fallback).")


class Timings(BaseModel):
    bridge_lookup_ms: float = 0.0
    bridge_step_ms: float = 0.0
    target_step_ms: float = 0.0
    total_ms: float = 0.0


class TranslateResponse(BaseModel):
    translation: str
    bridge: str | None = Field(None, description="Bridge language used (None: direct translation).")
    bridge_source: BridgeSource
    bridge_reason: str | None = Field(None, description="Why this bridge (or none): cache decision, fallback.")
    k_shot: int = Field(0, description="Demonstrations actually in the final prompt.")
    bridge_text: str | None = Field(None, description="The intermediate (bridge-language) text.")
    cache_key: str | None = Field(None, description="Bridge cache key the recommendation came from.")
    analysis_job: str | None = Field(None, description="Analysis job enqueued (or running) on a miss.")
    model: str
    request_id: str
    timings: Timings
    warnings: list[str] = Field(default_factory=list)


class BatchRequest(BaseModel):
    items: list[TranslateRequest] = Field(
        ..., min_length=1, max_length=64, description="Each item counts as one request against the rate limit."
    )


class ItemError(BaseModel):
    """Why one item failed: the status and error body a single /translate would have answered."""

    status: int = Field(..., description="422 bad item, 424 generation failed, 503 worker down, ...")
    error: str
    message: str


class BatchItem(BaseModel):
    """One item's outcome, in request order: a result, or an error (retry only these)."""

    index: int
    ok: bool
    result: TranslateResponse | None = None
    error: ItemError | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    succeeded: int
    failed: int
    request_id: str
