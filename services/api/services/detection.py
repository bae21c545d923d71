"""Language detection for `POST /detect` and `source: "auto"` on /translate: bridgex.detect over the 15 paper
languages, and the rule that turns a detection into a source language or a 422 that asks for one.

Never a silent guess: below `detect_min_confidence` (BRIDGEX_DETECT_MIN_CONFIDENCE) the answer is 422
`language_undetermined` listing the likely languages; text that is confidently in the target language already
is 422 `source_is_target`. Only then is the pair checked (validation.pair), and `bridge` (auto or a code)
against the detected source.

Where it runs: the detector is built once per process, off the event loop (`warm`, from the app's lifespan;
about 1 s and 350 MB with every model loaded). A detection takes 0.1 ms for a word and 1.7 ms for 2,000
characters (docs/results.md run 7), and lingua keeps the GIL while it runs, so a thread would not free the
event loop anyway: it runs inline, except before the detector is built or on a text longer than
INLINE_CHARS (a raised BRIDGEX_MAX_TEXT_CHARS), which go to a thread.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bridgex.detect import detect as rank_languages
from bridgex.detect import detector, detector_built, unsupported
from bridgex.languages import PAPER_LANGUAGES

from ..core.config import ApiSettings
from ..core.errors import ApiError

log = logging.getLogger("bridgex.api")

LANGUAGES: tuple[str, ...] = tuple(PAPER_LANGUAGES)
"""What detection chooses among: the 15 paper languages (lingua knows all of them)."""
TOP = 3
"""Candidates an answer lists."""
NOTHING = "nothing in the text points to any of the 15 languages detection knows (no letters of their scripts)"
INLINE_CHARS = 2000
"""Longest text detected on the event loop (1.7 ms measured at 2,000 characters); longer ones go to a thread."""


@dataclass(frozen=True)
class Detection:
    """The most likely language (None: nothing in the text points to any) and the top candidates."""

    language: str | None
    confidence: float
    candidates: tuple[tuple[str, float], ...]

    def listing(self) -> str:
        return ", ".join(f"{code} {conf:.2f}" for code, conf in self.candidates) or "none"


def warm() -> None:
    """Build the detector once, with every model loaded (call it off the event loop); best effort."""
    missing = unsupported(LANGUAGES)
    if missing:
        log.warning("language detection cannot detect %s (not in lingua); they are left out", ", ".join(missing))
    try:
        detector(LANGUAGES)
    except Exception as exc:
        log.warning("language detector warm-up failed (the first detection will retry): %s", exc)


def _detect(text: str) -> Detection:
    ranked = rank_languages(text, LANGUAGES)
    top = tuple((code, round(conf, 4)) for code, conf in ranked[:TOP] if conf > 0)
    if not top:
        return Detection(None, 0.0, ())
    return Detection(top[0][0], top[0][1], top)


async def detect(text: str) -> Detection:
    if detector_built(LANGUAGES) and len(text) <= INLINE_CHARS:
        return _detect(text)
    return await asyncio.to_thread(_detect, text)


def confident(found: Detection, settings: ApiSettings) -> bool:
    """Whether `found` names a language with at least `detect_min_confidence`."""
    return found.language is not None and found.confidence >= settings.detect_min_confidence


def undetermined(found: Detection, settings: ApiSettings) -> ApiError:
    """The 422 for a detection too weak to act on: the likely languages and what to send instead."""
    floor = settings.detect_min_confidence
    details = {
        "candidates": [{"language": c, "confidence": v} for c, v in found.candidates],
        "min_confidence": floor,
    }
    if found.language is None:
        why = NOTHING
    else:
        why = (
            f"the likely languages are {found.listing()} (confidences among the 15 languages), below "
            f"BRIDGEX_DETECT_MIN_CONFIDENCE = {floor:g}"
        )
    return ApiError(
        422,
        "language_undetermined",
        f"could not tell the source language: {why}; send `source` explicitly"
        + (f', e.g. "source": "{found.language}"' if found.language else ""),
        details=details,
    )


async def language_of(text: str, settings: ApiSettings) -> Detection:
    """The detection of `text` however confident, or 422 language_undetermined when no language is found."""
    found = await detect(text)
    if found.language is None:
        raise ApiError(
            422,
            "language_undetermined",
            f"no language detected: {NOTHING}; send a word or text in one of them",
            details={"candidates": [], "languages": list(LANGUAGES)},
        )
    return found


async def source_of(text: str, target: str, settings: ApiSettings) -> Detection:
    """The detected source language of `text`, or the 422 that asks for it (too uncertain, or `target`)."""
    found = await detect(text)
    if not confident(found, settings):
        raise undetermined(found, settings)
    if found.language == target:
        raise ApiError(
            422,
            "source_is_target",
            f"the text looks like {target} already, the target language (detected: {found.listing()}); "
            "nothing to translate. If it is in another language, send `source` explicitly",
            details={"candidates": [{"language": c, "confidence": v} for c, v in found.candidates]},
        )
    return found
