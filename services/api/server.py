"""Run the gateway: `python -m services.api` (uvicorn with the limits of BRIDGEX_* settings applied).

Refuses to start on configurations that would be unsafe: open auth mode bound to anything but loopback, and
open mode together with API keys (a request without a key would get every scope). Proxy headers
(X-Forwarded-For) are believed only from `trusted_proxies`; with none configured they are ignored, so a
client cannot mint a fresh rate-limit bucket per forged header.
"""

from __future__ import annotations

import ipaddress
import logging

import uvicorn

from .core.config import ApiSettings
from .core.limits import protocol_class
from .main import create_app

log = logging.getLogger("bridgex.api")


class UnsafeConfiguration(ValueError):
    """ApiSettings the gateway refuses to start with; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check(settings: ApiSettings, host: str) -> None:
    """Raise UnsafeConfiguration for open mode with keys, or open mode on a non-loopback address."""
    if settings.auth_open and settings.api_keys:
        raise UnsafeConfiguration(
            "BRIDGEX_AUTH_OPEN=true and BRIDGEX_API_KEYS are both set: a request without a key would get every "
            "scope. Unset BRIDGEX_AUTH_OPEN to use the keys, or unset BRIDGEX_API_KEYS for local open mode."
        )
    if settings.auth_open and not is_loopback(host):
        raise UnsafeConfiguration(
            f"open auth mode (BRIDGEX_AUTH_OPEN=true) may only bind a loopback address, not {host!r}: "
            "set BRIDGEX_API_KEYS (and unset BRIDGEX_AUTH_OPEN) to serve other machines, or bind 127.0.0.1."
        )


def uvicorn_config(
    settings: ApiSettings, host: str | None = None, port: int | None = None, log_level: str | None = None
) -> uvicorn.Config:
    host = host or settings.api_host
    check(settings, host)
    trusted = list(settings.trusted_proxies)
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port or settings.api_port,
        http=protocol_class(settings.api_header_timeout_s),
        limit_concurrency=settings.api_max_concurrency,
        timeout_keep_alive=int(max(1, settings.api_keepalive_s)),
        proxy_headers=bool(trusted),
        forwarded_allow_ips=",".join(trusted) if trusted else None,
        server_header=False,
        log_level=(log_level or settings.log_level).lower(),
        access_log=False,
    )


def serve(
    settings: ApiSettings, host: str | None = None, port: int | None = None, log_level: str | None = None
) -> None:
    server = uvicorn.Server(uvicorn_config(settings, host, port, log_level))
    server.run()
    if not server.started:  # the lifespan refused to start (logged): exit non-zero, as uvicorn.run does
        raise SystemExit(3)
