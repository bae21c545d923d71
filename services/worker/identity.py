"""`GET /bridgex/identity`: which weights this vLLM server serves, as BridgeX artifacts record them.

Loaded by vLLM through `--middleware services.worker.identity.identity_middleware`. The launcher computes the
identity before vLLM starts (bridgex.models.model_identity) and passes it in BRIDGEX_WORKER_IDENTITY (JSON), so
this module imports nothing heavy and costs nothing per request but a path comparison.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from bridgex.generation.client import IDENTITY_PATH
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

IDENTITY_ENV = "BRIDGEX_WORKER_IDENTITY"


@lru_cache(maxsize=1)
def served_identity() -> dict[str, Any]:
    raw = os.environ.get(IDENTITY_ENV, "")
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


async def identity_middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    if request.url.path == IDENTITY_PATH and request.method == "GET":
        ident = served_identity()
        if not ident:
            return JSONResponse(
                {
                    "error": {
                        "message": f"{IDENTITY_ENV} is not set: start the worker with `python -m services.worker`",
                        "type": "NotFound",
                        "code": 404,
                    }
                },
                status_code=404,
            )
        return JSONResponse(ident)
    return await call_next(request)
