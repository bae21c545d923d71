"""Input checks that need settings, the language registry or the model's tokenizer, with 422 messages that
say what to fix."""

from __future__ import annotations

import unicodedata

from bridgex.generation.client import GenerationError, WorkerUnavailable
from bridgex.languages import UnknownLanguageError, normalize_code
from bridgex.prompts import CHAIN_DELIMITERS

from ..core.config import ApiSettings
from ..core.errors import ApiError, bad_input, dependency_down
from ..deps import AppContext

AUTO, NONE = "auto", "none"
DEFAULT_MAX_TOKENS = {"word": 16, "text": 128}


def is_auto(code: str) -> bool:
    """Whether a language field says "auto" (only /translate's `source` accepts it: detection)."""
    return code.strip().lower() == AUTO


def language(code: str, field: str) -> str:
    """Canonical code, or 422 that lists the known languages ("auto" gets its own: only a source is detected)."""
    if is_auto(code):
        raise bad_input(
            f'{field}: "auto" (language detection) is accepted only as the `source` of /translate and '
            "/translate/batch items; name the language here",
            field=field,
        )
    try:
        return normalize_code(code)
    except UnknownLanguageError as exc:
        raise bad_input(f"{field}: {exc}", field=field) from exc


def pair(source: str, target: str) -> tuple[str, str]:
    s, t = language(source, "source"), language(target, "target")
    if s == t:
        raise bad_input(
            f"source and target are the same language ({s!r}); choose two different languages", field="target"
        )
    return s, t


def bridge(value: str, source: str, target: str) -> str:
    """ "auto", "none", or a canonical bridge code different from source and target."""
    v = value.strip().lower()
    if v in (AUTO, NONE):
        return v
    b = language(value, "bridge")
    if b in (source, target):
        which = "source" if b == source else "target"
        raise bad_input(
            f"bridge {b!r} is the {which} language; choose another bridge language, 'auto' (recommended) or 'none'",
            field="bridge",
        )
    return b


def has_content(value: str) -> bool:
    """Whether `value` holds anything to translate: a character that is not a control or format character
    (NUL, zero-width space), not whitespace, and not a chain delimiter (quote, arrow, backslash)."""
    return any(not (ch.isspace() or ch in CHAIN_DELIMITERS or unicodedata.category(ch) in ("Cc", "Cf")) for ch in value)


def text(value: str, settings: ApiSettings) -> str:
    if len(value) > settings.max_text_chars:
        raise bad_input(
            f"text is {len(value)} characters; the limit is {settings.max_text_chars} "
            "(BRIDGEX_MAX_TEXT_CHARS): split it into shorter requests (/translate/batch)",
            field="text",
        )
    if not value.strip():
        raise bad_input("text is empty or only whitespace; send the word or sentence to translate", field="text")
    if not has_content(value):
        raise bad_input(
            "text holds only control, invisible or delimiter characters (such as NUL, a "
            "zero-width space, quotes or arrows); send the word or sentence to translate",
            field="text",
        )
    return value


async def tokens(ctx: AppContext, value: str) -> None:
    """422 when `value` is over settings.max_text_tokens in the served model's tokens. A text of at most that
    many UTF-8 bytes cannot be over (a token covers at least one byte), so words never cost a round trip."""
    limit = ctx.settings.max_text_tokens
    if len(value.encode("utf-8", "surrogatepass")) <= limit:
        return
    try:
        n = await ctx.generation.count_tokens(value)
    except WorkerUnavailable as exc:
        raise dependency_down(
            "generation_worker",
            f"the generation worker at {ctx.generation.where} is unavailable to count the text's tokens: {exc}",
        ) from exc
    except GenerationError as exc:
        raise ApiError(424, "generation_failed", f"the generation worker could not tokenize the text: {exc}") from exc
    if n > limit:
        raise bad_input(
            f"text is {n} tokens for this model; the limit is {limit} (BRIDGEX_MAX_TEXT_TOKENS): "
            "split it into shorter requests (/translate/batch)",
            field="text",
        )


def max_tokens(value: int | None, task: str, settings: ApiSettings) -> int:
    n = value if value is not None else min(DEFAULT_MAX_TOKENS[task], settings.max_tokens_limit)
    if n > settings.max_tokens_limit:
        raise bad_input(
            f"max_tokens {n} is over the limit of {settings.max_tokens_limit} "
            "(BRIDGEX_MAX_TOKENS_LIMIT); ask for fewer",
            field="max_tokens",
        )
    return n
