"""Route only: `GET /v1/models`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.worker.models.protocol import ModelCard, ModelList

router = APIRouter()


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    serving = request.app.state.serving
    return ModelList(data=[ModelCard(id=serving.served_name, root=serving.model_id,
                                     max_model_len=serving.max_model_len)])
