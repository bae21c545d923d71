"""Every dependency of the gateway in one place: settings, Redis, stores, Celery, the generation client, auth.

`AppContext` is built once per app by `create_app` and lives on `app.state.ctx`; routes receive its parts
through the FastAPI dependencies below, so tests and the benchmark can build apps with their own settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import redis
import redis.asyncio as aioredis
from bridgex.generation.client import GenerationClient
from celery import Celery
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.common.bridges import BridgeStore, FailureStore
from services.common.jobs import JobStore

from .core.config import ApiSettings
from .core.errors import ApiError
from .core.observability import Metrics
from .core.redis import RedisGate, async_client, sync_client
from .core.security import KeyRing, Principal, RateLimiter
from .services import bridge_cache
from .services.usage import UsageMeter, resolve_quotas
from .services.weights import ServedWeights


@dataclass
class AppContext:
    """The long-lived objects one gateway app uses."""

    settings: ApiSettings
    metrics: Metrics
    gate: RedisGate
    redis: aioredis.Redis
    redis_sync: redis.Redis
    jobs: JobStore
    bridges: BridgeStore
    failures: FailureStore
    keys: KeyRing
    limiter: RateLimiter
    generation: GenerationClient
    weights: ServedWeights
    usage: UsageMeter
    _celery: Celery | None = field(default=None, repr=False)
    scripts: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def model_name(self) -> str:
        """The model the gateway serves and looks bridges up for."""
        return self.settings.model

    @property
    def served_model(self) -> str:
        return self.settings.served_model_name or self.settings.model

    @property
    def celery(self) -> Celery:
        """The analyzer's Celery app (made at build; the broker is only touched when sending)."""
        if self._celery is None:
            self._celery = self.make_celery(self.settings)
        return self._celery

    @staticmethod
    def make_celery(settings: ApiSettings) -> Celery:
        from services.analyzer.celery_app import make_app

        app = make_app(settings)
        # the gateway must fail fast when the broker is down, not retry for minutes
        opts = dict(app.conf.broker_transport_options or {})
        opts.update({"socket_timeout": 2.0, "socket_connect_timeout": 1.0, "max_retries": 1})
        app.conf.broker_transport_options = opts
        app.conf.broker_connection_timeout = 1.0
        app.conf.broker_connection_max_retries = 1
        app.conf.task_publish_retry_policy = {
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        }
        return app

    @classmethod
    def build(cls, settings: ApiSettings) -> AppContext:
        metrics = Metrics()
        gate = RedisGate(metrics)
        rclient = async_client(settings.redis_url)
        rsync = sync_client(settings.redis_url)
        return cls(
            settings=settings,
            metrics=metrics,
            gate=gate,
            redis=rclient,
            redis_sync=rsync,
            jobs=JobStore(rsync, ttl_s=settings.job_ttl_s),
            bridges=BridgeStore(rsync),
            failures=FailureStore(rsync, base_s=settings.analysis_retry_base_s, max_s=settings.analysis_retry_max_s),
            keys=(ring := KeyRing(settings.api_keys, settings.auth_open)),
            limiter=RateLimiter(
                rclient,
                gate,
                metrics,
                settings.rate_limit_per_minute,
                auth_fail_limit=settings.auth_fail_limit,
                lockout_s=settings.auth_lockout_s,
            ),
            generation=(generation := GenerationClient.from_settings(settings)),
            weights=ServedWeights(generation),
            usage=UsageMeter(rclient, gate, metrics, ring, resolve_quotas(settings.key_quotas, ring)),
            _celery=cls.make_celery(settings),
        )

    async def aclose(self) -> None:
        await self.usage.drain()  # the last responses' counts, before Redis is closed
        await self.redis.aclose()
        self.redis_sync.close()


async def get_ctx(request: Request) -> AppContext:
    """The app's context. Dependencies here are async: FastAPI runs a sync one on a worker thread (a hop
    per request that cost ~0.2 ms each on the default path)."""
    return request.app.state.ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def get_settings_dep(ctx: Ctx) -> ApiSettings:
    return ctx.settings


async def request_id(request: Request) -> str:
    return request.state.request_id


RequestId = Annotated[str, Depends(request_id)]


BEARER = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>` (BRIDGEX_API_KEYS).")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key, as `X-API-Key`.")


def client_address(request: Request) -> str:
    """The caller's address: the peer's, or X-Forwarded-For's from a trusted proxy (services.api.server)."""
    return request.client.host if request.client else "anonymous"


def require(scope: str | None, *, bridge_prefetch: bool = False):
    """Dependency: an authenticated principal holding `scope` (None: any valid key), within its rate limit,
    from a client that is not locked out. The two security schemes only document the headers; KeyRing reads
    them. `bridge_prefetch` (POST /translate): the bridge lookup of a body with bridge auto rides on the rate
    limiter's round trip, and waits in `request.state.bridge_prefetch` (services.bridge_cache.Prefetch)."""

    async def dependency(
        request: Request,
        ctx: Ctx,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        _key: Annotated[str | None, Depends(API_KEY)],
    ) -> Principal:
        client = client_address(request)
        try:
            principal = ctx.keys.authenticate(request.headers, None, client)
        except ApiError as exc:
            if exc.error == "invalid_api_key":
                locked = await ctx.limiter.auth_failed(client)
                if locked is not None:
                    raise locked from exc
            raise
        # the lockout (and the rate limit) before the scope: a locked-out client gets 429 with a valid key too,
        # so a 403 naming scopes cannot tell it which keys are real (issue 22, item 7)
        pending = await bridge_cache.prefetch(request, ctx) if bridge_prefetch else None
        extra = await ctx.limiter.check(principal, client, also=(lambda p: pending.queue(p, ctx)) if pending else None)
        if pending is not None:
            pending.receive(extra)
            request.state.bridge_prefetch = pending
        if scope is not None:
            ctx.keys.authorize(principal, scope)
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{scope or 'key'}"
    return dependency


TranslateScope = Annotated[Principal, Depends(require("translate"))]
TranslateWithLookup = Annotated[Principal, Depends(require("translate", bridge_prefetch=True))]
"""POST /translate: TranslateScope, with its bridge lookup in the rate limiter's round trip."""
AnalyzeScope = Annotated[Principal, Depends(require("analyze"))]
AdminScope = Annotated[Principal, Depends(require("admin"))]
AnyKey = Annotated[Principal, Depends(require(None))]
