"""Reading a request body once, bounded, in pure ASGI middleware, and handing it on to the app.

The gateway's BodyLimit and the worker's guard both refuse a body over a size while it streams (never
buffering past the cap) and then let the app read the buffered copy. Standard library only: the worker guard
loads this inside vLLM's server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class BodyTooLarge(Exception):
    """The declared or received size passed the cap; `size` is what was seen so far."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class BodyTimeout(Exception):
    """A body chunk did not arrive within the chunk timeout."""


class Disconnected(Exception):
    """The client went away before the body was complete."""


async def read_body(
    scope: MutableMapping[str, Any], receive: Receive, max_bytes: int, chunk_timeout_s: float | None = None
) -> bytes:
    """The whole body, or BodyTooLarge (from Content-Length, or counted while it streams), BodyTimeout,
    Disconnected."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise BodyTooLarge(int(value))
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        try:
            async with asyncio.timeout(chunk_timeout_s):  # no task per chunk, as wait_for would make
                message = await receive()
        except TimeoutError as exc:
            raise BodyTimeout() from exc
        if message["type"] == "http.disconnect":
            raise Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(size)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app `body` first, then whatever the connection says next (a disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
