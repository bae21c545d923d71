"""Behaviour of `/v1/completions`: validate, tokenize, run through the engine, answer (JSON or SSE)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from services.worker.completion.protocol import (
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    CompletionStreamResponse,
    UsageInfo,
)
from services.worker.engine import (
    Engine,
    EngineError,
    EngineNotRunning,
    GenerationResult,
    GenerationTimeout,
    QueueFull,
    SamplingParams,
)
from services.worker.errors import APIError, error_body

log = logging.getLogger("bridgex.worker")
MAX_STOPS = 16


class OpenAIServingCompletion:
    def __init__(self, engine: Engine, *, served_name: str, model_id: str, aliases: set[str],
                 max_model_len: int, max_tokens_limit: int, request_timeout_s: float) -> None:
        self.engine, self.served_name, self.model_id = engine, served_name, model_id
        self.aliases = {served_name, model_id, *aliases}
        self.max_model_len, self.max_tokens_limit = max_model_len, max_tokens_limit
        self.request_timeout_s = request_timeout_s

    # ------------------------------------------------------------------------------------ validation
    def _check(self, req: CompletionRequest) -> tuple[list[str], list[list[int]], SamplingParams]:
        if req.model is not None and req.model not in self.aliases:
            raise APIError(404, f"The model `{req.model}` does not exist; this worker serves "
                                f"`{self.served_name}` (see GET /v1/models).", param="model",
                           code="model_not_found")
        if req.n != 1:
            raise APIError(400, f"n={req.n} is not supported: this worker returns one choice per prompt "
                                "(n=1); send the request n times with different seeds instead.", param="n")
        if req.best_of not in (None, 1):
            raise APIError(400, "best_of is not supported (use 1 or leave it out).", param="best_of")
        if req.echo:
            raise APIError(400, "echo is not supported.", param="echo")
        if req.logprobs is not None:
            raise APIError(400, "logprobs are not supported by the CPU worker.", param="logprobs")
        if req.presence_penalty or req.frequency_penalty:
            raise APIError(400, "presence/frequency penalties are not supported; leave them at 0.",
                           param="presence_penalty" if req.presence_penalty else "frequency_penalty")
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts:
            raise APIError(400, "prompt is an empty list; send a string or a non-empty list of strings.",
                           param="prompt")
        for i, p in enumerate(prompts):
            if not p:
                where = "prompt" if isinstance(req.prompt, str) else f"prompt[{i}]"
                raise APIError(400, f"{where} is empty; send at least one character.", param="prompt")
        if req.max_tokens is not None and req.max_tokens > self.max_tokens_limit:
            raise APIError(400, f"max_tokens={req.max_tokens} is over this worker's limit of "
                                f"{self.max_tokens_limit}; lower it.", param="max_tokens")
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        stops = [s for s in stops if s]
        if len(stops) > MAX_STOPS:
            raise APIError(400, f"at most {MAX_STOPS} stop strings, got {len(stops)}.", param="stop")
        ids = [self.engine.tokenize(p) for p in prompts]
        longest = max(len(x) for x in ids)
        max_tokens = req.max_tokens
        if max_tokens is None:  # OpenAI's null: as many as fit, within this worker's limit
            max_tokens = max(min(self.max_tokens_limit, self.max_model_len - longest), 1)
        if longest + max_tokens > self.max_model_len:
            raise APIError(400, f"This model's maximum context length is {self.max_model_len} tokens. "
                                f"However, you requested {longest + max_tokens} tokens ({longest} in the "
                                f"prompt, {max_tokens} in the completion). "
                                "Shorten the prompt or lower max_tokens.",
                           param="prompt", code="context_length_exceeded")
        params = SamplingParams(max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p,
                                stop=tuple(stops), seed=req.seed)
        return prompts, ids, params

    @staticmethod
    def _engine_error(e: Exception) -> APIError:
        if isinstance(e, QueueFull):
            return APIError(429, f"{e}", code="queue_full", headers={"Retry-After": "1"})
        if isinstance(e, EngineNotRunning):
            return APIError(503, f"{e}", code="not_ready", headers={"Retry-After": "1"})
        if isinstance(e, GenerationTimeout):
            return APIError(504, f"{e}; lower max_tokens or retry when the worker is less busy.",
                            code="timeout")
        return APIError(424, f"{e}", code="generation_failed")

    # ------------------------------------------------------------------------------------ serving
    async def create_completion(self, req: CompletionRequest, request_id: str
                                ) -> CompletionResponse | StreamingResponse:
        prompts, ids, params = self._check(req)
        submitted = []
        try:
            for x in ids:
                submitted.append(self.engine.submit(x, params, request_id, stream=req.stream))
        except EngineError as e:
            for r in submitted:
                self.engine.cancel(r)
            raise self._engine_error(e) from e
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(self._stream(submitted, include_usage, request_id),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Request-Id": request_id})
        try:
            results: list[GenerationResult] = await asyncio.wait_for(
                asyncio.gather(*(asyncio.shield(r.future) for r in submitted)), self.request_timeout_s)
        except TimeoutError as e:
            for r in submitted:
                self.engine.cancel(r)
            raise self._engine_error(GenerationTimeout(
                f"generation did not finish within {self.request_timeout_s:g}s")) from e
        except asyncio.CancelledError:
            for r in submitted:
                self.engine.cancel(r)
            raise
        except EngineError as e:
            raise self._engine_error(e) from e
        usage = UsageInfo(prompt_tokens=sum(r.prompt_tokens for r in results),
                          completion_tokens=sum(r.completion_tokens for r in results))
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        log.info("request_id=%s completion prompts=%d prompt_tokens=%d completion_tokens=%d finish=%s",
                 request_id, len(prompts), usage.prompt_tokens, usage.completion_tokens,
                 ",".join(r.finish_reason for r in results))
        return CompletionResponse(
            model=self.served_name, usage=usage,
            choices=[CompletionChoice(index=i, text=r.text, finish_reason=r.finish_reason,
                                      stop_reason=r.stop_reason) for i, r in enumerate(results)])

    async def _stream(self, submitted: list, include_usage: bool, request_id: str) -> AsyncIterator[str]:
        """SSE: one `data: {chunk}` per text delta (choice index kept), a final chunk per choice with its
        finish_reason, optional usage chunk, then `data: [DONE]`. Errors after the start come as an error
        event (the status line is already sent)."""
        cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        merged: asyncio.Queue = asyncio.Queue()

        async def pump(i: int, r: object) -> None:
            try:
                async for item in self.engine.iter_stream(r, self.request_timeout_s):  # type: ignore[arg-type]
                    await merged.put((i, item))
            except Exception as e:
                await merged.put((i, e))

        tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(submitted)]
        done, prompt_tokens, completion_tokens = 0, 0, 0

        def chunk(i: int, text: str, finish: str | None = None, stop_reason: str | int | None = None) -> str:
            c = CompletionStreamResponse(id=cid, created=created, model=self.served_name, choices=[
                CompletionChoice(index=i, text=text, finish_reason=finish, stop_reason=stop_reason)])
            return f"data: {c.model_dump_json()}\n\n"

        try:
            while done < len(submitted):
                i, item = await merged.get()
                if isinstance(item, Exception):
                    err = self._engine_error(item)
                    yield f"data: {json.dumps(error_body(err.status, err.message, code=err.code))}\n\n"
                    return
                if isinstance(item, GenerationResult):
                    done += 1
                    prompt_tokens += item.prompt_tokens
                    completion_tokens += item.completion_tokens
                    yield chunk(i, "", item.finish_reason, item.stop_reason)
                else:
                    yield chunk(i, item)
            if include_usage:
                u = UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                              total_tokens=prompt_tokens + completion_tokens)
                c = CompletionStreamResponse(id=cid, created=created, model=self.served_name, choices=[],
                                             usage=u)
                yield f"data: {c.model_dump_json()}\n\n"
            yield "data: [DONE]\n\n"
            log.info("request_id=%s stream prompts=%d prompt_tokens=%d completion_tokens=%d", request_id,
                     len(submitted), prompt_tokens, completion_tokens)
        finally:  # client gone or finished: stop the generation rows and the pumps
            for r in submitted:
                self.engine.cancel(r)
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
