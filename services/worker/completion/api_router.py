"""Route only: `POST /v1/completions`; behaviour lives in serving.py."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.worker.completion.protocol import CompletionRequest, CompletionResponse

router = APIRouter()


@router.post("/v1/completions", response_model=CompletionResponse)
async def create_completion(body: CompletionRequest, request: Request) -> CompletionResponse | Response:
    return await request.app.state.serving.create_completion(body, request.state.request_id)
