"""GET /languages: the languages the method was validated on, each with its targets and, per pair, whether a
measured bridge is served; other languages are accepted through language tags."""

from __future__ import annotations

from bridgex.languages import PAPER_LANGUAGES
from fastapi import APIRouter

from ..core.redis import RedisUnavailable
from ..deps import Ctx, TranslateScope
from ..schemas.bridges import LanguageList, LanguageOut, TargetOut
from ..services import bridge_cache

router = APIRouter(tags=["languages"])

NOTE = "The 15 languages of the paper. Any other ISO 639 code or BCP-47 tag of a real language is accepted."


@router.get("/languages", response_model=LanguageList)
async def languages(ctx: Ctx, _: TranslateScope) -> LanguageList:
    """Each language with its name, native name and targets; `measured` / `served_bridge` per pair say what
    `auto` serves (from the bridge cache; without Redis the list comes without them, with a warning)."""
    warnings: list[str] = []
    try:
        rows = await ctx.gate.run_sync("bridge_pairs", lambda: bridge_cache.served_pairs(ctx))
    except RedisUnavailable as exc:
        rows, warnings = [], [f"the bridge cache is unavailable ({exc}): measured pairs are not shown"]
    served = {(r["source"], r["target"]): r["served"] for r in rows}
    codes = list(PAPER_LANGUAGES)
    out = [
        LanguageOut(
            code=lang.code,
            iso639_3=lang.iso639_3,
            name=lang.name,
            native=lang.native,
            family=lang.family,
            script=lang.script,
            flores=lang.flores,
            targets=[
                TargetOut(code=t, measured=(lang.code, t) in served, served_bridge=served.get((lang.code, t)))
                for t in codes
                if t != lang.code
            ],
        )
        for lang in PAPER_LANGUAGES.values()
    ]
    measured = sum(1 for s, t in served if s in PAPER_LANGUAGES and t in PAPER_LANGUAGES)
    return LanguageList(languages=out, note=NOTE, measured_pairs=measured, warnings=warnings)
