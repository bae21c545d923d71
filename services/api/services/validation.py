"""Input checks that need settings or the language registry, with 422 messages that say what to fix."""

from __future__ import annotations

from bridgex.languages import UnknownLanguageError, normalize_code

from ..core.config import Settings
from ..core.errors import bad_input

AUTO, NONE = "auto", "none"
DEFAULT_MAX_TOKENS = {"word": 16, "text": 128}


def language(code: str, field: str) -> str:
    """Canonical code, or 422 that lists the known languages."""
    try:
        return normalize_code(code)
    except UnknownLanguageError as exc:
        raise bad_input(f"{field}: {exc}", field=field) from exc


def pair(source: str, target: str) -> tuple[str, str]:
    s, t = language(source, "source"), language(target, "target")
    if s == t:
        raise bad_input(f"source and target are the same language ({s!r}); choose two different languages",
                        field="target")
    return s, t


def bridge(value: str, source: str, target: str) -> str:
    """"auto", "none", or a canonical bridge code different from source and target."""
    v = value.strip().lower()
    if v in (AUTO, NONE):
        return v
    b = language(value, "bridge")
    if b in (source, target):
        which = "source" if b == source else "target"
        raise bad_input(f"bridge {b!r} is the {which} language; choose another bridge language, "
                        f"'auto' (recommended) or 'none'", field="bridge")
    return b


def text(value: str, settings: Settings) -> str:
    if not value.strip():
        raise bad_input("text is empty or only whitespace; send the word or sentence to translate",
                        field="text")
    if len(value) > settings.max_text_chars:
        raise bad_input(f"text is {len(value)} characters; the limit is {settings.max_text_chars} "
                        "(BRIDGEX_MAX_TEXT_CHARS): split it into shorter requests (/translate/batch)",
                        field="text")
    return value


def max_tokens(value: int | None, task: str, settings: Settings) -> int:
    n = value if value is not None else min(DEFAULT_MAX_TOKENS[task], settings.max_tokens_limit)
    if n > settings.max_tokens_limit:
        raise bad_input(f"max_tokens {n} is over the limit of {settings.max_tokens_limit} "
                        "(BRIDGEX_MAX_TOKENS_LIMIT); ask for fewer", field="max_tokens")
    return n
