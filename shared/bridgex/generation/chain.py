"""The X-ICL chain (method.md step 7) as one function. The gateway serves it and the analyzer's dev validation
measures it, so the validated choice is measured on exactly the prompts that are served.

With a bridge b: step 1 `S:"w"→B:` gives w_b; step 2 `S:"w"→B:"w_b"→T:` gives the answer. When step 1 yields
nothing parseable, the chain translates directly and says so: the result names the bridge actually used.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bridgex.prompts import Demo, parse_sentence, parse_word, sentence_prompt, word_prompt

Task = Literal["word", "text"]
Complete = Callable[[str, int], Awaitable[str]]
"""complete(prompt, max_tokens) -> raw completion text (greedy, stops at a newline)."""


@dataclass
class ChainResult:
    answer: str
    bridge: str | None  # the bridge actually used (None: direct)
    bridge_text: str | None = None
    warnings: list[str] = field(default_factory=list)
    bridge_step_ms: float = 0.0
    target_step_ms: float = 0.0


def chain_prompt(
    task: Task,
    text: str,
    source: str,
    target: str,
    bridge: str | None = None,
    bridge_text: str | None = None,
    demos: Sequence[Demo] = (),
) -> str:
    if task == "word":
        return word_prompt(text, source, target, bridge=bridge, bridge_word=bridge_text, demos=demos)
    return sentence_prompt(text, source, target, bridge=bridge, bridge_text=bridge_text, demos=demos)


def parse(task: Task, output: str) -> str:
    return parse_word(output) if task == "word" else parse_sentence(output)


@dataclass
class BridgeStep:
    """Step 1 of a chain, done: the bridge actually used, its text, and the final step's demonstrations (plain
    direct demonstrations when the bridge step produced nothing)."""

    bridge: str | None
    bridge_text: str | None
    demos_target: Sequence[Demo]
    warnings: list[str]
    ms: float


async def bridge_step(
    complete: Complete,
    task: Task,
    text: str,
    source: str,
    bridge: str | None,
    *,
    max_tokens: int,
    demos_bridge: Sequence[Demo] = (),
    demos_target: Sequence[Demo] = (),
) -> BridgeStep:
    """Run step 1 when there is a bridge; the final prompt is then
    `chain_prompt(task, text, source, target, step.bridge, step.bridge_text, step.demos_target)`."""
    t0 = time.perf_counter()
    warnings: list[str] = []
    bridge_text: str | None = None
    if bridge is not None:
        bridge_text = (
            parse(task, await complete(chain_prompt(task, text, source, bridge, demos=demos_bridge), max_tokens))
            or None
        )
        if bridge_text is None:
            warnings.append(f"the bridge step ({bridge}) produced no text; translated directly")
            bridge = None
            demos_target = [Demo(d.source_text, d.target_text) for d in demos_target]
    return BridgeStep(bridge, bridge_text, demos_target, warnings, round((time.perf_counter() - t0) * 1e3, 3))


async def translate_chain(
    complete: Complete,
    task: Task,
    text: str,
    source: str,
    target: str,
    bridge: str | None,
    *,
    max_tokens: int,
    demos_bridge: Sequence[Demo] = (),
    demos_target: Sequence[Demo] = (),
) -> ChainResult:
    """Translate `text` source -> target, through `bridge` when given. `demos_bridge` are the s->b
    demonstrations of step 1; `demos_target` the final step's (with bridge_text when bridged)."""
    step = await bridge_step(
        complete,
        task,
        text,
        source,
        bridge,
        max_tokens=max_tokens,
        demos_bridge=demos_bridge,
        demos_target=demos_target,
    )
    t1 = time.perf_counter()
    prompt = chain_prompt(task, text, source, target, step.bridge, step.bridge_text, step.demos_target)
    answer = parse(task, await complete(prompt, max_tokens))
    return ChainResult(
        answer=answer,
        bridge=step.bridge,
        bridge_text=step.bridge_text,
        warnings=step.warnings,
        bridge_step_ms=step.ms,
        target_step_ms=round((time.perf_counter() - t1) * 1e3, 3),
    )
