"""The translate flow: validate, choose the bridge, run the chain prompts through the generation worker.

The chain itself (method.md step 7) is `bridgex.generation.chain.translate_chain`, the very code the analyzer's dev
validation measures. The response names the bridge actually used and where that decision came from.
Worker failures map to 503 (unreachable / too slow) or 424 (it answered with an error), never a hang.
"""

from __future__ import annotations

import asyncio
import time

from bridgex.generation.chain import translate_chain
from bridgex.generation.client import GenerationError, GenerationRejected, WorkerUnavailable

from ..core.errors import ApiError, dependency_down
from ..deps import AppContext
from ..schemas.translate import Timings, TranslateRequest, TranslateResponse
from . import demos, validation
from .bridging import choose


class Plan:
    """A validated request, ready to run."""

    __slots__ = ("bridge", "k_shot", "k_shot_explicit", "max_tokens", "source", "target", "task", "text", "use_cache")

    def __init__(self, req: TranslateRequest, ctx: AppContext) -> None:
        s = ctx.settings
        self.text = validation.text(req.text, s)
        self.source, self.target = validation.pair(req.source, req.target)
        self.bridge = validation.bridge(req.bridge, self.source, self.target)
        self.task = req.task
        self.max_tokens = validation.max_tokens(req.max_tokens, req.task, s)
        self.k_shot = req.k_shot if req.k_shot is not None else s.k_shot
        self.k_shot_explicit = req.k_shot is not None
        self.use_cache = req.use_cache


async def generate(ctx: AppContext, prompt: str, max_tokens: int, request_id: str) -> str:
    """One completion; worker trouble becomes 503/424 with a message naming the worker."""
    url = ctx.settings.worker_url
    budget = ctx.settings.worker_timeout_s * (ctx.settings.worker_retries + 1) + 1.0
    try:
        out = await asyncio.wait_for(
            ctx.generation.complete(
                prompt, max_tokens=max_tokens, temperature=0.0, stop=("\n",), request_id=request_id
            ),
            budget,
        )
    except WorkerUnavailable as exc:
        ctx.metrics.generation_errors.labels("unavailable").inc()
        raise dependency_down("generation_worker", f"the generation worker at {url} is unavailable: {exc}") from exc
    except TimeoutError as exc:
        ctx.metrics.generation_errors.labels("timeout").inc()
        raise dependency_down(
            "generation_worker", f"the generation worker at {url} did not answer within {budget:.0f}s"
        ) from exc
    except GenerationRejected as exc:
        ctx.metrics.generation_errors.labels("rejected").inc()
        raise ApiError(
            424, "generation_failed", f"the generation worker rejected the request ({exc.status}): {exc.message}"
        ) from exc
    except GenerationError as exc:
        ctx.metrics.generation_errors.labels("failed").inc()
        raise ApiError(424, "generation_failed", f"generation failed: {exc}") from exc
    return out.text


async def run(ctx: AppContext, plan: Plan, request_id: str) -> TranslateResponse:
    t0 = time.perf_counter()
    await validation.tokens(ctx, plan.text)
    choice = await choose(ctx, plan.bridge, plan.source, plan.target, use_cache=plan.use_cache, request_id=request_id)
    t1 = time.perf_counter()
    warnings = list(choice.warnings)
    demos1, demos2, demo_warnings = await demos.demos(
        ctx,
        plan.task,
        plan.source,
        plan.target,
        choice.code,
        plan.k_shot,
        plan.text,
        explicit=plan.k_shot_explicit,
        words=choice.demo_words,
        choice=choice.demo_choice,
    )
    warnings += demo_warnings

    async def complete(prompt: str, max_tokens: int) -> str:
        return await generate(ctx, prompt, max_tokens, request_id)

    out = await translate_chain(
        complete,
        plan.task,
        plan.text,
        plan.source,
        plan.target,
        choice.code,
        max_tokens=plan.max_tokens,
        demos_bridge=demos1,
        demos_target=demos2,
    )
    warnings += out.warnings
    if not out.answer:
        warnings.append(
            "the model produced no answer for this text (an empty translation); try task=text for "
            "a sentence, k_shot > 0, or another bridge"
        )
    source, reason = choice.source, choice.reason
    if choice.code is not None and out.bridge is None:  # the bridge step failed: it was a direct translation
        source, reason = "none", f"the bridge step ({choice.code}) produced no text; translated directly"
    ctx.metrics.bridge_source.labels(source).inc()
    t3 = time.perf_counter()
    return TranslateResponse(
        translation=out.answer,
        bridge=out.bridge,
        bridge_source=source,
        bridge_reason=reason,
        bridge_text=out.bridge_text,
        cache_key=choice.cache_key,
        analysis_job=choice.analysis_job,
        model=ctx.served_model,
        request_id=request_id,
        warnings=warnings,
        k_shot=len(demos2),
        timings=Timings(
            bridge_lookup_ms=round((t1 - t0) * 1e3, 3),
            bridge_step_ms=out.bridge_step_ms,
            target_step_ms=out.target_step_ms,
            total_ms=round((t3 - t0) * 1e3, 3),
        ),
    )
