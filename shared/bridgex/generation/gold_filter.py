"""The gold filter (method.md step 2): keep the dictionary words the served model already translates right,
asking the generation worker with `concurrency` requests in flight (a continuous pipeline: a finished request
starts the next word at once). The probe set itself is built by bridgex.probes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from bridgex.cancel import Progress, ShouldCancel, check_cancel
from bridgex.generation.client import GenerationClient, GenerationError, WorkerUnavailable
from bridgex.generation.screen import Judged, judge_word
from bridgex.probes import (
    ProbeItem,
    ProbeSet,
    ProbeSetError,
    ProbeSetTooSmall,
    candidate_words,
    finish_probe_set,
)
from bridgex.prompts import Demo, word_prompt

Stopped = Literal["kept_enough", "exhausted", "unreachable", "hopeless"]
MAX_TOKENS = 16
"""Tokens a filter answer may take (a word, its quotes and the model running on)."""


class GoldFilterFailed(ProbeSetError):
    """Too many gold-filter requests failed for the filter's verdict to mean anything."""


async def _ask(
    client: GenerationClient, prompt: str, gold: list[str], request_id: str | None, screen_tokens: int
) -> tuple[Judged | None, str | None]:
    """(verdict, error) of one word; each request has the client's own timeout and retries. A worker that cannot
    be reached at all (WorkerUnavailable) fails the filter instead of counting as an error."""

    sent = 0

    async def generate(p: str, max_tokens: int) -> tuple[str, bool]:
        nonlocal sent
        sent += 1
        rid = f"{request_id}.{sent}" if request_id and sent > 1 else request_id
        out = await client.complete(p, max_tokens=max_tokens, temperature=0.0, stop=("\n",), request_id=rid)
        return out.text, out.finished

    try:
        return await judge_word(generate, prompt, gold, max_tokens=MAX_TOKENS, screen_tokens=screen_tokens), None
    except WorkerUnavailable:
        raise
    except GenerationError as e:
        return None, f"{type(e).__name__}: {e}"


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
    screen_tokens: int = 0,
    request_id: str | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> ProbeSet:
    """Build the probe set of a pair.

    With the gold filter, words are sent to `client` (the caller's, open; its timeout applies to each
    request, so a busy worker slows the filter down instead of failing it) with `concurrency` requests in
    flight, in dictionary order. Verdicts are taken in that order whatever order the answers arrive in, so the
    kept words, `tried` and the stop reason do not depend on `concurrency` or timing. The filter stops at the
    first of (`params["stopped"]`):
    - "kept_enough": `probe_max` words passed; cost ~ probe_max / pass rate words;
    - "exhausted": `max_examined` words (default 4 x probe_max, at most the dictionary) were tried;
    - "unreachable": even if every word left within that budget passed, fewer than `probe_min` would be kept;
    - "hopeless": at every multiple of 4 x probe_min words tried, twice the pass rate seen so far would not
      reach `probe_min` within the budget: a model that cannot do the pair costs 4 x probe_min words (128 with
      the defaults), not 4 x probe_max (2,000).
    `tried` counts the words whose verdict counted; `params["requests"]` the words sent, a few more when
    answers in flight at the stop were not needed; `params["generations"]` the requests those took, with
    `screen_tokens` > 0 (bridgex.generation.screen: a word is decoded for that many tokens first, and again whole
    only when they do not decide its verdict; the verdicts are those of whole decodes). No word past a point where
    the hopeless rule may still stop is sent until that point is decided, and never more words than could still
    be kept. The filter prompt carries `demos` (k demonstrations in the chain format, DECISION gold_filter_k;
    their words are never probes); the probe prompt itself stays zero-shot, the activations are those of
    `S:"w"→T:`. Below `probe_min` kept words, `fallback` decides (DECISION): "unfiltered" ranks on the first
    probe_max words unfiltered and labels the set `filter="unfiltered"` with the counts; "fail" raises
    ProbeSetTooSmall with a message saying what to change.
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
    if client is None:
        raise ProbeSetError("the gold filter needs a generation worker client: pass one or turn gold_filter off")
    limit = min(available, max_examined if max_examined is not None else 4 * probe_max)
    items, tried, errors, sent, stopped, generations = await _filter(
        client,
        words[:limit],
        source,
        target,
        demos,
        probe_max=probe_max,
        probe_min=probe_min,
        concurrency=max(1, concurrency),
        screen_tokens=screen_tokens,
        max_error_rate=max_error_rate,
        request_id=request_id,
        progress=progress,
        should_cancel=should_cancel,
    )
    params |= {"stopped": stopped, "limit": limit, "requests": sent, "generations": generations}
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
            f"(gold_filter_k), lower probe_min, set probe_fallback=unfiltered, or gold_filter=false "
            f"(stopped: {stopped})."
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


async def _filter(
    client: GenerationClient,
    words: list[tuple[str, list[str]]],
    source: str,
    target: str,
    demos: Sequence[Demo],
    *,
    probe_max: int,
    probe_min: int,
    concurrency: int,
    screen_tokens: int,
    max_error_rate: float,
    request_id: str | None,
    progress: Progress | None,
    should_cancel: ShouldCancel | None,
) -> tuple[list[ProbeItem], int, int, int, Stopped, int]:
    """The pipeline over `words` (already cut to the budget): (kept items, tried, errors, words sent, why it
    stopped, requests sent). Answers are buffered until every earlier word has its verdict; the stop rules see the
    words in dictionary order only."""
    limit, every = len(words), 4 * probe_min
    items: list[ProbeItem] = []
    answers: dict[int, tuple[Judged | None, str | None]] = {}
    running: dict[asyncio.Task, int] = {}
    tried = errors = sent = generations = 0
    stopped: Stopped | None = None
    last_error = ""

    def may_send() -> bool:
        if sent >= limit or len(running) >= concurrency:
            return False
        if len(items) + (sent - tried) >= probe_max:
            return False  # the words without a verdict could already fill the set
        point = (tried // every + 1) * every  # the next point where the hopeless rule is checked
        return not (sent >= point and point < limit and 2 * len(items) * limit < probe_min * point)

    def verdict() -> Stopped | None:
        if len(items) >= probe_max:
            return "kept_enough"
        if tried >= limit:
            return "exhausted"
        if len(items) + (limit - tried) < probe_min:
            return "unreachable"
        if tried % every == 0 and 2 * len(items) * limit < probe_min * tried:
            return "hopeless"  # even twice the pass rate seen so far would not reach the minimum
        return None

    try:
        while stopped is None:
            check_cancel(should_cancel, f"gold filter cancelled after {tried} words")
            while may_send():
                rid = f"{request_id}-gf{sent}" if request_id else None
                w, gold = words[sent]
                prompt = word_prompt(w, source, target, demos=demos)
                task = asyncio.ensure_future(_ask(client, prompt, gold, rid, screen_tokens))
                running[task] = sent
                sent += 1
            if not running:  # cannot happen: a word without a verdict is always running or answered
                raise RuntimeError(f"gold filter stalled after {tried} of {limit} words")
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                got = answers[running.pop(task)] = task.result()  # WorkerUnavailable propagates
                generations += got[0].requests if got[0] is not None else 1
            while stopped is None and tried in answers:
                judged, err = answers.pop(tried)
                w, golds = words[tried]
                tried += 1
                if err is not None:
                    errors, last_error = errors + 1, err
                    if errors >= 5 and errors > max_error_rate * tried:
                        raise GoldFilterFailed(
                            f"{errors} of {tried} gold-filter requests to the generation worker failed (last: "
                            f"{last_error}); check the worker, or submit with gold_filter=false"
                        )
                elif judged is not None and judged.hit:
                    item = ProbeItem(word=w, gold=golds, prompt=word_prompt(w, source, target), answer=judged.answer)
                    items.append(item)
                stopped = verdict()
            if progress is not None:
                progress(tried, limit)
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    return items, tried, errors, sent, stopped, generations
