"""Request/response models of POST /detect."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DetectRequest(BaseModel):
    text: str = Field(..., min_length=1, description="A word or a text.", examples=["Jeder Mensch hat das Recht"])


class Candidate(BaseModel):
    language: str = Field(..., description="Language code (one of the 15 paper languages).", examples=["de"])
    confidence: float = Field(..., ge=0, le=1, examples=[0.97])


class DetectResponse(BaseModel):
    """The most likely language among the 15 paper languages. Confidences are relative among those 15 (they sum
    to 1 over all of them), not the probability that the text is in one of them at all."""

    language: str = Field(..., description="The most likely language.", examples=["de"])
    confidence: float = Field(..., ge=0, le=1, examples=[0.97])
    candidates: list[Candidate] = Field(..., description="The most likely languages, highest first (at most 3).")
    reliable: bool = Field(
        ...,
        description="confidence >= BRIDGEX_DETECT_MIN_CONFIDENCE: what /translate with source=auto accepts "
        "(below it, it answers 422 language_undetermined).",
    )
