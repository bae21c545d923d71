"""CPU generation worker: an OpenAI-compatible completions server (the GPU twin is `vllm serve`, see vllm/).

`uvicorn services.worker.main:create_app --factory`; configured by `BRIDGEX_*` (see bridgex.settings).
The model loads once, during startup, so `/health` answers only when the worker can generate.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bridgex.settings import Settings, get_settings
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.worker.completion.api_router import router as completion_router
from services.worker.completion.serving import OpenAIServingCompletion
from services.worker.engine import Engine, SamplingParams
from services.worker.errors import error_body, install_error_handlers
from services.worker.metrics import WorkerMetrics
from services.worker.models.api_router import router as models_router

log = logging.getLogger("bridgex.worker")
READY_PROMPT = "Hello"


def _max_model_len(model: Any, settings: Settings) -> int:
    if settings.max_model_len:
        return int(settings.max_model_len)
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return int(getattr(cfg, "max_position_embeddings", None) or 2048)


def _configure_logging(settings: Settings) -> None:
    """Request lines (with X-Request-Id) go to stderr at INFO unless the host process configured logging;
    BRIDGEX_LOG_LEVEL overrides the level."""
    logger = logging.getLogger("bridgex")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(settings.log_level.upper())


def _set_threads(settings: Settings) -> None:
    """Intra-op threads for torch (`torch_threads` setting or BRIDGEX_TORCH_THREADS). On a CPU shared with
    other processes 1 thread avoids OpenMP spin-waiting and batches scale far better (see the benchmark)."""
    n = settings.torch_threads
    if n:
        import torch

        torch.set_num_threads(int(n))


def create_app(settings: Settings | None = None, *, loaded: Any = None) -> FastAPI:
    """Build the worker app. `loaded` (a bridgex.models.LoadedModel) skips loading, for in-process tests."""
    settings = settings or get_settings()
    _configure_logging(settings)
    metrics = WorkerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _set_threads(settings)
        lm = loaded
        if lm is None:
            from bridgex.models import load_model

            t0 = time.perf_counter()
            lm = await asyncio.to_thread(load_model, settings.model, device=settings.device,
                                         dtype=settings.dtype, revision=settings.model_revision)
            log.info("loaded %s (%s) in %.1fs", lm.model_id, lm.revision, time.perf_counter() - t0)
        engine = Engine(lm.model, lm.tokenizer, max_batch_size=settings.max_batch_size,
                        batch_wait_ms=settings.batch_wait_ms, max_queue=settings.max_queue, metrics=metrics)
        metrics.bind(lambda: engine.queue_depth, lambda: engine.running_batch)
        served = settings.served_model_name or settings.model
        app.state.engine = engine
        app.state.serving = OpenAIServingCompletion(
            engine, served_name=served, model_id=lm.model_id, aliases={settings.model},
            max_model_len=_max_model_len(lm.model, settings), max_tokens_limit=settings.max_tokens_limit,
            request_timeout_s=settings.request_timeout_s)
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(title="BridgeX generation worker", version="0.1.0", lifespan=lifespan)
    app.state.metrics = metrics
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(completion_router)
    app.include_router(models_router)

    @app.middleware("http")
    async def request_id_mw(request: Request,
                            call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            route = request.scope.get("route")
            endpoint = getattr(route, "path", "other")
            dt = time.perf_counter() - t0
            metrics.requests.labels(endpoint, str(status)).inc()
            metrics.latency.labels(endpoint).observe(dt)
            if endpoint != "/metrics":
                log.info("request_id=%s %s %s %d %.3fs", rid, request.method, request.url.path, status, dt)
        response.headers["X-Request-Id"] = rid
        return response

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        engine: Engine | None = getattr(request.app.state, "engine", None)
        if engine is None or not engine.healthy:
            return JSONResponse(error_body(503, "generation engine is not running"), status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        """Readiness that means something: one real one-token generation (SGLang's /health_generate)."""
        engine: Engine | None = getattr(request.app.state, "engine", None)
        if engine is None or not engine.healthy:
            return JSONResponse(error_body(503, "generation engine is not running"), status_code=503)
        t0 = time.perf_counter()
        try:
            res = await engine.generate(engine.tokenize(READY_PROMPT), SamplingParams(max_tokens=1),
                                        request.state.request_id, timeout=min(settings.request_timeout_s, 60))
        except Exception as e:
            return JSONResponse(error_body(503, f"test generation failed: {e}"), status_code=503,
                                headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready", "model": request.app.state.serving.served_name,
                             "generated_tokens": res.completion_tokens,
                             "latency_s": round(time.perf_counter() - t0, 4)})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
