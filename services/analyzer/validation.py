"""Dev-split validation of a ranking (method.md step 9): paired per-word outcomes of the incumbent, direct
translation, the top-m HSIC candidates and English on the pair's dev words, through the generation worker with
the served k_shot demonstrations, decided by bridgex.serving's sequential test.

It runs `bridgex.generation.chain.translate_chain` with `bridgex.demos` demonstrations, the same code the gateway
serves, so the measured accuracy is that of the served prompts: each condition gets the demonstrations an
explicit request for it gets (bridgex.demos in the order of DECISION demo_choice, recorded and served from the
record). A bridged condition shows the direct condition's words where its s->b dictionary has them; where it
has not, other words take their place, and the difference is recorded per condition. (Forcing one word set on
every condition was measured in run 6 and made `auto` differ from, and lose to, the explicit requests.) Dev words
(bridgex.data.layout part "dev") share no source word with the probes or the evaluation split; the most common
come first (bridgex.frequency). A failed generation is retried; one that still fails is excluded from the
paired test (not counted as a miss) and counted per condition. A chain's final answer is judged from its first
`screen_tokens` tokens where they decide it (bridgex.generation.screen: the whole decode's verdict, for fewer
decode steps); a bridge step is always decoded whole, as its word is needed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridgex.data.layout import DataLayout
from bridgex.demos import ordered_words, word_demos
from bridgex.frequency import frequency_order
from bridgex.generation.chain import bridge_step, chain_prompt
from bridgex.generation.client import GenerationClient, GenerationError, GenerationRejected, WorkerUnavailable
from bridgex.generation.screen import judge_word
from bridgex.prompts import Demo, normalize_word
from bridgex.serving import NONE, Decision, DevScore, SequentialDesign, SequentialTest, dev_score


class ValidationFailed(RuntimeError):
    """The dev measurement could not be made (worker errors); the message says what to do."""


def dev_words(data_root: str, source: str, target: str, size: int) -> list[tuple[str, list[str]]]:
    """The first `size` dev words (most common first) with their gold targets; echo-able words skipped."""
    tr = DataLayout(data_root).dictionary(source, target, "dev").translations()
    tr = {w: g for w, g in tr.items() if g and normalize_word(w) not in {normalize_word(x) for x in g}}
    return [(w, tr[w]) for w in frequency_order(tr, source, target, salt="dev")[:size]]


class CompletionMemo:
    """Greedy completions (text, finished) by (worker identity, prompt, max_tokens): a bridge step `S:"w"→B:` with
    the same demonstrations is the same prompt in every pair with that source and bridge (id-ja and id-tl through
    en), and temperature 0 makes the answer a function of the prompt. Bounded LRU; process-wide in the analyzer."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, int], tuple[str, bool]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple[str, str, int]) -> tuple[str, bool] | None:
        out = self._items.get(key)
        if out is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return out

    def put(self, key: tuple[str, str, int], value: tuple[str, bool]) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


MEMO = CompletionMemo()
MAX_TOKENS = 16
"""Tokens a dev answer (and a bridge step's word) may take, as served."""


@dataclass
class DevMeasurer:
    """Measures conditions on dev words: per word True (right), False (wrong) or None (failed after retries)."""

    client: GenerationClient
    source: str
    target: str
    demo_words: list[str]
    k_shot: int
    data_root: str
    concurrency: int = 16
    retries: int = 2
    memo_key: str = ""
    demo_choice: str = "frequent"
    screen_tokens: int = 0
    memo: CompletionMemo = field(default_factory=lambda: MEMO)
    errors: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    generations: int = 0
    done: int = 0
    progress: Callable[[int], None] | None = None
    check: Callable[[], None] | None = None
    """Raises to stop (a cancel, or the analyzer shutting down): called before each generation is sent, so a look
    of hundreds of words stops within one generation's time."""

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(max(1, self.concurrency))

    async def _generate(self, prompt: str, max_tokens: int) -> tuple[str, bool]:
        """(greedy completion, finished: not cut by max_tokens), retried, from the memo when asked before."""
        key = (self.memo_key, prompt, max_tokens)
        if self.memo_key and (hit := self.memo.get(key)) is not None:
            return hit
        last: GenerationError | None = None
        for attempt in range(self.retries + 1):
            try:
                async with self._sem:
                    if self.check is not None:
                        self.check()
                    self.generations += 1
                    out = await self.client.complete(prompt, max_tokens=max_tokens, temperature=0.0)
            except WorkerUnavailable:
                raise
            except GenerationRejected:
                raise  # the worker refused this prompt: asking again gets the same answer
            except GenerationError as e:
                last = e
                if attempt < self.retries:
                    self.retried += 1
                continue
            got = (out.text, out.finished)
            if self.memo_key:
                self.memo.put(key, got)
            return got
        assert last is not None
        raise last

    async def _complete(self, prompt: str, max_tokens: int) -> str:
        return (await self._generate(prompt, max_tokens))[0]

    def demos(self, bridge: str | None, word: str) -> tuple[list[Demo], list[Demo]]:
        if not self.k_shot:
            return [], []
        return word_demos(
            self.data_root,
            self.source,
            self.target,
            bridge,
            self.k_shot,
            word,
            words=self.demo_words,
            choice=self.demo_choice,
        )

    async def one(self, condition: str, word: str, golds: list[str]) -> bool | None:
        bridge = None if condition == NONE else condition
        d1, d2 = self.demos(bridge, word)
        try:
            step = await bridge_step(
                self._complete,
                "word",
                word,
                self.source,
                bridge,
                max_tokens=MAX_TOKENS,
                demos_bridge=d1,
                demos_target=d2,
            )
            prompt = chain_prompt(
                "word", word, self.source, self.target, step.bridge, step.bridge_text, step.demos_target
            )
            judged = await judge_word(
                self._generate, prompt, golds, max_tokens=MAX_TOKENS, screen_tokens=self.screen_tokens
            )
            return judged.hit
        except WorkerUnavailable:
            raise
        except GenerationError:
            self.errors[condition] = self.errors.get(condition, 0) + 1
            return None
        finally:
            self.done += 1
            if self.progress is not None:
                self.progress(self.done)

    async def outcomes(
        self, conditions: Sequence[str], words: Sequence[tuple[str, list[str]]]
    ) -> dict[str, list[bool | None]]:
        """Every (condition, word) at once: up to `concurrency` generations in flight fill the worker's batch."""
        jobs = [asyncio.ensure_future(self.one(c, w, g)) for c in conditions for w, g in words]
        try:
            flat = await asyncio.gather(*jobs)
        except BaseException:  # a stop, or the worker gone: the other generations of the look are not needed
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            raise
        n = len(words)
        return {c: list(flat[i * n : (i + 1) * n]) for i, c in enumerate(conditions)}


DEMO_ORDER_KEPT = 32
"""Words of the demonstration order recorded with a ranking (k per condition, spares for a query that is one of
them or a word a bridge's dictionary lacks; beyond it the usual order continues)."""


def condition_demos(
    data_root: str, source: str, target: str, conditions: Sequence[str], k: int, order: Sequence[str], choice: str
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(the demonstration source words each condition's prompts show, for a query that is none of them;
    conditions whose demonstration data is missing -> why)."""
    shown: dict[str, list[str]] = {}
    missing: dict[str, str] = {}
    for c in conditions:
        bridge = None if c == NONE else c
        try:
            _, step2 = word_demos(data_root, source, target, bridge, k, "", words=order, choice=choice)
        except FileNotFoundError as e:
            missing[c] = f"no demonstration data ({e})"
            continue
        shown[c] = [d.source_text for d in step2]
    return shown, missing


@dataclass
class DevValidation:
    decision: Decision
    scores: dict[str, DevScore]
    notes: dict[str, Any]
    demo_words: list[str]


async def validate_on_dev(
    client: GenerationClient,
    words: list[tuple[str, list[str]]],
    source: str,
    target: str,
    conditions: list[str],
    incumbent: str,
    design: SequentialDesign,
    *,
    data_root: str,
    k_shot: int,
    demo_order: Sequence[str] | None = None,
    demo_choice: str = "frequent",
    hsic_order: Sequence[str] = (),
    concurrency: int = 16,
    screen_tokens: int = 0,
    retries: int = 2,
    memo_key: str = "",
    progress: Callable[[int, int], None] | None = None,
    check: Callable[[], None] | None = None,
    max_error_rate: float = 0.1,
) -> DevValidation:
    """Run the sequential test (bridgex.serving.SequentialTest) on `words`, measuring each look's new words for
    the conditions still open. `check()` raises to cancel, before each generation. Conditions whose demonstration data
    is missing are left out (and noted): they could not be served with the measured prompts."""
    notes: dict[str, Any] = {}
    demo_words: list[str] = []
    if k_shot:
        order = demo_order if demo_order is not None else ordered_words(data_root, source, target, demo_choice)
        demo_words = list(order)[:DEMO_ORDER_KEPT]
        shown, missing = condition_demos(data_root, source, target, conditions, k_shot, demo_words, demo_choice)
        if missing:
            notes["left_out"] = missing
        if incumbent not in shown:  # it could not be served with demonstrations either: direct is the safe end
            notes["incumbent_unavailable"] = incumbent
            incumbent = NONE
        conditions = [c for c in conditions if c in shown]
        base = set(shown[incumbent])
        notes["demos"] = shown
        notes["demo_differences"] = {
            c: {"not_in_incumbent": [w for w in ws if w not in base], "count": len(ws)}
            for c, ws in shown.items()
            if set(ws) != base or len(ws) < k_shot
        }
    test = SequentialTest(conditions, incumbent, design, hsic_order)
    memo_hits = MEMO.hits
    planned = design.looks[-1] * len(conditions)
    m = DevMeasurer(
        client,
        source,
        target,
        demo_words,
        k_shot,
        data_root,
        concurrency=concurrency,
        retries=retries,
        memo_key=memo_key,
        demo_choice=demo_choice,
        screen_tokens=screen_tokens,
        progress=(lambda done: progress(done, planned)) if progress is not None else None,
        check=check,
    )
    while (ask := test.next()) is not None:
        if check is not None:
            check()
        conds, a, b = ask
        test.record(await m.outcomes(conds, words[a:b]))
        failed = sum(m.errors.values())
        if failed >= 5 and failed > max_error_rate * m.done:
            raise ValidationFailed(f"{failed} of {m.done} dev generations failed; check the generation worker")
    decision = test.decision
    assert decision is not None
    scores = {}
    for c, seq in test.outcomes.items():
        measured = [x for x in seq if x is not None]
        scores[c] = dev_score(sum(measured), len(measured))
    notes.update(
        {
            "errors": dict(m.errors),
            "retried": m.retried,
            "generations": m.generations,
            "memo_hits": m.memo.hits - memo_hits,
        }
    )
    return DevValidation(decision=decision, scores=scores, notes=notes, demo_words=demo_words)
