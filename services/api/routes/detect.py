"""POST /detect: the language of a text, among the 15 paper languages."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import Ctx, TranslateScope
from ..schemas.detect import Candidate, DetectRequest, DetectResponse
from ..services import detection, validation

router = APIRouter(tags=["detect"])


@router.post("/detect", response_model=DetectResponse)
async def detect(req: DetectRequest, ctx: Ctx, _: TranslateScope) -> DetectResponse:
    """The most likely language of `text` with its confidence and the top candidates; `reliable` says whether
    /translate with `source: "auto"` would accept it. 422 `language_undetermined` when nothing in the text
    points to any of the languages (digits, punctuation, another script)."""
    found = await detection.language_of(validation.text(req.text, ctx.settings), ctx.settings)
    return DetectResponse(
        language=found.language or "",
        confidence=found.confidence,
        candidates=[Candidate(language=c, confidence=v) for c, v in found.candidates],
        reliable=detection.confident(found, ctx.settings),
    )
