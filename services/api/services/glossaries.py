"""Glossaries (issue 23 item 3; DeepL's `glossary_id`, Google's `glossaryConfig`): stored per key in Redis, and
enforced on /translate.

Storage: one JSON record per glossary (`redis_keys.glossary`, never pickle; no TTL, it lives until deleted), the
owner's id set (`redis_keys.glossary_owner`) and the index of all (`redis_keys.GLOSSARIES_INDEX`). A glossary is
made by one Lua script, so the per-key count limit holds under concurrent POSTs. Ids are uuid4 hex. Glossaries
are immutable: a changed one is a new glossary (and the compiled term matcher can be cached by content).
Visibility: the key that made it (`Principal.key_id`) and admin keys (open mode is admin); any other key gets
the 404 an unknown id gets, so ids cannot be probed.

On /translate (`for_translate`), the glossary's pair must be the request's (after detection, for `source:
"auto"`), else 422. Then, by `bridgex.glossary`'s matching:
- the whole text is a term (task word, or a text that is exactly a term): the answer is the glossary's
  translation, without generation (`direct_response`); that is what a glossary guarantees;
- otherwise the terms the text holds (task text; a word is only ever a whole term) are enforced: each becomes
  a demonstration of the final step, `S:"term"→T:"translation"` (`bridgex.demos.glossary_demos`), and the
  answer is checked: a term whose translation the answer lacks is listed as missing, with a warning.
At most `glossary_max_applied` terms per request are enforced (in order of occurrence); further ones are listed
as not enforced. Redis down with a glossary_id: 503, since the glossary could not be enforced.
"""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from bridgex.demos import glossary_demos
from bridgex.glossary import Term, TermMatcher, missing, normalize_term
from bridgex.prompts import Demo
from pydantic import ValidationError

from services.common import redis_keys

from ..core.config import ApiSettings
from ..core.errors import ApiError, bad_input, dependency_down
from ..core.redis import RedisUnavailable
from ..core.security import Principal
from ..deps import AppContext
from ..schemas.glossaries import Glossary, GlossaryCreate, GlossarySummary, GlossaryUse
from ..schemas.translate import Timings, TranslateResponse
from . import validation

_ID = re.compile(r"^[0-9a-f]{32}$")
MGET_CHUNK = 100

CREATE_SCRIPT = """
-- KEYS: record, owner's set, index; ARGV: record JSON, per-key limit, id. 0 when the owner is at the limit.
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"""


def _show(text: str, n: int = 40) -> str:
    """A user string in a message: repr, cut to `n` characters (a 200-character term is not echoed whole)."""
    return repr(text if len(text) <= n else text[:n] + "...")


def _redis_down(exc: RedisUnavailable) -> ApiError:
    return dependency_down("redis", f"glossary storage (Redis) is unavailable: {exc}")


def _not_found(glossary_id: str) -> ApiError:
    # the same answer for an unknown id and another key's glossary
    return ApiError(
        404,
        "glossary_not_found",
        f"no glossary {glossary_id[:80]!r} visible to this key (never made, deleted, or made by another key); "
        "GET /glossaries lists yours, POST /glossaries makes one",
        details={"field": "glossary_id"},
    )


def _visible(g: Glossary | None, principal: Principal | None) -> bool:
    return g is not None and principal is not None and (principal.has("admin") or g.owner == principal.key_id)


# ----------------------------------------------------------------------------------------------- checks


def _one_line(value: str) -> bool:
    """Whether `value` is one line of valid Unicode: no control character (line breaks, NUL), no unpaired
    surrogate (a JSON `\\ud800` that cannot be stored as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(unicodedata.category(ch) == "Cc" for ch in value)


def _one_term(text: str, what: str, settings: ApiSettings) -> str:
    value = text.strip()
    if not value or not validation.has_content(value):
        raise bad_input(
            f"entries: {what} {_show(text)} is empty or only invisible or delimiter characters; remove the entry",
            field="entries",
        )
    if not _one_line(value):
        raise bad_input(
            f"entries: {what} {_show(value)} holds a line break, a control character or invalid Unicode (an "
            "unpaired surrogate); a term is one line of text",
            field="entries",
        )
    if len(value) > settings.glossary_max_term_chars:
        raise bad_input(
            f"entries: {what} {_show(value)} is {len(value)} characters; the limit is "
            f"{settings.glossary_max_term_chars} (BRIDGEX_GLOSSARY_MAX_TERM_CHARS)",
            field="entries",
        )
    return value


def check_new(req: GlossaryCreate, settings: ApiSettings) -> GlossaryCreate:
    """The request with canonical language codes and stripped terms, or 422 that says what to fix."""
    name = req.name.strip()
    if not name or not _one_line(name):
        raise bad_input(
            "name is empty or holds control characters or invalid Unicode; give the glossary a one-line name",
            field="name",
        )
    source, target = validation.pair(req.source, req.target)
    if len(req.entries) > settings.glossary_max_entries:
        raise bad_input(
            f"entries: {len(req.entries)} entries; the limit is {settings.glossary_max_entries} "
            "(BRIDGEX_GLOSSARY_MAX_ENTRIES): split them into several glossaries",
            field="entries",
        )
    entries: dict[str, str] = {}
    seen: dict[str, str] = {}
    for raw_term, raw_target in req.entries.items():
        term = _one_term(raw_term, "the term", settings)
        entries[term] = _one_term(raw_target, f"the translation of {_show(term)}:", settings)
        key = normalize_term(term)
        if key in seen:
            raise bad_input(
                f"entries: {_show(seen[key])} and {_show(term)} are the same term (terms compare "
                "case-insensitively, whitespace runs as one space); keep one of them",
                field="entries",
            )
        seen[key] = term
    return GlossaryCreate(name=name, source=source, target=target, entries=entries)


# ------------------------------------------------------------------------------------------------- CRUD


async def create(ctx: AppContext, req: GlossaryCreate, principal: Principal) -> Glossary:
    req = check_new(req, ctx.settings)
    g = Glossary(
        id=uuid.uuid4().hex,
        name=req.name,
        source=req.source,
        target=req.target,
        entries=req.entries,
        entry_count=len(req.entries),
        created_at=round(time.time(), 3),
        owner=principal.key_id,
    )
    script = ctx.scripts.get("glossary_create")
    if script is None:
        script = ctx.scripts["glossary_create"] = ctx.redis.register_script(CREATE_SCRIPT)
    keys = [redis_keys.glossary(g.id), redis_keys.glossary_owner(principal.key_id), redis_keys.GLOSSARIES_INDEX]
    args = [g.model_dump_json(), ctx.settings.glossary_max_per_key, g.id]
    try:
        made = await ctx.gate.run("glossaries", lambda: script(keys=keys, args=args))
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc
    if not made:
        limit = ctx.settings.glossary_max_per_key
        raise ApiError(
            409,
            "glossary_limit",
            f"this key holds {limit} glossaries, the limit (BRIDGEX_GLOSSARY_MAX_PER_KEY); "
            "DELETE /glossaries/{id} one it no longer needs",
        )
    return g


def _parse(raw: str | None) -> Glossary | None:
    if not raw:
        return None
    try:
        return Glossary.model_validate_json(raw)
    except ValidationError:  # not ours: treat as absent rather than fail every listing
        return None


async def get(ctx: AppContext, glossary_id: str, principal: Principal | None) -> Glossary:
    """A glossary this principal may see, else 404 (unknown, malformed and others' ids alike)."""
    if not _ID.match(glossary_id):
        raise _not_found(glossary_id)
    try:
        raw = await ctx.gate.run("glossaries", lambda: ctx.redis.get(redis_keys.glossary(glossary_id)))
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc
    g = _parse(raw)
    if not _visible(g, principal):
        raise _not_found(glossary_id)
    return g  # type: ignore[return-value]


async def list_for(ctx: AppContext, principal: Principal, limit: int) -> list[GlossarySummary]:
    """Newest first: the key's own glossaries (an admin key's: every glossary)."""
    index = redis_keys.GLOSSARIES_INDEX if principal.has("admin") else redis_keys.glossary_owner(principal.key_id)

    async def fetch() -> list[str | None]:
        ids = sorted(await ctx.redis.smembers(index))
        out: list[str | None] = []
        for i in range(0, len(ids), MGET_CHUNK):
            out += await ctx.redis.mget([redis_keys.glossary(x) for x in ids[i : i + MGET_CHUNK]])
        return out

    try:
        raws = await ctx.gate.run("glossaries", fetch)
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc
    found = [g for g in map(_parse, raws) if _visible(g, principal)]
    found.sort(key=lambda g: (-g.created_at, g.id))  # type: ignore[union-attr]
    return [GlossarySummary(**g.model_dump(exclude={"entries"})) for g in found[:limit]]  # type: ignore[union-attr]


async def delete(ctx: AppContext, glossary_id: str, principal: Principal) -> None:
    g = await get(ctx, glossary_id, principal)

    async def remove() -> None:
        async with ctx.redis.pipeline(transaction=True) as pipe:
            pipe.delete(redis_keys.glossary(g.id))
            pipe.srem(redis_keys.glossary_owner(g.owner), g.id)
            pipe.srem(redis_keys.GLOSSARIES_INDEX, g.id)
            await pipe.execute()

    try:
        await ctx.gate.run("glossaries", remove)
    except RedisUnavailable as exc:
        raise _redis_down(exc) from exc


# ------------------------------------------------------------------------------------------- /translate


@lru_cache(maxsize=128)
def _matcher(glossary_id: str, source: str, entries: tuple[tuple[str, str], ...]) -> TermMatcher:
    """Compiled once per glossary content (~25 ms for 1,000 terms), in a thread on first use."""
    return TermMatcher(dict(entries), source)


@dataclass
class Enforcement:
    """What one /translate enforces of its glossary: a direct answer, or terms as demonstrations to check."""

    glossary: Glossary
    direct: Term | None = None
    terms: list[Term] = field(default_factory=list)
    not_enforced: list[Term] = field(default_factory=list)

    def demos(self, final_demos: Sequence[Demo]) -> list[Demo]:
        """The final step's demonstrations with the enforced terms (bridgex.demos.glossary_demos)."""
        return glossary_demos(final_demos, self.terms) if self.terms else list(final_demos)

    def check(self, answer: str, warnings: list[str]) -> GlossaryUse:
        """The glossary part of the response; a warning per enforced term the answer lacks."""
        lacking = missing(answer, self.terms, self.glossary.target)
        for t in lacking:
            warnings.append(
                f"glossary {self.glossary.id}: the term {_show(t.source)} should be translated as "
                f"{_show(t.target)}, which is not in the translation"
            )
        if self.not_enforced:
            warnings.append(
                f"glossary {self.glossary.id}: {len(self.not_enforced)} more terms found than "
                f"BRIDGEX_GLOSSARY_MAX_APPLIED={len(self.terms)} were neither enforced nor checked "
                "(listed in glossary.not_enforced); split the text"
            )
        return GlossaryUse(
            id=self.glossary.id,
            applied=[t.source for t in self.terms],
            missing=[t.source for t in lacking],
            not_enforced=[t.source for t in self.not_enforced],
        )


async def for_translate(
    ctx: AppContext,
    glossary_id: str | None,
    principal: Principal | None,
    source: str,
    target: str,
    task: str,
    text: str,
) -> Enforcement | None:
    """The glossary a /translate names, checked against its pair and matched against its text (None without
    a glossary_id). 404 for a glossary this key cannot see, 422 for another pair."""
    if glossary_id is None:
        return None
    g = await get(ctx, glossary_id, principal)
    if (g.source, g.target) != (source, target):
        raise bad_input(
            f"glossary {g.id} is for {g.source}->{g.target}, but this request translates {source}->{target}; "
            "use a glossary made for this pair (POST /glossaries)",
            field="glossary_id",
        )

    def match() -> tuple[Term | None, list[Term]]:  # off the event loop: a first compile, a long text
        matcher = _matcher(g.id, g.source, tuple(g.entries.items()))
        exact = matcher.exact(text)
        return exact, [] if exact is not None or task != "text" else matcher.find(text)

    exact, found = await asyncio.to_thread(match)
    if exact is not None:
        return Enforcement(g, direct=exact)
    cap = ctx.settings.glossary_max_applied
    return Enforcement(g, terms=found[:cap], not_enforced=found[cap:])


def direct_response(
    ctx: AppContext, enforcement: Enforcement, request_id: str, t0: float, **fields: object
) -> TranslateResponse:
    """The response for a text that is a glossary term: its translation, no generation, and why. `fields`: more
    response fields (the detected source)."""
    g, term = enforcement.glossary, enforcement.direct
    assert term is not None
    return TranslateResponse(
        translation=term.target,
        bridge=None,
        bridge_source="none",
        bridge_reason=f"glossary {g.id} defines {_show(term.source)}: answered with its translation, no generation",
        model=ctx.served_model,
        request_id=request_id,
        k_shot=0,
        glossary=GlossaryUse(id=g.id, applied=[term.source], direct=True),
        timings=Timings(total_ms=round((time.perf_counter() - t0) * 1e3, 3)),
        **fields,
    )
