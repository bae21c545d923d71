"""The one error body every failure returns, and the error responses each kind of route documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """`error` is a stable code for programs; `message` says what happened and what to do about it."""

    error: str = Field(..., examples=["invalid_request"])
    message: str = Field(..., examples=["text: text is empty or only whitespace; send the word to translate"])
    request_id: str | None = Field(None, description="Also in the X-Request-Id header and the server log.")
    details: Any = Field(None, description="Per-field problems of a 422 ({field, message}), when any.")


_DESCRIPTIONS = {
    400: "The body could not be read (not UTF-8 JSON); send JSON with `Content-Type: application/json`",
    401: "No API key, or an unknown one (`Authorization: Bearer <key>` or `X-API-Key`)",
    403: "The key lacks the scope this route needs",
    404: "Not found",
    408: "The request head or body arrived too slowly",
    409: "Conflict with the resource's state",
    413: "Body over BRIDGEX_API_MAX_BODY_BYTES",
    422: "Bad input; the message says which field and what to fix",
    424: "The generation worker answered with an error",
    429: "Rate limited (per key, batch items counted), locked out after invalid keys, or over the key's daily "
    "quota (quota_exceeded); see Retry-After",
    503: "A dependency (Redis, the broker or the generation worker) is unavailable; see Retry-After",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these status codes, each with the ErrorBody schema."""
    return {c: {"model": ErrorBody, "description": _DESCRIPTIONS[c]} for c in codes}


PROTECTED = error_responses(400, 401, 403, 408, 413, 422, 429, 503)
"""What any authenticated route may answer besides its own success."""
