"""The gold filter (method.md step 2): keep the dictionary words the served model already translates right,
asking the generation worker in bounded concurrent windows. The probe set itself is built by bridgex.probes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from bridgex.cancel import Progress, ShouldCancel, check_cancel
from bridgex.generation.client import GenerationClient, GenerationError, WorkerUnavailable
from bridgex.probes import (
    ProbeItem,
    ProbeSet,
    ProbeSetError,
    ProbeSetTooSmall,
    candidate_words,
    finish_probe_set,
    matches_gold,
)
from bridgex.prompts import Demo, parse_word, word_prompt


class GoldFilterFailed(ProbeSetError):
    """Too many gold-filter requests failed for the filter's verdict to mean anything."""


async def _filter_window(
    client: GenerationClient,
    batch: list[tuple[str, list[str]]],
    source: str,
    target: str,
    demos: Sequence[Demo],
    sem: asyncio.Semaphore,
    request_id: str | None,
) -> list[tuple[str | None, str | None]]:
    """(parsed answer, error) per word; each request has the client's own timeout and retries."""

    async def one(i: int, w: str) -> tuple[str | None, str | None]:
        async with sem:
            try:
                out = await client.complete(
                    word_prompt(w, source, target, demos=demos),
                    max_tokens=16,
                    temperature=0.0,
                    stop=("\n",),
                    request_id=f"{request_id}-gf{i}" if request_id else None,
                )
            except WorkerUnavailable:
                raise
            except GenerationError as e:
                return None, f"{type(e).__name__}: {e}"
            return parse_word(out.text), None

    return list(await asyncio.gather(*(one(i, w) for i, (w, _) in enumerate(batch))))


async def abuild_probe_set(
    pairs: Iterable[Any],
    source: str,
    target: str,
    *,
    gold_filter: bool = True,
    client: GenerationClient | None = None,
    probe_max: int = 500,
    probe_min: int = 32,
    max_examined: int | None = None,
    concurrency: int = 4,
    demos: Sequence[Demo] = (),
    fallback: str = "unfiltered",
    max_error_rate: float = 0.1,
    seed: int = 0,
    skip_identical: bool = True,
    word_order: str = "frequency",
    request_id: str | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> ProbeSet:
    """Build the probe set of a pair.

    With the gold filter, words are sent to `client` (the caller's, open; its timeout applies to each
    request, so a busy worker slows the filter down instead of failing it) `concurrency` at a time until
    `probe_max` pass or `max_examined` (default 4 x probe_max) have been tried, or the pass rate after
    4 x probe_min words says the minimum is out of reach (a model that cannot do the pair costs ~128
    generations, not 2,000). The filter prompt carries `demos` (k demonstrations in the chain format,
    DECISION gold_filter_k; their words are never probes); the probe prompt itself stays zero-shot, the
    activations are those of `S:"w"→T:`. Below `probe_min` kept words, `fallback` decides (DECISION):
    "unfiltered" ranks on the first probe_max words unfiltered and labels the set `filter="unfiltered"` with
    the counts; "fail" raises ProbeSetTooSmall with a message saying what to change.
    """
    if probe_min < 1 or probe_max < probe_min:
        raise ProbeSetError(f"need 1 <= probe_min <= probe_max (got {probe_min}, {probe_max})")
    if fallback not in ("unfiltered", "fail"):
        raise ProbeSetError(f"fallback must be 'unfiltered' or 'fail', not {fallback!r}")
    demo_words = {d.source_text for d in demos}
    words = [
        (w, g)
        for w, g in candidate_words(
            pairs, skip_identical=skip_identical, seed=seed, source=source, target=target, word_order=word_order
        )
        if w not in demo_words
    ]
    available = len(words)
    params = {
        "gold_filter": gold_filter,
        "probe_max": probe_max,
        "probe_min": probe_min,
        "seed": seed,
        "skip_identical": skip_identical,
        "word_order": word_order,
        "filter_k": len(demos),
        "fallback": fallback,
    }
    if available < probe_min:
        raise ProbeSetTooSmall(
            f"the {source}-{target} dictionary has only {available} usable source words (single words, not "
            f"identical to their translation); at least probe_min={probe_min} are needed. Add dictionary "
            f"entries (bridgex data prepare), compose through a pivot, or lower probe_min."
        )

    def unfiltered() -> list[ProbeItem]:
        return [ProbeItem(word=w, gold=g, prompt=word_prompt(w, source, target)) for w, g in words[:probe_max]]

    if not gold_filter:
        items = unfiltered()
        if progress is not None:
            progress(len(items), len(items))
        return finish_probe_set(
            source, target, items, "off", tried=0, kept=0, errors=0, available=available, params=params
        )
    items: list[ProbeItem] = []
    tried = errors = 0
    limit = min(available, max_examined if max_examined is not None else 4 * probe_max)
    if client is None:
        raise ProbeSetError("the gold filter needs a generation worker client: pass one or turn gold_filter off")
    sem = asyncio.Semaphore(max(1, concurrency))
    window = max(1, concurrency) * 4
    while tried < limit and len(items) < probe_max:
        check_cancel(should_cancel, f"gold filter cancelled after {tried} words")
        batch = words[tried : min(limit, tried + window)]
        results = await _filter_window(client, batch, source, target, demos, sem, request_id)
        for (w, golds), (answer, err) in zip(batch, results, strict=True):
            if err is not None:
                errors += 1
            elif matches_gold(answer or "", golds) and len(items) < probe_max:
                items.append(ProbeItem(word=w, gold=golds, prompt=word_prompt(w, source, target), answer=answer))
        tried += len(batch)
        if errors >= 5 and errors > max_error_rate * tried:
            raise GoldFilterFailed(
                f"{errors} of {tried} gold-filter requests to the generation worker failed (last window: "
                f"{next((e for _, e in results if e), '')}); check the worker, or submit with "
                "gold_filter=false"
            )
        if progress is not None:
            progress(tried, limit)
        if len(items) + (limit - tried) < probe_min:
            break  # cannot reach the minimum any more
        if tried >= 4 * probe_min and 2 * len(items) * limit < probe_min * tried:
            break  # hopeless: even twice the pass rate seen so far would not reach the minimum
    kept = len(items)
    if kept >= probe_min:
        return finish_probe_set(
            source, target, items, "gold", tried=tried, kept=kept, errors=errors, available=available, params=params
        )
    if fallback == "fail":
        model = getattr(client, "model", None)
        raise ProbeSetTooSmall(
            f"gold filter kept {kept} of {tried} {source}->{target} words (model {model or '?'}, "
            f"{len(demos)} demonstrations); at least probe_min={probe_min} are needed. The model does not "
            f"translate enough of these words correctly: use a stronger model, more demonstrations "
            f"(gold_filter_k), lower probe_min, set probe_fallback=unfiltered, or gold_filter=false."
        )
    return finish_probe_set(
        source,
        target,
        unfiltered(),
        "unfiltered",
        tried=tried,
        kept=kept,
        errors=errors,
        available=available,
        params=params,
    )
