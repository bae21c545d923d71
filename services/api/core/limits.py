"""Connection and body limits of the gateway, below FastAPI: what a slow or oversized client may hold.

- `HeadTimeoutProtocol` (uvicorn's httptools protocol plus a timer): a connection must deliver a complete
  request head within `head_timeout_s` of connecting or of its first byte, and the head may not exceed
  `MAX_HEAD_BYTES`. uvicorn itself waits for ever on a connection that sends nothing or trickles its headers
  (its keep-alive timer only runs between requests), so half-sent requests stayed open indefinitely.
- `BodyLimit` (pure ASGI): a body over `max_bytes` is refused with 413 while it streams (never parsed whole:
  a 100 MB body used to grow the gateway by 290 MiB before the text-length check), and every body chunk
  must arrive within the same timeout, else 408.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httptools
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.common.asgi_body import BodyTimeout, BodyTooLarge, Disconnected, read_body, replay

log = logging.getLogger("bridgex.api")

MAX_HEAD_BYTES = 64 * 1024


class HeadTimeoutProtocol(HttpToolsProtocol):
    """httptools protocol that closes connections whose request head is late or too large."""

    head_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes: int | None = 0  # None once the head is complete
        super().connection_made(transport)
        self._arm_head()

    def _arm_head(self) -> None:
        self._disarm_head()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_expired)

    def _disarm_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info(
                "closing a connection from %s: no complete request head within %.0fs", self.client, self.head_timeout_s
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)  # body bytes of the same read count too, so check after parsing
        super().data_received(data)
        if self._head_bytes is not None and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._disarm_head()  # still no complete head after this many bytes
            self.send_431()

    def send_431(self) -> None:
        body = json.dumps(
            {
                "error": "request_header_fields_too_large",
                "message": f"the request head is over {MAX_HEAD_BYTES} bytes; send fewer or shorter headers",
            }
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a keep-alive connection starting its next request
            self._arm_head()

    def on_headers_complete(self) -> None:
        self._disarm_head()
        self._head_bytes = None
        if len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers) > MAX_HEAD_BYTES:
            self._oversized = True  # a head that arrived whole in one read; answered by send_400_response
            raise httptools.HttpParserCallbackError("request head too large")
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if getattr(self, "_oversized", False):
            self.send_431()
        else:
            super().send_400_response(msg)

    def on_response_complete(self) -> None:
        self._head_bytes = 0
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head()
        super().connection_lost(exc)


async def over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    """uvicorn's answer past `limit_concurrency`, in our error shape (its own is plain text)."""
    body = json.dumps(
        {
            "error": "over_capacity",
            "message": "the gateway is at its connection limit (BRIDGEX_API_MAX_CONCURRENCY); retry shortly",
            "request_id": None,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", b"1"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def protocol_class(head_timeout_s: float) -> type[HeadTimeoutProtocol]:
    """A protocol class bound to one timeout (uvicorn instantiates it per connection). Also makes uvicorn's
    over-capacity answer ours: httptools_impl looks `service_unavailable` up as a module global per request."""
    httptools_impl.service_unavailable = over_capacity
    return type("BridgexHttpProtocol", (HeadTimeoutProtocol,), {"head_timeout_s": head_timeout_s})


class BodyLimit:
    """413 for bodies over `max_bytes`, 408 when a body chunk is late; the app then reads the buffered body."""

    def __init__(self, app: ASGIApp, max_bytes: int, chunk_timeout_s: float) -> None:
        self.app, self.max_bytes, self.chunk_timeout_s = app, max_bytes, chunk_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.max_bytes, self.chunk_timeout_s)
        except BodyTooLarge as exc:
            await self._refuse(scope, send, 413, "body_too_large", self._too_large(exc.size))
            return
        except BodyTimeout:
            await self._refuse(
                scope,
                send,
                408,
                "request_timeout",
                f"the request body did not arrive within {self.chunk_timeout_s:g}s; send the whole body promptly",
            )
            return
        except Disconnected:
            return
        await self.app(scope, replay(body, receive), send)

    def _too_large(self, size: int) -> str:
        return (
            f"the request body is {size} bytes or more; the limit is {self.max_bytes} "
            "(BRIDGEX_API_MAX_BODY_BYTES): send shorter texts or fewer batch items"
        )

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, error: str, message: str) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        body = json.dumps({"error": error, "message": message, "request_id": state.get("request_id")}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"connection", b"close"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
