"""ONE generation client (OpenAI `/v1/completions` over httpx), used by probes, gateway and evaluation.

It speaks to our CPU worker and to `vllm serve` alike. Why retries live here and nowhere else: every caller
needs the same rules. Connection errors and 503 are retried with exponential backoff; 429 is retried after the
server's Retry-After (bounded); other 4xx are the caller's fault and fail at once (`GenerationRejected`); 5xx
fail as `GenerationFailed`. Errors in OpenAI's `{"error": {...}}` shape and vLLM's older flat
`{"object": "error", "message": ...}` shape are both read.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from bridgex.settings import CoreSettings

T = TypeVar("T")
IDENTITY_PATH = "/bridgex/identity"
"""Where our worker launcher's middleware says which weights it serves (services.worker.identity)."""
MAX_RETRY_AFTER_S = 30.0
"""Longest Retry-After we honour; a server asking for more is treated as unavailable."""


class GenerationError(Exception):
    """Base of every client error."""


class WorkerUnavailable(GenerationError):
    """The worker could not be reached, or answered 503, after all retries."""


class GenerationRejected(GenerationError):
    """The worker refused the request (4xx): fix the request (or, for 429, send less)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class GenerationFailed(GenerationError):
    """The worker accepted the request but could not generate (5xx, 424, timeout, malformed answer)."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    usage: Usage
    model: str | None = None
    request_id: str | None = None
    stop_reason: str | int | None = field(default=None, compare=False)
    logprobs: TokenLogprobs | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TokenLogprobs:
    """The generated tokens with their log-probabilities and character offsets into the completion text (what
    the OpenAI completions API returns with `logprobs`)."""

    tokens: tuple[str, ...]
    token_logprobs: tuple[float, ...]
    text_offset: tuple[int, ...]


def _parse_logprobs(lp: Any) -> TokenLogprobs | None:
    if not isinstance(lp, dict):
        return None
    try:
        tokens = tuple(str(t) for t in lp.get("tokens") or ())
        values = tuple(float(v) if v is not None else float("-inf") for v in lp.get("token_logprobs") or ())
        offsets = tuple(int(o) for o in lp.get("text_offset") or ())
    except (TypeError, ValueError):
        return None
    if not (len(tokens) == len(values) == len(offsets)):
        return None
    return TokenLogprobs(tokens, values, offsets)


def _error_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or resp.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if body.get("message"):  # vLLM < 0.8 / TGI flat shapes
            return str(body["message"])
        if body.get("detail"):
            return str(body["detail"])
    return str(body)[:500]


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _parse_usage(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    return Usage(p, c, int(u.get("total_tokens") or p + c))


class GenerationClient:
    """Async client; use as `async with GenerationClient(url) as c: await c.complete("...")`."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        timeout: float = 60,
        retries: int = 2,
        backoff: float = 0.5,
        *,
        concurrency: int = 16,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self.concurrency = concurrency
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._model_lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: CoreSettings,
        *,
        timeout: float | None = None,
        concurrency: int = 16,
        retries: int | None = None,
    ) -> GenerationClient:
        """The worker the settings name (URL, served model, retries, API key); `timeout` and `retries` default
        to `worker_timeout_s` and `worker_retries`. The one place a service builds its client from settings."""
        return cls(
            settings.worker_url,
            model=settings.served_model_name,
            timeout=settings.worker_timeout_s if timeout is None else timeout,
            retries=settings.worker_retries if retries is None else retries,
            concurrency=concurrency,
            api_key=settings.worker_key,
        )

    async def __aenter__(self) -> GenerationClient:
        self._client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                transport=self._transport,
                headers=self._auth,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                limits=httpx.Limits(max_connections=max(self.concurrency, 1) * 2),
            )
        return self._http

    # ---------------------------------------------------------------------------------------- transport
    async def _request(
        self, method: str, path: str, *, json: Any = None, request_id: str | None = None
    ) -> httpx.Response:
        """One logical request with the retry policy; returns a 2xx response or raises a GenerationError."""
        headers = {"X-Request-Id": request_id} if request_id else {}
        last = ""
        for attempt in range(self.retries + 1):
            delay = self.backoff * (2**attempt) * (1 + 0.1 * random.random())
            try:
                resp = await self._client().request(method, path, json=json, headers=headers)
            except (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.RemoteProtocolError,
                httpx.ReadError,
                httpx.WriteError,
                httpx.PoolTimeout,
            ) as e:
                last = f"cannot reach the generation worker at {self.base_url}: {type(e).__name__}: {e}"
            except httpx.TimeoutException as e:  # read timeout: the worker is up but too slow; no retry
                raise GenerationFailed(
                    f"{method} {path} timed out after {self.timeout:g}s (worker {self.base_url})"
                ) from e
            else:
                if resp.is_success:
                    return resp
                msg = _error_message(resp)
                if resp.status_code == 503:
                    last = f"worker {self.base_url} unavailable (503): {msg}"
                    ra = _retry_after(resp)
                    if ra is not None:
                        delay = min(max(ra, delay), MAX_RETRY_AFTER_S)
                elif resp.status_code == 429:
                    ra = _retry_after(resp)
                    if attempt >= self.retries or (ra is not None and ra > MAX_RETRY_AFTER_S):
                        raise GenerationRejected(429, msg)
                    delay = ra if ra is not None else delay
                elif resp.status_code == 424 or resp.status_code >= 500:
                    raise GenerationFailed(f"{resp.status_code}: {msg}")
                else:
                    raise GenerationRejected(resp.status_code, msg)
            if attempt < self.retries:
                await asyncio.sleep(delay)
        raise WorkerUnavailable(f"{last} (after {self.retries + 1} attempts)")

    # ---------------------------------------------------------------------------------------- API
    async def models(self) -> list[str]:
        data = (await self._request("GET", "/v1/models")).json()
        return [m["id"] for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    async def health(self) -> bool:
        """True when `/health` answers 2xx (our worker: JSON; vLLM: empty body). Never raises."""
        try:
            resp = await self._client().get("/health")
        except httpx.HTTPError:
            return False
        return resp.is_success

    async def ready(self, timeout: float = 10.0) -> bool:
        """True when the worker generates one token within `timeout` ("can generate", not just "is up").
        Never raises; no retries (a readiness probe must answer fast)."""
        try:
            resp = await self._client().post(
                "/v1/completions",
                timeout=timeout,
                json={
                    "model": await asyncio.wait_for(self._model_name(), timeout),
                    "prompt": "Hello",
                    "max_tokens": 1,
                    "temperature": 0.0,
                },
            )
        except (httpx.HTTPError, GenerationError, TimeoutError):
            return False
        return resp.is_success

    async def identity(self) -> dict[str, Any] | None:
        """The weights the worker serves (`GET /bridgex/identity`: model_id, revision, weight_hash), or None
        when the server does not say (a vLLM server not started by `python -m services.worker`)."""
        try:
            resp = await self._request("GET", IDENTITY_PATH)
        except GenerationRejected as e:
            if e.status == 404:
                return None
            raise
        try:
            body = resp.json()
        except ValueError as e:
            raise GenerationFailed(f"malformed identity from {self.base_url}: {resp.text[:200]}") from e
        return body if isinstance(body, dict) else None

    async def count_tokens(self, text: str) -> int:
        """How many tokens `text` is for the served model, special tokens excluded (vLLM `POST /tokenize`)."""
        body = {"model": await self._model_name(), "prompt": text, "add_special_tokens": False}
        resp = await self._request("POST", "/tokenize", json=body)
        try:
            return int(resp.json()["count"])
        except (ValueError, KeyError, TypeError) as e:
            raise GenerationFailed(f"malformed /tokenize answer from {self.base_url}: {resp.text[:200]}") from e

    async def _model_name(self) -> str:
        if self.model is None:
            async with self._model_lock:
                if self.model is None:
                    names = await self.models()
                    if not names:
                        raise GenerationFailed(f"worker {self.base_url} serves no model")
                    self.model = names[0]
        return self.model

    async def complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 16,
        temperature: float = 0.0,
        stop: Sequence[str] | None = ("\n",),
        request_id: str | None = None,
        top_p: float = 1.0,
        seed: int | None = None,
        logprobs: bool = False,
    ) -> Completion:
        """One completion (greedy and stopping at a newline by default, as the method's prompts expect).
        `logprobs`: also return each generated token's log-probability (`Completion.logprobs`)."""
        body: dict[str, Any] = {
            "model": await self._model_name(),
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "n": 1,
            "stream": False,
        }
        if stop:
            body["stop"] = list(stop)
        if seed is not None:
            body["seed"] = seed
        if logprobs:
            body["logprobs"] = 1
        rid = request_id or uuid.uuid4().hex
        resp = await self._request("POST", "/v1/completions", json=body, request_id=rid)
        return self._completions(resp, rid)[0]

    def _completions(self, resp: httpx.Response, rid: str) -> list[Completion]:
        try:
            data = resp.json()
            choices = sorted(data["choices"], key=lambda c: int(c.get("index") or 0))
            texts = [c.get("text") or "" for c in choices]
            if not choices:
                raise IndexError("no choices")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise GenerationFailed(f"malformed completion from {self.base_url}: {resp.text[:300]}") from e
        usage = _parse_usage(data.get("usage"))
        return [
            Completion(
                text=text,
                finish_reason=c.get("finish_reason"),
                usage=usage,
                model=data.get("model"),
                request_id=resp.headers.get("x-request-id", rid),
                stop_reason=c.get("stop_reason"),
                logprobs=_parse_logprobs(c.get("logprobs")),
            )
            for c, text in zip(choices, texts, strict=True)
        ]

    async def complete_beams(
        self,
        prompt: str,
        beams: int,
        *,
        max_tokens: int = 16,
        stop: Sequence[str] | None = ("\n",),
        request_id: str | None = None,
    ) -> list[Completion]:
        """The `beams` best completions by beam search (vLLM's `use_beam_search`), best first, each with its
        tokens' log-probabilities. Deterministic, like greedy decoding."""
        body: dict[str, Any] = {
            "model": await self._model_name(),
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "n": beams,
            "use_beam_search": True,
            "logprobs": 1,
            "stream": False,
        }
        if stop:
            body["stop"] = list(stop)
        rid = request_id or uuid.uuid4().hex
        resp = await self._request("POST", "/v1/completions", json=body, request_id=rid)
        return self._completions(resp, rid)

    async def stream_complete(
        self,
        prompt: str,
        *,
        max_tokens: int = 16,
        stop: Sequence[str] | None = ("\n",),
        request_id: str | None = None,
    ) -> AsyncIterator[str]:
        """Greedy completion as the worker produces it: yields text deltas. Closing the iterator early (the
        caller went away) closes the connection, and vLLM aborts the request. Errors before the first delta
        raise like `complete` (one attempt: a stream is not retried)."""
        body: dict[str, Any] = {
            "model": await self._model_name(),
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "n": 1,
            "stream": True,
        }
        if stop:
            body["stop"] = list(stop)
        headers = {"X-Request-Id": request_id or uuid.uuid4().hex}
        try:
            async with self._client().stream("POST", "/v1/completions", json=body, headers=headers) as resp:
                if not resp.is_success:
                    await resp.aread()
                    msg = _error_message(resp)
                    if resp.status_code == 503:
                        raise WorkerUnavailable(f"worker {self.base_url} unavailable (503): {msg}")
                    if resp.status_code == 424 or resp.status_code >= 500:
                        raise GenerationFailed(f"{resp.status_code}: {msg}")
                    raise GenerationRejected(resp.status_code, msg)
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        return
                    try:
                        chunk = json.loads(payload)
                    except ValueError as e:
                        raise GenerationFailed(f"malformed stream chunk from {self.base_url}: {payload[:200]}") from e
                    if isinstance(chunk, dict) and chunk.get("error"):
                        raise GenerationFailed(f"the worker failed mid-stream: {chunk['error']}")
                    for c in chunk.get("choices") or ():
                        if c.get("text"):
                            yield c["text"]
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise WorkerUnavailable(f"cannot reach the generation worker at {self.base_url}: {e}") from e
        except httpx.TimeoutException as e:
            raise GenerationFailed(f"the stream timed out after {self.timeout:g}s (worker {self.base_url})") from e
        except (httpx.RemoteProtocolError, httpx.ReadError) as e:
            raise GenerationFailed(f"the worker at {self.base_url} broke the stream: {e}") from e

    async def complete_many(
        self,
        prompts: Sequence[str],
        *,
        max_tokens: int = 16,
        temperature: float = 0.0,
        stop: Sequence[str] | None = ("\n",),
        request_id: str | None = None,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[Completion]:
        """Completions for many prompts, sent concurrently (at most `concurrency` in flight) so the worker
        batches them; results in input order. Request ids are `{request_id}-{i}` when one is given."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(i: int, p: str) -> Completion:
            async with sem:
                rid = f"{request_id}-{i}" if request_id else None
                return await self.complete(
                    p, max_tokens=max_tokens, temperature=temperature, stop=stop, request_id=rid, top_p=top_p, seed=seed
                )

        await self._model_name()
        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))


class SyncGenerationClient:
    """Blocking wrapper for scripts and notebooks (each call runs its own event loop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The arguments of GenerationClient, passed through unchanged for each call."""
        GenerationClient(*args, **kwargs)  # a wrong argument fails here, not at the first call
        self._args = args
        self._kwargs = kwargs

    def _run(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        async def go() -> Any:
            async with GenerationClient(*self._args, **self._kwargs) as c:
                return await getattr(c, fn)(*args, **kwargs)

        return _run_sync(go())

    def complete(self, prompt: str, **kwargs: Any) -> Completion:
        return self._run("complete", prompt, **kwargs)

    def complete_many(self, prompts: Sequence[str], **kwargs: Any) -> list[Completion]:
        return self._run("complete_many", prompts, **kwargs)

    def models(self) -> list[str]:
        return self._run("models")

    def health(self) -> bool:
        return self._run("health")

    def identity(self) -> dict[str, Any] | None:
        return self._run("identity")


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("SyncGenerationClient called inside a running event loop; use GenerationClient")


__all__ = [
    "Completion",
    "GenerationClient",
    "GenerationError",
    "GenerationFailed",
    "GenerationRejected",
    "SyncGenerationClient",
    "Usage",
    "WorkerUnavailable",
]
