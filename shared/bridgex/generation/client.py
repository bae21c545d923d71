"""ONE generation client (OpenAI `/v1/completions` over httpx), used by probes, gateway and evaluation.

It speaks to our CPU worker and to `vllm serve` alike. Why retries live here and nowhere else: every caller
needs the same rules. Connection errors and 503 are retried with exponential backoff; 429 is retried after the
server's Retry-After (bounded); other 4xx are the caller's fault and fail at once (`GenerationRejected`); 5xx
fail as `GenerationFailed`. Errors in OpenAI's `{"error": {...}}` shape and vLLM's older flat
`{"object": "error", "message": ...}` shape are both read.

Several workers (BRIDGEX_WORKER_URLS) are one client too: requests go to the replica with the fewest outstanding
(bridgex.generation.pool), a replica that cannot be reached or answers 503 is taken out, and a request that failed
there before any answer is sent at once to a replica it has not tried (generation at temperature 0 is
deterministic, so the answer is the same). With one URL the path is today's: same retries, no probe task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from bridgex.generation.pool import (
    IDENTITY_PATH,
    PROBE_INTERVAL_S,
    Replica,
    WorkerPool,
    mismatch_message,
    weights_of,
)
from bridgex.settings import CoreSettings

T = TypeVar("T")
log = logging.getLogger("bridgex.generation")
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


class WorkerMismatch(GenerationError):
    """Two workers of one client serve different weights; the message names both URLs and hashes."""


_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)
"""The replica is not there: out of service at once."""
_BROKEN = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
"""The connection broke before an answer (a worker killed mid-request): another replica is tried, this one probed."""


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

    @property
    def finished(self) -> bool:
        """The whole completion: it ended at a stop string or the end token, not cut by max_tokens."""
        return self.finish_reason == "stop"


@dataclass(frozen=True)
class TokenLogprobs:
    """The generated tokens with their log-probabilities and character offsets into the completion text (what
    the OpenAI completions API returns with `logprobs`)."""

    tokens: tuple[str, ...]
    token_logprobs: tuple[float, ...]
    text_offset: tuple[int, ...]
    top: tuple[dict[str, float], ...] = ()
    """Per position, the most likely tokens with their log-probabilities (`logprobs` > 1 asks for them)."""


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
    top: tuple[dict[str, float], ...] = ()
    raw_top = lp.get("top_logprobs")
    if isinstance(raw_top, list) and len(raw_top) == len(tokens):
        try:
            top = tuple({str(k): float(v) for k, v in (t or {}).items()} for t in raw_top)
        except (TypeError, ValueError, AttributeError):
            top = ()
    return TokenLogprobs(tokens, values, offsets, top)


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
        base_url: str | Sequence[str],
        model: str | None = None,
        timeout: float = 60,
        retries: int = 2,
        backoff: float = 0.5,
        *,
        concurrency: int = 16,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        """`base_url`: one worker, or several (requests spread over them; see bridgex.generation.pool, whose health
        probe runs every `probe_interval_s` while the client is open)."""
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.base_urls: tuple[str, ...] = tuple(dict.fromkeys(u.rstrip("/") for u in urls))
        self.base_url = self.base_urls[0] if self.base_urls else ""
        """The first worker (the only one with one URL)."""
        self._pool = WorkerPool(self.base_urls, interval_s=probe_interval_s)
        self._probe_http: httpx.AsyncClient | None = None
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self.concurrency = concurrency
        self._transport = transport
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
        """The workers the settings name (`worker_endpoints`: BRIDGEX_WORKER_URLS, else BRIDGEX_WORKER_URL), served
        model, retries, API key; `timeout` and `retries` default to `worker_timeout_s` and `worker_retries`. The one
        place a service builds its client from settings."""
        return cls(
            settings.worker_endpoints,
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
        await self._pool.stop()
        for r in self._pool.replicas:
            if r.http is not None:
                await r.http.aclose()
                r.http = None
        if self._probe_http is not None:
            await self._probe_http.aclose()
            self._probe_http = None

    @property
    def where(self) -> str:
        """The worker URL(s), for messages."""
        return ", ".join(self.base_urls)

    def workers(self) -> list[dict[str, Any]]:
        """Each worker's state (url, up, outstanding, sent, reason): /ready shows it with several workers."""
        return self._pool.status()

    def _client(self, replica: Replica | None = None) -> httpx.AsyncClient:
        """The HTTP client of `replica` (default: the first), made on first use; with several workers this also
        starts the pool's probe task on the running loop."""
        r = replica or self._pool.replicas[0]
        if r.http is None:
            r.http = httpx.AsyncClient(
                base_url=r.url,
                transport=self._transport,
                headers=self._auth,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                limits=httpx.Limits(max_connections=max(self.concurrency, 1) * 2),
            )
            if not self._pool.single:
                self._start_probing()
        return r.http

    def _start_probing(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # made outside a loop (app construction): started by the first use inside one
        if self._probe_http is None:
            self._probe_http = httpx.AsyncClient(
                transport=self._transport, headers=self._auth, limits=httpx.Limits(max_connections=8)
            )
        self._pool.start(self._probe_http)

    # ---------------------------------------------------------------------------------------- transport
    async def _request(
        self, method: str, path: str, *, json: Any = None, request_id: str | None = None
    ) -> httpx.Response:
        """One logical request with the retry policy; returns a 2xx response or raises a GenerationError."""
        return (await self._send(method, path, json=json, request_id=request_id))[0]

    async def _send(
        self, method: str, path: str, *, json: Any = None, request_id: str | None = None
    ) -> tuple[httpx.Response, Replica]:
        """`_request`, and the replica that answered. A replica failure (unreachable, connection broken, 503) is
        sent at once to a replica this request has not tried (those in service first), without spending a retry;
        the retries (with backoff) start once none is left, each again over every replica."""
        headers = {"X-Request-Id": request_id} if request_id else {}
        pool = self._pool
        tried: list[Replica] = []
        last = ""
        attempt = sent = 0
        while True:
            rep = pool.pick(tried)
            http = rep.http or self._client(rep)
            delay = self.backoff * (2**attempt) * (1 + 0.1 * random.random())
            failover = False
            rep.outstanding += 1
            rep.sent += 1
            sent += 1
            try:
                resp = await http.request(method, path, json=json, headers=headers)
            except _UNREACHABLE as e:
                last = f"cannot reach the generation worker at {rep.url}: {type(e).__name__}: {e}"
                pool.mark_down(rep, last)
                failover = True
            except (*_BROKEN, httpx.PoolTimeout) as e:
                last = f"cannot reach the generation worker at {rep.url}: {type(e).__name__}: {e}"
                if not isinstance(e, httpx.PoolTimeout):
                    pool.suspect(rep)
                    failover = True
            except httpx.TimeoutException as e:  # read timeout: the worker is up but too slow; no retry
                raise GenerationFailed(f"{method} {path} timed out after {self.timeout:g}s (worker {rep.url})") from e
            except Exception as e:  # not an httpx error: the HTTP stack broke on a connection the worker dropped
                log.warning("a request to %s failed inside the HTTP client", rep.url, exc_info=True)
                last = f"the request to the generation worker at {rep.url} failed: {type(e).__name__}: {e}"
                pool.suspect(rep)
                failover = True
            else:
                if resp.is_success:
                    return resp, rep
                msg = _error_message(resp)
                if resp.status_code == 503:
                    last = f"worker {rep.url} unavailable (503): {msg}"
                    pool.mark_down(rep, last)
                    failover = True
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
            finally:
                rep.outstanding -= 1
            if failover and not pool.single and rep not in tried:
                tried.append(rep)
                if pool.untried(tried):
                    continue  # nothing came back from rep: the same prompt elsewhere gives the same answer
            if attempt >= self.retries:
                break
            attempt += 1
            tried.clear()
            await asyncio.sleep(delay)
        raise WorkerUnavailable(f"{last} (after {sent} attempts)")

    # ---------------------------------------------------------------------------------------- API
    async def models(self) -> list[str]:
        data = (await self._request("GET", "/v1/models")).json()
        return [m["id"] for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    async def health(self) -> bool:
        """True when `/health` answers 2xx (our worker: JSON; vLLM: empty body); with several workers, when one
        does. Never raises."""

        async def one(r: Replica) -> bool:
            try:
                resp = await self._client(r).get("/health")
            except httpx.HTTPError:
                return False
            return resp.is_success

        if self._pool.single:
            return await one(self._pool.replicas[0])
        return any(await asyncio.gather(*(one(r) for r in self._pool.replicas)))

    async def ready(self, timeout: float = 10.0) -> bool:
        """True when the worker generates one token within `timeout` ("can generate", not just "is up"); with
        several workers, when the one a request would go to does (or, failing, another in service). Never raises;
        no retries (a readiness probe must answer fast)."""
        tried: list[Replica] = []
        while True:
            rep = self._pool.pick(tried)
            try:
                resp = await self._client(rep).post(
                    "/v1/completions",
                    timeout=timeout,
                    json={
                        "model": await asyncio.wait_for(self._model_name(), timeout),
                        "prompt": "Hello",
                        "max_tokens": 1,
                        "temperature": 0.0,
                    },
                )
                ok = resp.is_success
            except (httpx.HTTPError, GenerationError, TimeoutError):
                ok = False
            if ok or self._pool.single:
                return ok
            tried.append(rep)
            if not self._pool.untried(tried):
                return False

    async def identity(self) -> dict[str, Any] | None:
        """The weights the worker serves (`GET /bridgex/identity`: model_id, revision, weight_hash), or None
        when the server does not say (a vLLM server not started by `python -m services.worker`). With several
        workers every one in service is asked (one attempt each): `WorkerMismatch` when two that answer differ,
        naming both; one that does not answer is compared when it rejoins."""
        if self._pool.single:
            return await self._identity_any()
        reps = self._pool.in_service() or list(self._pool.replicas)
        answers = await asyncio.gather(*(self._identity_at(r) for r in reps), return_exceptions=True)
        got: list[tuple[Replica, dict[str, Any] | None]] = []
        for r, answer in zip(reps, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, GenerationError):
                    raise answer
            else:
                got.append((r, answer))
        if not got:  # none answered at once: the retry policy, as with one worker
            return await self._identity_any()
        (first, ident), ours = got[0], weights_of(got[0][1])
        for r, other in got[1:]:
            if weights_of(other) != ours:
                raise WorkerMismatch(mismatch_message(first.url, ours, r.url, weights_of(other)))
        self._pool.pin(ours, first.url)
        return ident

    async def _identity_any(self) -> dict[str, Any] | None:
        try:
            resp, rep = await self._send("GET", IDENTITY_PATH)
        except GenerationRejected as e:
            if e.status == 404:
                return None
            raise
        return self._identity_body(resp, rep)

    async def _identity_at(self, rep: Replica) -> dict[str, Any] | None:
        """One worker's identity, one attempt (an unreachable worker is taken out of service)."""
        try:
            resp = await self._client(rep).get(IDENTITY_PATH, timeout=min(self.timeout, 10.0))
        except _UNREACHABLE as e:
            self._pool.mark_down(rep, f"cannot reach the generation worker at {rep.url}: {type(e).__name__}: {e}")
            raise WorkerUnavailable(f"cannot reach the generation worker at {rep.url}: {e}") from e
        except httpx.HTTPError as e:
            raise WorkerUnavailable(f"no identity from the generation worker at {rep.url}: {e}") from e
        if resp.status_code == 404:
            return None
        if not resp.is_success:
            raise GenerationFailed(f"identity from {rep.url}: {resp.status_code}: {_error_message(resp)}")
        return self._identity_body(resp, rep)

    @staticmethod
    def _identity_body(resp: httpx.Response, rep: Replica) -> dict[str, Any] | None:
        try:
            body = resp.json()
        except ValueError as e:
            raise GenerationFailed(f"malformed identity from {rep.url}: {resp.text[:200]}") from e
        return body if isinstance(body, dict) else None

    async def count_tokens(self, text: str) -> int:
        """How many tokens `text` is for the served model, special tokens excluded (vLLM `POST /tokenize`)."""
        body = {"model": await self._model_name(), "prompt": text, "add_special_tokens": False}
        resp = await self._request("POST", "/tokenize", json=body)
        try:
            return int(resp.json()["count"])
        except (ValueError, KeyError, TypeError) as e:
            raise GenerationFailed(f"malformed /tokenize answer from {self.where}: {resp.text[:200]}") from e

    async def _model_name(self) -> str:
        if self.model is None:
            async with self._model_lock:
                if self.model is None:
                    names = await self.models()
                    if not names:
                        raise GenerationFailed(f"worker {self.where} serves no model")
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
        logprobs: int = 0,
    ) -> Completion:
        """One completion (greedy and stopping at a newline by default, as the method's prompts expect).
        `logprobs` >= 1: also return each generated token's log-probability (`Completion.logprobs`), and for
        `logprobs` > 1 that many most likely tokens per position (`TokenLogprobs.top`)."""
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
            body["logprobs"] = int(logprobs)
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
            raise GenerationFailed(f"malformed completion from {self.where}: {resp.text[:300]}") from e
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
        raise like `complete` (one attempt per worker: a stream is not retried, but with several workers one that
        fails before the first delta is tried on another in service)."""
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
        tried: list[Replica] = []
        yielded = False
        while True:
            rep = self._pool.pick(tried)
            rep.outstanding += 1
            rep.sent += 1
            try:
                async with self._client(rep).stream("POST", "/v1/completions", json=body, headers=headers) as resp:
                    if not resp.is_success:
                        await resp.aread()
                        msg = _error_message(resp)
                        if resp.status_code == 503:
                            self._pool.mark_down(rep, f"worker {rep.url} unavailable (503): {msg}")
                            raise WorkerUnavailable(f"worker {rep.url} unavailable (503): {msg}")
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
                            raise GenerationFailed(f"malformed stream chunk from {rep.url}: {payload[:200]}") from e
                        if isinstance(chunk, dict) and chunk.get("error"):
                            raise GenerationFailed(f"the worker failed mid-stream: {chunk['error']}")
                        for c in chunk.get("choices") or ():
                            if c.get("text"):
                                yielded = True
                                yield c["text"]
                    return
            except (*_UNREACHABLE, httpx.PoolTimeout) as e:
                if isinstance(e, _UNREACHABLE):
                    self._pool.mark_down(rep, f"cannot reach the generation worker at {rep.url}: {e}")
                err: GenerationError = WorkerUnavailable(f"cannot reach the generation worker at {rep.url}: {e}")
                err.__cause__ = e
            except httpx.TimeoutException as e:
                raise GenerationFailed(f"the stream timed out after {self.timeout:g}s (worker {rep.url})") from e
            except _BROKEN as e:
                self._pool.suspect(rep)
                err = GenerationFailed(f"the worker at {rep.url} broke the stream: {e}")
                err.__cause__ = e
            except WorkerUnavailable as e:  # 503 above
                err = e
            except GenerationError:
                raise
            except Exception as e:  # not an httpx error: as a broken stream (see `_send`)
                log.warning("a stream from %s failed inside the HTTP client", rep.url, exc_info=True)
                self._pool.suspect(rep)
                err = GenerationFailed(f"the stream from the generation worker at {rep.url} failed: {e!r}")
                err.__cause__ = e
            finally:
                rep.outstanding -= 1
            # before the first delta the caller has seen nothing: another replica gives the same greedy answer
            if yielded or self._pool.single:
                raise err
            tried.append(rep)
            if not self._pool.untried(tried):
                raise err

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
    "WorkerMismatch",
    "WorkerUnavailable",
]
