"""`stream: true` on /translate (task text): server-sent events as the worker produces the final step's tokens.

Everything before the final step (validation, the bridge choice, the demonstrations, the bridge step) and the
final step's first tokens happen before the response starts, so a bad request or a worker that is down still
gets its JSON 4xx/503/424. Then the events are:
- `bridge`  {bridge, bridge_text}: once, when the chain went through a bridge;
- `delta`   {text}: the translation so far grows by `text` (parsed as the non-streamed answer is);
- `done`    the whole TranslateResponse (its `translation` is authoritative), with bridge, timings, warnings;
- `error`   {error, message}: the worker failed after tokens had been sent; nothing follows.
A client that disconnects cancels its generation: the stream to the worker is closed and vLLM aborts it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from bridgex.generation.chain import bridge_step, chain_prompt, parse
from bridgex.generation.client import GenerationError

from ..core.errors import ApiError
from ..core.security import Principal
from ..deps import AppContext
from ..schemas.translate import Timings, TranslateResponse
from .translation import Plan, generate, prepare, served_by, worker_call


def sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class Growing:
    """The parsed answer of a completion that is still arriving: emits only what extends what was sent."""

    def __init__(self, task: str) -> None:
        self.task, self.raw, self.sent = task, "", ""

    def feed(self, delta: str) -> str:
        self.raw += delta
        now = parse(self.task, self.raw)
        if not now.startswith(self.sent) or len(now) == len(self.sent):
            return ""  # the parse changed its mind (e.g. a quote that was not the closing one): wait
        new, self.sent = now[len(self.sent) :], now
        return new


async def open_stream(
    ctx: AppContext, plan: Plan, request_id: str, principal: Principal | None = None
) -> AsyncIterator[str]:
    """Run up to the final step's first tokens (raising ApiError like /translate), then return the events.
    `principal`: the caller, whose glossaries `plan.glossary_id` may name (enforced as in /translate: a text
    that is a term is one `done` event, terms in a text are demonstrations, the answer is checked)."""
    if plan.task != "text":
        raise ApiError(
            422,
            "invalid_request",
            "stream=true is for task=text (a word is one short answer: send it without stream)",
            details={"field": "stream"},
        )
    prep = await prepare(ctx, plan, request_id, principal)
    if prep.direct is not None:  # the text is a term: its translation at once
        done = prep.direct

        async def one() -> AsyncIterator[str]:
            yield sse("delta", {"text": done.translation})
            yield sse("done", done.model_dump(mode="json"))

        return one()
    choice, glossary, warnings, t0, t1 = prep.choice, prep.glossary, prep.warnings, prep.t0, prep.t1
    assert choice is not None
    detected = prep.detected(plan)
    demos1, demos2 = prep.demos_bridge, prep.demos_target

    async def complete(prompt: str, max_tokens: int) -> str:
        return (await generate(ctx, prompt, max_tokens, request_id)).text

    step = await bridge_step(
        complete,
        plan.task,
        plan.text,
        plan.source,
        choice.code,
        max_tokens=plan.max_tokens,
        demos_bridge=demos1,
        demos_target=demos2,
    )
    warnings += step.warnings
    final_demos = glossary.demos(step.demos_target) if glossary else step.demos_target
    prompt = chain_prompt(plan.task, plan.text, plan.source, plan.target, step.bridge, step.bridge_text, final_demos)
    t2 = time.perf_counter()
    tokens = ctx.generation.stream_complete(prompt, max_tokens=plan.max_tokens, request_id=request_id)
    try:  # the first delta before the response starts: a worker that is down is a 503, not a broken stream
        first = await worker_call(ctx, lambda: anext(tokens, ""))
    except BaseException:
        await tokens.aclose()
        raise

    source, reason = served_by(choice, step.bridge)

    async def events() -> AsyncIterator[str]:
        async with aclosing(tokens):
            if step.bridge is not None:
                yield sse("bridge", {"bridge": step.bridge, "bridge_text": step.bridge_text})
            growing = Growing(plan.task)
            pending = [first] if first else []
            try:
                while True:
                    for delta in pending:
                        new = growing.feed(delta)
                        if new:
                            yield sse("delta", {"text": new})
                    pending = [await anext(tokens)]
            except StopAsyncIteration:
                pass
            except GenerationError as exc:
                ctx.metrics.generation_errors.labels("failed").inc()
                yield sse("error", {"error": "generation_failed", "message": f"generation failed: {exc}"})
                return
        answer = parse(plan.task, growing.raw)
        final_warnings = list(warnings)
        if not answer:
            final_warnings.append("the model produced no answer for this text (an empty translation)")
        glossary_use = glossary.check(answer, final_warnings) if glossary else None
        ctx.metrics.bridge_source.labels(source).inc()
        t3 = time.perf_counter()
        done = TranslateResponse(
            translation=answer,
            bridge=step.bridge,
            bridge_source=source,
            bridge_reason=reason,
            bridge_text=step.bridge_text,
            cache_key=choice.cache_key,
            analysis_job=choice.analysis_job,
            model=ctx.served_model,
            request_id=request_id,
            warnings=final_warnings,
            k_shot=len(step.demos_target),
            glossary=glossary_use,
            **detected,
            timings=Timings(
                bridge_lookup_ms=round((t1 - t0) * 1e3, 3),
                bridge_step_ms=step.ms,
                target_step_ms=round((t3 - t2) * 1e3, 3),
                total_ms=round((t3 - t0) * 1e3, 3),
            ),
        )
        yield sse("done", done.model_dump(mode="json"))

    return events()
