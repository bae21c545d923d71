"""Request/response models of /translate and /translate/batch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from .glossaries import GlossaryUse

BridgeSource = Literal["explicit", "cache", "fallback", "none"]


class TranslateRequest(BaseModel):
    """One translation. `bridge`: "auto" (cached recommendation, else a labelled fallback), "none", a code."""

    text: str = Field(
        ..., min_length=1, description="A word (task=word) or a sentence (task=text).", examples=["water"]
    )
    source: str = Field(
        ...,
        max_length=64,
        description="Source language code, e.g. 'en', or \"auto\": detected among the 15 paper languages "
        "(422 language_undetermined below BRIDGEX_DETECT_MIN_CONFIDENCE, 422 source_is_target when the text is in "
        "the target language already).",
        examples=["en"],
    )
    target: str = Field(..., max_length=64, description="Target language code, e.g. 'fr'.", examples=["fr"])
    bridge: str = Field(
        "auto", max_length=64, description='"auto", "none", or a bridge language code.', examples=["auto"]
    )
    task: Literal["word", "text"] = "word"
    k_shot: int | None = Field(None, ge=0, le=16, description="Demonstrations (default settings.k_shot).")
    max_tokens: int | None = Field(None, ge=1, description="Tokens per generation step (default 16 / 128).")
    use_cache: bool = Field(True, description="false: bypass the bridge cache for auto (use the fallback).")
    glossary_id: str | None = Field(
        None,
        max_length=64,
        description="A glossary of this key for the request's pair (POST /glossaries): a text that is a term gets "
        "its translation; terms in a text are shown as demonstrations and checked in the answer.",
    )
    stream: bool = Field(
        False,
        description="task=text only: answer with server-sent events (`bridge`, `delta`, then `done` carrying the "
        "whole response) as the model produces the translation.",
    )
    alternatives: int | None = Field(
        None,
        ge=1,
        le=5,
        description="Return up to this many distinct answers (the served one first, then the next most likely "
        "first tokens of the answer, each continued greedily), each with its confidence.",
    )


class Timings(BaseModel):
    bridge_lookup_ms: float = 0.0
    bridge_step_ms: float = 0.0
    target_step_ms: float = 0.0
    total_ms: float = 0.0


class Alternative(BaseModel):
    translation: str
    confidence: float | None = Field(None, ge=0, le=1, description="As `confidence` of the response.")


class TranslateResponse(BaseModel):
    translation: str
    bridge: str | None = Field(None, description="Bridge language used (None: direct translation).")
    bridge_source: BridgeSource
    bridge_reason: str | None = Field(None, description="Why this bridge (or none): cache decision, fallback.")
    k_shot: int = Field(0, description="Demonstrations actually in the final prompt.")
    bridge_text: str | None = Field(None, description="The intermediate (bridge-language) text.")
    cache_key: str | None = Field(None, description="Bridge cache key the recommendation came from.")
    analysis_job: str | None = Field(None, description="Analysis job enqueued (or running) on a miss.")
    glossary: GlossaryUse | None = Field(
        None, description="With `glossary_id`: the terms applied (and missing from the answer), or a direct answer."
    )
    model: str
    request_id: str
    timings: Timings
    warnings: list[str] = Field(default_factory=list)
    detected_source: str | None = Field(None, description='source="auto": the language detected (else null).')
    detection_confidence: float | None = Field(
        None, ge=0, le=1, description='source="auto": its confidence, relative among the 15 languages (else null).'
    )
    confidence: float | None = Field(
        None,
        ge=0,
        le=1,
        description="How sure the model was of the answer's own tokens: exp(mean token log-probability) of the "
        "final step (given the bridge text when bridged). Not the probability that the translation is right; "
        "null when the answer is empty.",
    )
    alternatives: list[Alternative] | None = Field(
        None, description="With `alternatives` > 1: distinct answers, the served one first."
    )


class BatchRequest(BaseModel):
    items: list[TranslateRequest] = Field(
        ..., min_length=1, max_length=64, description="Each item counts as one request against the rate limit."
    )

    @field_validator("items")
    @classmethod
    def _no_stream(cls, items: list[TranslateRequest]) -> list[TranslateRequest]:
        streamed = [i for i, item in enumerate(items) if item.stream]
        if streamed:
            raise ValueError(f"stream=true is for POST /translate only; items {streamed} ask for it in a batch")
        return items


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
