"""The translate flow: validate, choose the bridge, run the chain prompts through the generation worker.

The chain itself (method.md step 7) is `bridgex.generation.chain.translate_chain`, the very code the analyzer's dev
validation measures. The response names the bridge actually used and where that decision came from.
Worker failures map to 503 (unreachable / too slow) or 424 (it answered with an error), never a hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from bridgex.confidence import answer_confidence, answer_span
from bridgex.generation.chain import parse, translate_chain
from bridgex.generation.client import Completion, GenerationError, GenerationRejected, WorkerUnavailable
from bridgex.prompts import Demo, normalize_word

from ..core.config import ApiSettings
from ..core.errors import ApiError, dependency_down
from ..core.security import Principal
from ..deps import AppContext
from ..schemas.translate import Alternative, Timings, TranslateRequest, TranslateResponse
from . import bridge_cache, demos, detection, glossaries, usage, validation
from .bridging import BridgeChoice, choose

T = TypeVar("T")

ALTERNATIVE_SLACK = 2
"""Branches beyond the alternatives asked for: branches that parse to an answer already found are dropped."""
TOP_LOGPROBS = 8
"""Most likely tokens the final step returns per position when alternatives are asked for."""


class Plan:
    """A validated request, ready to run."""

    __slots__ = (
        "alternatives",
        "bridge",
        "detection",
        "glossary_id",
        "k_shot",
        "k_shot_explicit",
        "max_tokens",
        "prefetched",
        "source",
        "target",
        "task",
        "text",
        "use_cache",
    )

    def __init__(self, req: TranslateRequest, ctx: AppContext) -> None:
        s = ctx.settings
        self.text = validation.text(req.text, s)
        self.detection: detection.Detection | None = None
        if validation.is_auto(req.source):  # detected in run() (detect_source), the pair checked then
            self.source, self.target = validation.AUTO, validation.language(req.target, "target")
        else:
            self.source, self.target = validation.pair(req.source, req.target)
        self.bridge = validation.bridge(req.bridge, self.source, self.target)
        self.task = req.task
        self.max_tokens = validation.max_tokens(req.max_tokens, req.task, s)
        self.k_shot = req.k_shot if req.k_shot is not None else s.k_shot
        self.k_shot_explicit = req.k_shot is not None
        self.use_cache = req.use_cache
        self.alternatives = req.alternatives or 1
        self.glossary_id = req.glossary_id
        self.prefetched: bridge_cache.Prefetch | None = None
        """The bridge lookup already read with the rate limit (POST /translate; `choose` checks the pair)."""

    async def detect_source(self, settings: ApiSettings) -> None:
        """source "auto": the detected source, or the 422 that asks for it; then `bridge` is checked against it."""
        found = await detection.source_of(self.text, self.target, settings)
        self.detection, self.source = found, found.language or ""
        try:
            self.bridge = validation.bridge(self.bridge, self.source, self.target)
        except ApiError as exc:
            exc.message = f"source detected as {found.listing()}: {exc.message}"
            raise


async def worker_call(ctx: AppContext, call: Callable[[], Awaitable[T]], *, scale: int = 1) -> T:
    """One call to the generation worker within its time budget (`scale` x one completion's); worker trouble
    becomes 503/424 with a message naming the worker."""
    url = ctx.generation.where
    budget = scale * ctx.settings.worker_timeout_s * (ctx.settings.worker_retries + 1) + 1.0
    try:
        async with asyncio.timeout(budget):  # in this task: wait_for would start one per call
            out = await call()
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
    usage.generated_by(out)  # the calling key's generated tokens (services.usage)
    return out


async def generate(ctx: AppContext, prompt: str, max_tokens: int, request_id: str, *, logprobs: int = 0) -> Completion:
    """One greedy completion (stops at a newline), with its tokens' log-probabilities when asked (`logprobs`
    > 1: also that many most likely tokens per position)."""
    return await worker_call(
        ctx,
        lambda: ctx.generation.complete(
            prompt, max_tokens=max_tokens, temperature=0.0, stop=("\n",), request_id=request_id, logprobs=logprobs
        ),
    )


def confidence_of(task: str, out: Completion | None, answer: str) -> float | None:
    """bridgex.confidence of the final step's answer (None without log-probabilities or without an answer)."""
    if out is None or out.logprobs is None or not answer:
        return None
    lp = out.logprobs
    value = answer_confidence(out.text, answer, lp.tokens, lp.token_logprobs, lp.text_offset)
    return None if value is None else round(value, 4)


async def alternatives(
    ctx: AppContext, plan: Plan, prompt: str, final: Completion, first: Alternative, request_id: str
) -> list[Alternative]:
    """The `plan.alternatives` best distinct answers to the final prompt, the served (greedy) one first: the
    most likely other tokens at the answer's first token (the final step's top log-probabilities), each
    continued greedily, in order of their probability; duplicates after parsing left out. Deterministic, and
    n-1 ordinary completions that the worker batches (vLLM's beam search runs one engine step per token and
    was too slow on the CPU worker under load)."""
    lp = final.logprobs
    span = answer_span(final.text, first.translation)
    if lp is None or not lp.top or span is None:
        return [first]
    at = next((i for i, off in enumerate(lp.text_offset) if off + max(len(lp.tokens[i]), 1) > span[0]), None)
    if at is None:
        return [first]
    head = final.text[: lp.text_offset[at]]
    branches = sorted(((tok, v) for tok, v in lp.top[at].items() if tok != lp.tokens[at]), key=lambda kv: -kv[1])[
        : plan.alternatives - 1 + ALTERNATIVE_SLACK
    ]

    async def branch(tok: str, value: float) -> Alternative | None:
        out = await generate(ctx, prompt + head + tok, plan.max_tokens, f"{request_id}-alt", logprobs=1)
        raw = head + tok + out.text
        answer = parse(plan.task, raw)
        if not answer:
            return None
        cont = out.logprobs
        base = len(head) + len(tok)
        tokens = (tok, *(cont.tokens if cont else ()))
        values = (value, *(cont.token_logprobs if cont else ()))
        offsets = (len(head), *((base + o for o in cont.text_offset) if cont else ()))
        conf = answer_confidence(raw, answer, tokens, values, offsets)
        return Alternative(translation=answer, confidence=None if conf is None else round(conf, 4))

    found = [first]
    seen = {_alt_key(plan.task, first.translation)}
    for alt in await asyncio.gather(*(branch(tok, v) for tok, v in branches)):
        if alt is None or _alt_key(plan.task, alt.translation) in seen:
            continue
        seen.add(_alt_key(plan.task, alt.translation))
        found.append(alt)
        if len(found) >= plan.alternatives:
            break
    return found


def _alt_key(task: str, answer: str) -> str:
    return normalize_word(answer) if task == "word" else " ".join(answer.split()).casefold()


@dataclass
class Prepared:
    """What every translation does before its first generation (`prepare`): the source detected, the text's
    tokens checked, the glossary looked up, then either a direct answer (the text is a term) or the bridge
    chosen and the demonstrations picked."""

    t0: float
    glossary: glossaries.Enforcement | None
    direct: TranslateResponse | None = None
    choice: BridgeChoice | None = None
    demos_bridge: list[Demo] = field(default_factory=list)
    demos_target: list[Demo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    t1: float = 0.0

    def detected(self, plan: Plan) -> dict[str, object]:
        """The response fields of source "auto" (None without detection)."""
        return {
            "detected_source": plan.detection.language if plan.detection else None,
            "detection_confidence": plan.detection.confidence if plan.detection else None,
        }


async def prepare(ctx: AppContext, plan: Plan, request_id: str, principal: Principal | None) -> Prepared:
    """The steps /translate and its stream share, up to the first generation (raising ApiError as both do).
    `principal`: the caller, whose glossaries `plan.glossary_id` may name (None: none may be named)."""
    t0 = time.perf_counter()
    if plan.source == validation.AUTO:  # source "auto": detected, or 422
        await plan.detect_source(ctx.settings)
    await validation.tokens(ctx, plan.text)
    glossary = await glossaries.for_translate(
        ctx, plan.glossary_id, principal, plan.source, plan.target, plan.task, plan.text
    )
    out = Prepared(t0, glossary)
    if glossary is not None and glossary.direct is not None:  # the text is a term: its translation, no generation
        out.direct = glossaries.direct_response(ctx, glossary, request_id, t0, **out.detected(plan))
        return out
    choice = await choose(
        ctx,
        plan.bridge,
        plan.source,
        plan.target,
        use_cache=plan.use_cache,
        request_id=request_id,
        prefetched=plan.prefetched,
    )
    out.choice, out.t1 = choice, time.perf_counter()
    out.warnings = list(choice.warnings)
    out.demos_bridge, out.demos_target, demo_warnings = await demos.demos(
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
    out.warnings += demo_warnings
    return out


def served_by(choice: BridgeChoice, used_bridge: str | None) -> tuple[str, str | None]:
    """The response's bridge_source and bridge_reason: the choice's, unless its bridge step produced nothing."""
    if choice.code is not None and used_bridge is None:
        return "none", f"the bridge step ({choice.code}) produced no text; translated directly"
    return choice.source, choice.reason


async def run(ctx: AppContext, plan: Plan, request_id: str, principal: Principal | None = None) -> TranslateResponse:
    """`principal`: the caller, whose glossaries `plan.glossary_id` may name (None: none may be named)."""
    prep = await prepare(ctx, plan, request_id, principal)
    if prep.direct is not None:
        return prep.direct
    choice, glossary, warnings, t0, t1 = prep.choice, prep.glossary, prep.warnings, prep.t0, prep.t1
    assert choice is not None
    demos1, demos2 = prep.demos_bridge, prep.demos_target

    # the final step is the chain's last call: the first without a bridge, else the second (also when the
    # bridge step failed and the chain fell back to a direct prompt); only it asks for log-probabilities
    final_call = 0 if choice.code is None else 1
    calls: list[tuple[str, Completion]] = []
    top = TOP_LOGPROBS if plan.alternatives > 1 else 1  # alternatives branch at the answer's first token

    async def complete(prompt: str, max_tokens: int) -> str:
        out = await generate(ctx, prompt, max_tokens, request_id, logprobs=top if len(calls) == final_call else 0)
        calls.append((prompt, out))
        return out.text

    out = await translate_chain(
        complete,
        plan.task,
        plan.text,
        plan.source,
        plan.target,
        choice.code,
        max_tokens=plan.max_tokens,
        demos_bridge=demos1,
        demos_target=glossary.demos(demos2) if glossary else demos2,  # k_shot counts the dictionary's only
    )
    warnings += out.warnings
    if not out.answer:
        warnings.append(
            "the model produced no answer for this text (an empty translation); try task=text for "
            "a sentence, k_shot > 0, or another bridge"
        )
    glossary_use = glossary.check(out.answer, warnings) if glossary else None
    source, reason = served_by(choice, out.bridge)  # a failed bridge step: it was a direct translation
    ctx.metrics.bridge_source.labels(source).inc()
    final_prompt, final_out = calls[-1] if calls else ("", None)
    confidence = confidence_of(plan.task, final_out, out.answer)
    alts = None
    if plan.alternatives > 1 and out.answer and final_out is not None:
        first = Alternative(translation=out.answer, confidence=confidence)
        alts = await alternatives(ctx, plan, final_prompt, final_out, first, request_id)
        if len(alts) < plan.alternatives:
            warnings.append(f"only {len(alts)} distinct answers of alternatives={plan.alternatives} were found")
    t3 = time.perf_counter()
    return TranslateResponse(
        translation=out.answer,
        bridge=out.bridge,
        bridge_source=source,
        bridge_reason=reason,
        bridge_text=out.bridge_text,
        cache_key=choice.cache_key,
        analysis_job=choice.analysis_job,
        glossary=glossary_use,
        model=ctx.served_model,
        request_id=request_id,
        warnings=warnings,
        k_shot=len(demos2),
        confidence=confidence,
        alternatives=alts,
        **prep.detected(plan),
        timings=Timings(
            bridge_lookup_ms=round((t1 - t0) * 1e3, 3),
            bridge_step_ms=out.bridge_step_ms,
            target_step_ms=out.target_step_ms,
            total_ms=round((t3 - t0) * 1e3, 3),
        ),
    )
