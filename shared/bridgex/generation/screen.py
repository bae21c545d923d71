"""Greedy verdicts that pay only for the tokens that decide them (issue 21, "ask only the question you need").

The gold filter and the dev validation ask one question of a word: does greedy decoding's answer match a gold
target? Most answers are wrong from their first character (`"火` for the gold 水), and a decode step costs a read
of every weight, shared by the sequences of the step. So a word is first decoded for `screen_tokens` tokens
only; `bridgex.probes.gold_verdict` decides from them when it can (a closed quote, or a prefix no gold word has),
and only an open case is decoded again whole. The second request repeats the first one's prompt, so its cached
blocks are reused and it returns exactly the greedy answer the one-request path gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bridgex.probes import gold_verdict, matches_gold
from bridgex.prompts import parse_word, parse_word_partial

Generate = Callable[[str, int], Awaitable[tuple[str, bool]]]
"""generate(prompt, max_tokens) -> (completion text, finished): greedy, stopping at a newline; `finished` is
False only when the completion was cut by max_tokens."""

REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Judged:
    """A word's verdict, its parsed answer when known (None for a word rejected from the start of an answer),
    and the requests it took (1: decided by the screen, or screening off; 2: decoded again whole)."""

    hit: bool
    answer: str | None
    requests: int


async def judge_word(
    generate: Generate, prompt: str, gold: Sequence[str], *, max_tokens: int, screen_tokens: int
) -> Judged:
    """Greedy decoding's verdict on `prompt` against `gold`, screened after `screen_tokens` tokens (0: off)."""
    if 0 < screen_tokens < max_tokens:
        text, finished = await generate(prompt, screen_tokens)
        if not finished:
            # a character cut mid-way decodes as U+FFFD: what follows it is not yet known
            text = text.split(REPLACEMENT, 1)[0]
        verdict = gold_verdict(text, gold, finished=finished)
        if verdict is not None:
            got = parse_word_partial(text)
            answer = parse_word(text) if finished else got[0] if got is not None and got[1] else None
            return Judged(verdict, answer, 1)
    text, _ = await generate(prompt, max_tokens)
    answer = parse_word(text)
    return Judged(matches_gold(answer, gold), answer, 2 if 0 < screen_tokens < max_tokens else 1)


__all__ = ["Generate", "Judged", "judge_word"]
