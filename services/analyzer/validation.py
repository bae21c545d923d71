"""Dev-split validation of a ranking (method.md step 9): P@1 of direct translation, the top-m HSIC candidates and
English on the pair's dev words, through the generation worker, with the served k_shot demonstrations.

It runs `bridgex.generation.chain.translate_chain` with `bridgex.demos` demonstrations, the same code the gateway
serves, so the measured accuracy is that of the served prompts. Dev words (bridgex.data.layout part "dev") share no
source word with the probes or the evaluation split; the most common come first (bridgex.frequency).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bridgex.data.layout import DataLayout
from bridgex.demos import word_demos
from bridgex.frequency import frequency_order
from bridgex.generation.chain import translate_chain
from bridgex.generation.client import GenerationClient, GenerationError, WorkerUnavailable
from bridgex.probes import matches_gold
from bridgex.prompts import normalize_word
from bridgex.serving import NONE, DevScore, dev_score


class ValidationFailed(RuntimeError):
    """The dev measurement could not be made (worker errors); the message says what to do."""


def dev_words(data_root: str, source: str, target: str, size: int) -> list[tuple[str, list[str]]]:
    """The first `size` dev words (most common first) with their gold targets; echo-able words skipped."""
    tr = DataLayout(data_root).dictionary(source, target, "dev").translations()
    tr = {w: g for w, g in tr.items() if g and normalize_word(w) not in {normalize_word(x) for x in g}}
    return [(w, tr[w]) for w in frequency_order(tr, source, target, salt="dev")[:size]]


async def measure(
    client: GenerationClient,
    words: list[tuple[str, list[str]]],
    source: str,
    target: str,
    conditions: list[str],
    *,
    data_root: str,
    k_shot: int,
    concurrency: int = 4,
    progress: Callable[[int, int], None] | None = None,
    check: Callable[[], None] | None = None,
    max_error_rate: float = 0.1,
) -> tuple[dict[str, DevScore], dict[str, Any]]:
    """(condition -> DevScore, notes). Conditions are "none" or bridge codes; `check()` raises to cancel."""
    sem = asyncio.Semaphore(max(1, concurrency))
    total = len(words) * len(conditions)
    done = errors = 0
    notes: dict[str, Any] = {}

    async def complete(prompt: str, max_tokens: int) -> str:
        async with sem:
            return (await client.complete(prompt, max_tokens=max_tokens, temperature=0.0, stop=("\n",))).text

    async def one(word: str, golds: list[str], bridge: str | None, k: int) -> bool | None:
        nonlocal done, errors
        try:
            d1, d2 = word_demos(data_root, source, target, bridge, k, word) if k else ([], [])
            out = await translate_chain(
                complete, "word", word, source, target, bridge, max_tokens=16, demos_bridge=d1, demos_target=d2
            )
            return matches_gold(out.answer, golds)
        except WorkerUnavailable:
            raise
        except GenerationError:
            errors += 1
            return None
        finally:
            done += 1
            if progress is not None:
                progress(done, total)

    scores: dict[str, DevScore] = {}
    for cond in conditions:
        if check is not None:
            check()  # raises to cancel, between conditions
        bridge = None if cond == NONE else cond
        k = k_shot
        if k:
            try:
                word_demos(data_root, source, target, bridge, k, "")
            except FileNotFoundError as e:
                notes[cond] = f"zero-shot: no demonstration data ({e})"
                k = 0
        hits = await asyncio.gather(*(one(w, g, bridge, k) for w, g in words))
        if errors >= 5 and errors > max_error_rate * done:
            raise ValidationFailed(f"{errors} of {done} dev generations failed; check the generation worker")
        scores[cond] = dev_score(sum(1 for h in hits if h), len(words))
    notes["errors"] = errors
    return scores, notes
