"""What `bridge: "auto"` serves for a pair (method.md step 9, beyond the paper): HSIC proposes, measurement
decides. Pure: dev accuracies in, a decision with its reason out.

DECISION `serve_policy`:
- "hsic": the paper's argmax of the HSIC ranking.
- "validated" (default): the condition with the most dev hits among the measured bridges, served only when it
  beats direct translation ("none") by at least `margin` dev words (DECISION serve_margin); otherwise none.
  Ties between bridges go to the better HSIC rank (the proposal breaks what the measurement cannot). Without
  a usable dev measurement it serves none: a bridge nobody measured may be worse than no bridge, which `auto`
  must never be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from bridgex.intervals import wilson_interval

Policy = Literal["validated", "hsic"]
NONE = "none"


class DevScore(BaseModel):
    """P@1 of one condition on the dev words, with its Wilson 95% interval."""

    hits: int
    n: int
    p_at_1: float
    ci: tuple[float, float]


class ServedChoice(BaseModel):
    bridge: str | None = Field(description="Bridge `auto` serves; None = translate directly.")
    policy: Policy
    reason: str


def dev_score(hits: int, n: int) -> DevScore:
    return DevScore(hits=hits, n=n, p_at_1=hits / n if n else 0.0, ci=wilson_interval(hits, n))


def validation_conditions(hsic_order: Sequence[str], top_m: int, source: str, target: str) -> list[str]:
    """What the dev split measures: none, the top-m HSIC candidates, and English (when not in the pair)."""
    out = [NONE, *list(hsic_order)[:top_m]]
    if "en" not in (source, target) and "en" not in out:
        out.append("en")
    return out


def choose(
    policy: Policy, hsic_order: Sequence[str], dev: Mapping[str, DevScore] | None, margin: int = 1
) -> ServedChoice:
    """The served bridge. `hsic_order`: scored candidates, best first; `dev`: condition -> score, with "none";
    `margin`: dev hits a bridge needs over direct translation (DECISION serve_margin; 1 = strictly more)."""
    if margin < 1:
        raise ValueError(f"serve_margin must be >= 1 (a tie is not a win), got {margin}")
    if policy == "hsic":
        if not hsic_order:
            return ServedChoice(bridge=None, policy=policy, reason="no candidate could be scored")
        return ServedChoice(bridge=hsic_order[0], policy=policy, reason="HSIC argmax (the paper's choice)")
    if policy != "validated":
        raise ValueError(f"serve_policy must be 'validated' or 'hsic', not {policy!r}")
    if not dev or NONE not in dev:
        return ServedChoice(
            bridge=None,
            policy=policy,
            reason="no dev measurement: translating directly (an unmeasured bridge may be worse)",
        )
    direct = dev[NONE]
    rank = {c: i for i, c in enumerate(hsic_order)}
    bridges = sorted((c for c in dev if c != NONE), key=lambda c: (-dev[c].hits, rank.get(c, len(rank)), c))
    summary = ", ".join(f"{c} {dev[c].hits}/{dev[c].n}" for c in [NONE, *bridges])
    if not bridges or dev[bridges[0]].hits - direct.hits < margin:
        need = "" if margin == 1 else f" by {margin}+ words"
        return ServedChoice(
            bridge=None, policy=policy, reason=f"no bridge beat direct translation{need} on the dev words ({summary})"
        )
    best = bridges[0]
    return ServedChoice(
        bridge=best, policy=policy, reason=f"{best} beat direct translation on the dev words ({summary})"
    )
