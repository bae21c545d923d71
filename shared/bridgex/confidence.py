"""The confidence of a served answer: how sure the model was of the answer's own tokens.

`answer_confidence` is exp(mean log-probability) of the generated tokens that overlap the parsed answer's span
in the raw completion (the geometric mean of their probabilities), so the quotes and separators around the
answer, which the model is always sure of, do not inflate it. It is in (0, 1]. It is the model's certainty
about the words it produced given the prompt (for a bridged chain: given the bridge step's text), not a
probability that the translation is right; docs/results.md reports how well it separates right from wrong
answers (AUROC) on the evaluation split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def answer_span(raw: str, answer: str) -> tuple[int, int] | None:
    """[start, end) of `answer` in the raw completion (its first occurrence), or None."""
    if not answer:
        return None
    start = raw.find(answer)
    return None if start < 0 else (start, start + len(answer))


def answer_confidence(
    raw: str, answer: str, tokens: Sequence[str], token_logprobs: Sequence[float], text_offset: Sequence[int]
) -> float | None:
    """exp(mean logprob) over the tokens overlapping `answer` in `raw`; all generated tokens when the answer
    cannot be located (the parser normalised it). None for an empty answer or no tokens."""
    if not answer or not tokens:
        return None
    span = answer_span(raw, answer)
    picked = []
    for tok, lp, off in zip(tokens, token_logprobs, text_offset, strict=True):
        if span is None or (off < span[1] and off + max(len(tok), 1) > span[0]):
            picked.append(lp)
    if not picked:
        picked = list(token_logprobs)
    if any(math.isinf(v) or math.isnan(v) for v in picked):
        return 0.0
    return math.exp(sum(picked) / len(picked))
