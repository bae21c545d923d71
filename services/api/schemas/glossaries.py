"""Request/response models of /glossaries, and the `glossary` part of a /translate response."""

from __future__ import annotations

from pydantic import BaseModel, Field


class GlossaryCreate(BaseModel):
    """A new glossary: source term -> the translation every /translate with its `glossary_id` must use."""

    name: str = Field(..., min_length=1, max_length=200, examples=["product names"])
    source: str = Field(..., max_length=64, description="Source language code, e.g. 'en'.", examples=["en"])
    target: str = Field(..., max_length=64, description="Target language code, e.g. 'fr'.", examples=["fr"])
    entries: dict[str, str] = Field(
        ...,
        min_length=1,
        description="{source term: target term}; at most BRIDGEX_GLOSSARY_MAX_ENTRIES entries of at most "
        "BRIDGEX_GLOSSARY_MAX_TERM_CHARS characters each; terms compare case-insensitively, so two terms that "
        "differ only in case are refused.",
        examples=[{"bridge": "pont", "water": "eau"}],
    )


class GlossarySummary(BaseModel):
    """A glossary without its entries (GET /glossaries)."""

    id: str
    name: str
    source: str
    target: str
    entry_count: int
    created_at: float = Field(..., description="Seconds since the epoch (UTC).")
    owner: str = Field(..., description="Id of the key that made it (never the key itself).")


class Glossary(GlossarySummary):
    """A glossary with its entries; also the JSON stored in Redis."""

    entries: dict[str, str]


class GlossaryList(BaseModel):
    glossaries: list[GlossarySummary] = Field(..., description="Newest first.")


class GlossaryUse(BaseModel):
    """What a /translate did with its glossary."""

    id: str
    applied: list[str] = Field(
        default_factory=list,
        description="Source terms found in the text and enforced (shown as demonstrations, or the whole answer).",
    )
    missing: list[str] = Field(
        default_factory=list, description="Applied terms whose target term the translation lacks (a warning each)."
    )
    not_enforced: list[str] = Field(
        default_factory=list, description="Terms found beyond BRIDGEX_GLOSSARY_MAX_APPLIED: neither shown nor checked."
    )
    direct: bool = Field(
        False, description="The whole text is a term: answered with the glossary's translation, no generation."
    )
