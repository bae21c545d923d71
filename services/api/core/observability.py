"""X-Request-Id and Prometheus metrics as one pure ASGI middleware (cheaper than BaseHTTPMiddleware).

Every app owns its registry, so two apps in one process (tests, benchmark) never share counters.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """Accept a caller's id when it is safe to log and forward, else make one."""
    if value and _SAFE_ID.match(value):
        return value
    return new_request_id()


class Metrics:
    """The gateway's metrics on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("bridgex_api_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "bridgex_api_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.in_flight = Gauge("bridgex_api_in_flight", "Requests being served", registry=r)
        self.bridge_source = Counter(
            "bridgex_api_bridge_source", "Where translate bridges came from", ["source"], registry=r
        )
        self.analysis_enqueued = Counter(
            "bridgex_api_analysis_enqueued", "Analysis jobs enqueued by auto-bridge misses", registry=r
        )
        self.analysis_submits = Counter(
            "bridgex_api_analysis_submits",
            "Auto-bridge misses that won the single-flight lock and submitted",
            registry=r,
        )
        self.redis_errors = Counter("bridgex_api_redis_errors", "Redis operations that failed", ["op"], registry=r)
        self.rate_limited = Counter("bridgex_api_rate_limited", "Requests refused with 429", registry=r)
        self.quota_exceeded = Counter(
            "bridgex_api_quota_exceeded", "Requests refused with 429 over their key's daily quota", registry=r
        )
        self.generation_errors = Counter(
            "bridgex_api_generation_errors", "Generation worker failures", ["kind"], registry=r
        )


class RequestContextMiddleware:
    """Sets `request.state.request_id`, echoes X-Request-Id, and records count/latency per route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = clean_request_id(incoming)
        scope.setdefault("state", {})["request_id"] = rid
        status_holder: dict[str, Any] = {"status": 500}
        raw_rid = rid.encode()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", raw_rid))
                message["headers"] = headers
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status_holder["status"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
