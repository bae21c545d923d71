"""A guard in front of vLLM's routes: the worker's API key, a body-size cap and a per-request prompt cap.

Loaded by vLLM through `--middleware services.worker.guard.WorkerGuard` (a pure ASGI class, so a body is
counted while it streams and never buffered past the cap). vLLM's own `--api-key` protects only `/v1/*`,
which leaves `/tokenize`, `/detokenize`, `/pooling` and the rest open; this checks every path but the probes.
The prompt cap is the fairness rule: vLLM schedules first come, first served, so one request carrying 200
prompts held every batch slot for the whole of its run (a 4-token request behind it waited 12 s on the tiny
model). At most `max_prompts` sequences per request (list prompts times `n`/`best_of`) leaves room for others.

Configuration comes from the launcher in BRIDGEX_WORKER_GUARD (JSON) and BRIDGEX_WORKER_API_KEY, read once.
Refusals use vLLM's OpenAI error shape, so clients parse one format.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any

from services.common.asgi_body import BodyTooLarge, Disconnected, read_body, replay

GUARD_ENV = "BRIDGEX_WORKER_GUARD"
KEY_ENV = "BRIDGEX_WORKER_API_KEY"
OPEN_PATHS = frozenset({"/health", "/ping", "/metrics", "/version"})
"""Probes and scraping answer without the key (they reveal nothing and must stay cheap)."""
GENERATION_PATHS = frozenset({"/v1/completions", "/v1/chat/completions", "/tokenize", "/v1/responses"})
DEFAULT_MAX_BODY = 256 * 1024
DEFAULT_MAX_PROMPTS = 8

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@lru_cache(maxsize=1)
def guard_config() -> tuple[int, int, bytes | None]:
    """(max body bytes, max prompts, sha256 of the key or None when the worker is open)."""
    try:
        cfg = json.loads(os.environ.get(GUARD_ENV) or "{}")
    except ValueError:
        cfg = {}
    key = os.environ.get(KEY_ENV) or None
    return (
        int(cfg.get("max_body_bytes", DEFAULT_MAX_BODY)),
        int(cfg.get("max_prompts", DEFAULT_MAX_PROMPTS)),
        hashlib.sha256(key.encode()).digest() if key else None,
    )


class Refused(Exception):
    def __init__(self, status: int, kind: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.param = status, kind, message, param


OBJECT_FIELDS = ("structured_outputs", "response_format", "stream_options", "logit_bias")
"""Fields vLLM reads as objects: other types reach `.get` before its validation and end in a 500 that also
resets the client's keep-alive connection (found by the reliability fuzz)."""


MAX_LENGTH_PENALTY = 50.0
"""Beam search divides by seq_len ** length_penalty: beyond this magnitude that power overflows, or underflows to
0, for sequences vLLM can hold, and the engine answers 500 ("float division by zero", found by the reliability
fuzz). Useful values lie within [-2, 2]."""


def check_body(body: Any, max_prompts: int) -> None:
    """Raise Refused when a generation body asks for more than `max_prompts` sequences, gives a non-object where
    vLLM expects an object, or a length_penalty the engine's arithmetic cannot take."""
    if not isinstance(body, dict):
        return
    penalty = body.get("length_penalty")
    number = isinstance(penalty, int | float) and not isinstance(penalty, bool)
    if number and not (math.isfinite(penalty) and abs(penalty) <= MAX_LENGTH_PENALTY):
        raise Refused(
            400,
            "BadRequestError",
            f"`length_penalty` must be a finite number between -{MAX_LENGTH_PENALTY:g} and "
            f"{MAX_LENGTH_PENALTY:g}, not {penalty!r}",
            "length_penalty",
        )
    for name in OBJECT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise Refused(
                400, "BadRequestError", f"`{name}` must be a JSON object or null, not {type(body[name]).__name__}", name
            )
    prompt = body.get("prompt")
    prompts = 1
    if isinstance(prompt, list) and prompt and not all(isinstance(t, int) for t in prompt):
        prompts = len(prompt)  # a list of strings or of token lists (a flat list of ints is one prompt)
    fan, by = 1, "n"
    for field in ("n", "best_of"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > fan:
            fan, by = value, field
    if prompts * fan > max_prompts:
        raise Refused(
            400,
            "BadRequestError",
            f"this request asks for {prompts * fan} sequences ({prompts} prompt(s) x {by}={fan}); this "
            f"worker takes at most {max_prompts} per request (BRIDGEX_WORKER_MAX_PROMPTS) so that one "
            "caller cannot fill every batch slot: send several requests",
            "prompt",
        )


def _authorized(headers: list[tuple[bytes, bytes]], digest: bytes) -> bool:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return hmac.compare_digest(hashlib.sha256(token.strip().encode()).digest(), digest)
    return False


async def _send_error(send: Send, exc: Refused) -> None:
    body = json.dumps(
        {"error": {"message": exc.message, "type": exc.kind, "param": exc.param, "code": exc.status}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class WorkerGuard:
    """ASGI middleware: key check on every non-probe path, body cap (413), sequence cap on generation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_body, max_prompts, digest = guard_config()
        path = scope.get("path", "")
        try:
            if digest is not None and path not in OPEN_PATHS and not _authorized(scope.get("headers", []), digest):
                raise Refused(
                    401,
                    "AuthenticationError",
                    "this generation worker requires its API key: send `Authorization: Bearer <key>` "
                    "(BRIDGEX_WORKER_API_KEY)",
                )
            if scope.get("method") not in ("POST", "PUT", "PATCH"):
                await self.app(scope, receive, send)
                return
            try:
                body = await read_body(scope, receive, max_body)
            except BodyTooLarge as exc:
                raise _too_large(exc.size, max_body) from exc
            except Disconnected:
                return
            if path in GENERATION_PATHS and body:
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None  # vLLM answers malformed JSON with its own 400
                check_body(parsed, max_prompts)
        except Refused as exc:
            await _send_error(send, exc)
            return

        await self.app(scope, replay(body, receive), send)


def _too_large(size: int, limit: int) -> Refused:
    return Refused(
        413,
        "RequestEntityTooLarge",
        f"request body of {size} bytes is over this worker's limit of {limit} "
        "(BRIDGEX_WORKER_MAX_BODY_BYTES); send a shorter prompt",
    )
