"""The BridgeX gateway app (`create_app`); `python -m services.api` serves it with its limits (server.py).

Routes live one module per resource in `routes/`, behaviour in `services/`, dependencies in `deps.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bridgex.generation.client import GenerationRejected
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .core.config import ApiSettings, get_settings
from .core.errors import install_error_handlers
from .core.limits import BodyLimit
from .core.observability import RequestContextMiddleware
from .deps import AppContext
from .routes import analyze, bridges, detect, health, jobs, languages, translate, usage
from .routes import glossaries as glossary_routes
from .schemas.errors import PROTECTED
from .services import detection
from .services.bridging import warm_typology
from .services.weights import refuse_mixed_weights

log = logging.getLogger("bridgex.api")
UI_DIR = Path(__file__).with_name("ui")
"""The dashboard at /ui: static HTML + one script that reads only the public API (no build step, no CDN)."""

DESCRIPTION = """Translate through a bridge language chosen by neuron overlap + HSIC (BridgeX-ICL).

Auth: `Authorization: Bearer <key>` or `X-API-Key: <key>` (security schemes below); scopes `translate`
(translate and reads), `analyze` (jobs), `admin` (DELETE, every job). Every response carries `X-Request-Id`.

Errors share one body, `{"error": <code>, "message": <what to fix>, "request_id", "details"}`: 400 unreadable
body, 401 no or unknown key, 403 missing scope, 408 too slow a client, 413 body too large, 422 bad input,
424 the generation worker failed, 429 rate limited, locked out or over the key's daily quota (Retry-After),
503 a dependency is down. `GET /usage`: the calling key's usage and quota.
Limits: BRIDGEX_MAX_TEXT_CHARS and BRIDGEX_MAX_TEXT_TOKENS per text, 64 items per batch (each counts against
the rate limit), BRIDGEX_API_MAX_BODY_BYTES per body.
"""


async def warm_worker(ctx: AppContext, every_s: float = 2.0, within_s: float = 900.0) -> bool:
    """One completion with log-probabilities, retried every `every_s` until the worker answers (at most `within_s`):
    `make run` starts the gateway beside a worker that needs minutes, and the first user's request must not pay
    vLLM's logprobs set-up (~2-5 s on a CPU). True once it answered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            await ctx.generation.complete("Hello", max_tokens=1, logprobs=True)
            return True
        except Exception as exc:  # not up yet, or busy (429): try again, quietly
            if isinstance(exc, GenerationRejected) and exc.status != 429:
                log.warning("worker warm-up refused: %s", exc)  # up and refusing (a wrong key): no use asking again
                return False
            if loop.time() + every_s > deadline:
                log.info("worker warm-up given up after %.0f s: %s", within_s, exc)
                return False
        await asyncio.sleep(every_s)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build a gateway app for `settings` (default: BRIDGEX_* environment)."""
    settings = settings or get_settings()
    ctx = AppContext.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auth_open:
            log.warning("BridgeX API in OPEN MODE (BRIDGEX_AUTH_OPEN=true): no API key is required. Development only.")
        elif not settings.api_keys:
            log.warning("no API keys configured (BRIDGEX_API_KEYS): every protected endpoint answers 401")
        # two workers serving different weights would answer one prompt two ways: refused at start, before any
        # request reaches them (one URL: nothing to compare)
        await refuse_mixed_weights(ctx.generation)
        # load the typology data off the request path (the first auto-bridge fallback would pay ~seconds)
        warm = asyncio.create_task(asyncio.to_thread(warm_typology, settings))
        # vLLM's first request with log-probabilities (every translation's final step asks for them) sets up
        # its logprobs path: pay that here, not in the first user's request
        warm_gen = asyncio.create_task(warm_worker(ctx))
        # the language detector likewise (~1 s and 350 MB with every model; /detect and source=auto use it)
        warm_detect = asyncio.create_task(asyncio.to_thread(detection.warm))
        async with ctx.generation:
            yield
        warm.cancel()
        warm_gen.cancel()
        warm_detect.cancel()
        await ctx.aclose()

    app = FastAPI(title="BridgeX API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.ctx = ctx
    install_error_handlers(app)
    for module in (translate, detect, analyze, jobs, bridges, languages, usage):
        app.include_router(module.router, responses=PROTECTED)
    app.include_router(glossary_routes.router, responses=PROTECTED)
    app.include_router(health.router)
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes, chunk_timeout_s=settings.api_header_timeout_s)
    app.add_middleware(RequestContextMiddleware, metrics=ctx.metrics)  # outermost: ids and metrics for all
    return app
