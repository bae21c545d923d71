"""The translate flow: validate, choose the bridge, run the chain prompts through the generation worker.

With a bridge b (method.md step 7, X-ICL chain): step 1 `word_prompt(w, s, b)` -> w_b; step 2
`word_prompt(w, s, t, bridge=b, bridge_word=w_b)` -> the answer. task "text" uses the sentence prompts.
Worker failures map to 503 (unreachable / too slow) or 424 (it answered with an error), never a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from bridgex.client import GenerationError, GenerationRejected, WorkerUnavailable
from bridgex.prompts import Demo, parse_sentence, parse_word, sentence_prompt, word_prompt

from ..core.errors import ApiError, dependency_down
from ..deps import AppContext
from ..schemas.translate import Timings, TranslateRequest, TranslateResponse
from . import validation
from .bridging import choose
from .demos import text_demos, word_demos


class Plan:
    """A validated request, ready to run."""

    __slots__ = ("bridge", "k_shot", "max_tokens", "source", "target", "task", "text", "use_cache")

    def __init__(self, req: TranslateRequest, ctx: AppContext) -> None:
        s = ctx.settings
        self.text = validation.text(req.text, s)
        self.source, self.target = validation.pair(req.source, req.target)
        self.bridge = validation.bridge(req.bridge, self.source, self.target)
        self.task = req.task
        self.max_tokens = validation.max_tokens(req.max_tokens, req.task, s)
        self.k_shot = req.k_shot if req.k_shot is not None else s.k_shot
        self.use_cache = req.use_cache


async def generate(ctx: AppContext, prompt: str, max_tokens: int, request_id: str) -> str:
    """One completion; worker trouble becomes 503/424 with a message naming the worker."""
    url = ctx.settings.worker_url
    budget = ctx.settings.worker_timeout_s * (ctx.settings.worker_retries + 1) + 1.0
    try:
        out = await asyncio.wait_for(
            ctx.generation.complete(prompt, max_tokens=max_tokens, temperature=0.0, stop=("\n",),
                                    request_id=request_id),
            budget,
        )
    except WorkerUnavailable as exc:
        ctx.metrics.generation_errors.labels("unavailable").inc()
        raise dependency_down("generation_worker",
                              f"the generation worker at {url} is unavailable: {exc}") from exc
    except TimeoutError as exc:
        ctx.metrics.generation_errors.labels("timeout").inc()
        raise dependency_down("generation_worker",
                              f"the generation worker at {url} did not answer within {budget:.0f}s") from exc
    except GenerationRejected as exc:
        ctx.metrics.generation_errors.labels("rejected").inc()
        raise ApiError(424, "generation_failed",
                       f"the generation worker rejected the request ({exc.status}): {exc.message}") from exc
    except GenerationError as exc:
        ctx.metrics.generation_errors.labels("failed").inc()
        raise ApiError(424, "generation_failed", f"generation failed: {exc}") from exc
    return out.text


def _prompt(task: str, text: str, source: str, target: str, bridge: str | None = None,
            bridge_text: str | None = None, demos: Sequence[Demo] = ()) -> str:
    if task == "word":
        return word_prompt(text, source, target, bridge=bridge, bridge_word=bridge_text, demos=demos)
    return sentence_prompt(text, source, target, bridge=bridge, bridge_text=bridge_text, demos=demos)


async def _demos(ctx: AppContext, plan: Plan, bridge: str | None) -> tuple[list[Demo], list[Demo], list[str]]:
    """(bridge-step demos, final-step demos, warnings) for k_shot > 0."""
    if plan.k_shot <= 0:
        return [], [], []
    root, k = str(ctx.settings.data_path), plan.k_shot
    if plan.task == "word":
        step1, step2 = await asyncio.to_thread(word_demos, root, plan.source, plan.target, bridge, k,
                                               plan.text)
    else:
        step1, step2 = await asyncio.to_thread(text_demos, root, plan.source, plan.target, bridge, k)
    short = min(len(step2), len(step1) if bridge else len(step2))
    warnings = [f"only {short} of k_shot={k} demonstrations available"] if short < k else []
    return step1, step2, warnings


def _parse(task: str, output: str) -> str:
    return parse_word(output) if task == "word" else parse_sentence(output)


async def run(ctx: AppContext, plan: Plan, request_id: str) -> TranslateResponse:
    t0 = time.perf_counter()
    choice = await choose(ctx, plan.bridge, plan.source, plan.target, use_cache=plan.use_cache,
                          request_id=request_id)
    t1 = time.perf_counter()
    ctx.metrics.bridge_source.labels(choice.source).inc()
    warnings = list(choice.warnings)
    bridge_text: str | None = None
    used_bridge = choice.code
    demos1, demos2, demo_warnings = await _demos(ctx, plan, used_bridge)
    warnings += demo_warnings
    if used_bridge is not None:
        bridge_text = _parse(plan.task, await generate(
            ctx, _prompt(plan.task, plan.text, plan.source, used_bridge, demos=demos1), plan.max_tokens,
            request_id))
        if not bridge_text:
            warnings.append(f"the bridge step ({used_bridge}) produced no text; translated directly")
            used_bridge = None
            demos2 = [Demo(d.source_text, d.target_text) for d in demos2]
    t2 = time.perf_counter()
    answer = await generate(
        ctx,
        _prompt(plan.task, plan.text, plan.source, plan.target, used_bridge,
                bridge_text if used_bridge else None, demos2),
        plan.max_tokens, request_id,
    )
    t3 = time.perf_counter()
    return TranslateResponse(
        translation=_parse(plan.task, answer), bridge=choice.code, bridge_source=choice.source,
        bridge_text=bridge_text, cache_key=choice.cache_key, analysis_job=choice.analysis_job,
        model=ctx.served_model, request_id=request_id, warnings=warnings,
        timings=Timings(bridge_lookup_ms=round((t1 - t0) * 1e3, 3), bridge_step_ms=round((t2 - t1) * 1e3, 3),
                        target_step_ms=round((t3 - t2) * 1e3, 3), total_ms=round((t3 - t0) * 1e3, 3)),
    )
