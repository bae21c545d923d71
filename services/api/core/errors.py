"""One error shape for every failure: `error` (a stable code) for programs, `message` for people.

Status codes follow TGI's convention (conventions.md): 422 bad input, 424 generation failed, 429 rate limited,
503 a dependency is down; 401/403 for auth, 404 for unknown things.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("bridgex.api")


class ApiError(Exception):
    """An error with its HTTP status, a stable code and a message that says what to do about it."""

    def __init__(
        self, status: int, error: str, message: str, *, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.details, self.headers = details, headers or {}


def bad_input(message: str, *, field: str | None = None, details: Any = None) -> ApiError:
    return ApiError(422, "invalid_request", message, details=details or ({"field": field} if field else None))


def dependency_down(what: str, message: str) -> ApiError:
    return ApiError(503, f"{what}_unavailable", message, headers={"Retry-After": "5"})


def printable(text: str) -> str:
    """`text` as valid UTF-8: an unpaired surrogate from a JSON `\\ud800` becomes its escape, not a 500."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(request: Request, error: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": error,
        "message": printable(message),
        "request_id": getattr(request.state, "request_id", None),
    }
    if details is not None:
        body["details"] = details
    return body


def _is_json(request: Request) -> bool:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


def _validation_message(request: Request, exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    problems = []
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        where = ".".join(loc) or "body"
        msg = err.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err.get("type") == "json_invalid":
            where = "body"
            reason = str((err.get("ctx") or {}).get("error") or "malformed")
            at = err.get("loc", ("body", None))[-1]
            msg = (
                f"the body is not valid JSON ({reason}{f', at character {at}' if isinstance(at, int) else ''}); "
                'send one JSON object, e.g. {"text": "water", "source": "en", "target": "fr"}'
            )
        elif (
            where == "body"
            and err.get("type") in ("model_attributes_type", "dict_type", "missing")
            and not _is_json(request)
        ):
            got = request.headers.get("content-type") or "no Content-Type"
            msg = f"send the body as JSON with `Content-Type: application/json` (got {got!r})"
        problems.append({"field": where, "message": printable(msg)})
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request", problems


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s %s -> %s %s", request.method, request.url.path, exc.status, exc.message)
        return JSONResponse(error_body(request, exc.error, exc.message, exc.details), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, problems = _validation_message(request, exc)
        return JSONResponse(error_body(request, "invalid_request", message, problems), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed"}
        detail = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in detail:
            detail = "the request body could not be read: send UTF-8 encoded JSON with `Content-Type: application/json`"
        return JSONResponse(
            error_body(request, codes.get(exc.status_code, "http_error"), detail),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(
                request, "internal_error", f"internal error ({type(exc).__name__}); the request id is in the server log"
            ),
            500,
        )
