"""GET /languages: the languages the method was validated on; others are accepted through language tags."""

from __future__ import annotations

from bridgex.languages import PAPER_LANGUAGES
from fastapi import APIRouter

from ..deps import TranslateScope
from ..schemas.bridges import LanguageList, LanguageOut

router = APIRouter(tags=["languages"])

_LANGS = LanguageList(
    languages=[
        LanguageOut(
            code=lang.code,
            iso639_3=lang.iso639_3,
            name=lang.name,
            native=lang.native,
            family=lang.family,
            script=lang.script,
            flores=lang.flores,
        )
        for lang in PAPER_LANGUAGES.values()
    ],
    note="The 15 languages of the paper. Any other ISO 639 code or BCP-47 tag of a real language is accepted.",
)


@router.get("/languages", response_model=LanguageList)
async def languages(_: TranslateScope) -> LanguageList:
    return _LANGS
