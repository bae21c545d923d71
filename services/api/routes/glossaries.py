"""POST /glossaries, GET /glossaries, GET /glossaries/{id}, DELETE /glossaries/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from ..deps import Ctx, TranslateScope
from ..schemas.errors import error_responses
from ..schemas.glossaries import Glossary, GlossaryCreate, GlossaryList
from ..services import glossaries

router = APIRouter(prefix="/glossaries", tags=["glossaries"])


@router.post("", response_model=Glossary, status_code=201, responses=error_responses(409))
async def create_glossary(req: GlossaryCreate, ctx: Ctx, principal: TranslateScope, response: Response) -> Glossary:
    """A glossary owned by this key: `{source term: target term}` for one language pair. Send its `id` as
    `glossary_id` to /translate: a text that is a term gets the term's translation, a text that holds terms gets
    them as demonstrations and a check of the answer."""
    g = await glossaries.create(ctx, req, principal)
    response.headers["Location"] = f"/glossaries/{g.id}"
    return g


@router.get("", response_model=GlossaryList)
async def list_glossaries(
    ctx: Ctx, principal: TranslateScope, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> GlossaryList:
    """Newest first, without entries: the glossaries this key made (an admin key sees every glossary)."""
    return GlossaryList(glossaries=await glossaries.list_for(ctx, principal, limit))


@router.get("/{glossary_id}", response_model=Glossary, responses=error_responses(404))
async def get_glossary(glossary_id: str, ctx: Ctx, principal: TranslateScope) -> Glossary:
    """One glossary with its entries (404 for another key's, as for an unknown id; admin sees all)."""
    return await glossaries.get(ctx, glossary_id, principal)


@router.delete("/{glossary_id}", status_code=204, response_class=Response, responses=error_responses(404))
async def delete_glossary(glossary_id: str, ctx: Ctx, principal: TranslateScope) -> Response:
    """Delete a glossary this key made (admin: any); a /translate naming it afterwards gets 404."""
    await glossaries.delete(ctx, glossary_id, principal)
    return Response(status_code=204)
