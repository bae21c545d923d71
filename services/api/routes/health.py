"""GET /health (liveness), GET /ready (Redis, broker, a one-token generation), GET /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..core.redis import async_client
from ..deps import AppContext, Ctx
from ..services import config_check

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 2.0
GENERATE_TIMEOUT_S = 4.0
"""The one-token generation may wait behind a busy worker's batch; still under the k8s probe's 5 s."""


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process serves requests (no dependency is touched)."""
    return {"status": "ok"}


async def _check(fn: Callable[[], Awaitable[Any]], timeout: float = CHECK_TIMEOUT_S) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        ok = await asyncio.wait_for(fn(), timeout)
        detail = "ok" if ok else "not ready"
        ok = bool(ok)
    except TimeoutError:
        ok, detail = False, f"no answer within {timeout:.0f}s"
    except Exception as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}"[:300]
    return {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - t0) * 1e3, 2)}


async def _broker_ok(ctx: AppContext) -> bool:
    url = ctx.settings.broker
    if url == ctx.settings.redis_url:
        return bool(await ctx.redis.ping())
    if url.startswith(("redis://", "rediss://", "unix://")):
        client = async_client(url)
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    def connect() -> bool:
        with ctx.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)
        return True

    return await asyncio.to_thread(connect)


@router.get("/ready", responses={503: {"description": "A dependency is down (see checks)"}})
async def ready(ctx: Ctx) -> JSONResponse:
    """Readiness: Redis answers PING, the broker accepts a connection, the generation worker generates one
    token (vLLM's /health only says the engine process is alive). `configuration` compares this gateway's method
    configuration with the analyzer's (services.common.served)."""
    redis_c, broker_c, worker_c, weights = await asyncio.gather(
        _check(ctx.redis.ping),
        _check(lambda: _broker_ok(ctx)),
        _check(lambda: ctx.generation.ready(timeout=GENERATE_TIMEOUT_S), GENERATE_TIMEOUT_S + 0.5),
        # which weights the worker serves ("verified", or "unverified": auto then serves no measured bridge unless
        # BRIDGEX_ALLOW_UNVERIFIED_WORKER): reported below, not a readiness condition
        ctx.weights.report(allow_unverified=ctx.settings.allow_unverified_worker),
    )
    checks = {"redis": redis_c, "broker": broker_c, "generation_worker": worker_c}
    ok = all(c["ok"] for c in checks.values())
    body: dict[str, Any] = {"status": "ready" if ok else "not_ready", "checks": checks, "worker_weights": weights}
    if len(ctx.generation.base_urls) > 1:  # BRIDGEX_WORKER_URLS: each worker's state (out of service: why)
        body["generation_workers"] = ctx.generation.workers()
    # the method configuration of this gateway against the analyzer's: a difference is reported (and warned
    # about in auto answers), not a reason to take the gateway out of service
    try:
        body["configuration"] = await asyncio.wait_for(config_check.agreement(ctx), CHECK_TIMEOUT_S)
    except Exception as exc:
        body["configuration"] = {"agree": None, "detail": f"cannot read the analyzer's configuration: {exc}"}
    return JSONResponse(body, 200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(ctx: Ctx) -> Response:
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
