"""What `bridge: "auto"` serves for a pair (method.md step 9, beyond the paper): HSIC proposes, measurement
decides. Pure: paired per-word dev outcomes in, a decision with its evidence out.

DECISION `serve_policy`:
- "hsic": the paper's argmax of the HSIC ranking.
- "validated" (default): a sequential paired test against an incumbent (below). Without a usable dev
  measurement it serves the incumbent's safe end, no bridge: a bridge nobody measured may be worse.

The test. Every condition is measured on the same dev words with the same demonstration words, so each word
gives a paired outcome. The incumbent (DECISION `serve_incumbent`: "none", or "en" for pairs without English)
is served unless a challenger wins a one-sided exact sign test on the discordant words (challenger right and
incumbent wrong, against the reverse; scipy.stats.binomtest), Holm-corrected over all challengers.

Sequential design (named, with its error rate): Haybittle-Peto looks with a union bound. Looks are at
`looks` cumulative word counts (e.g. 100, 200, 400). Every interim look tests at `interim_alpha` (0.001);
the final look at `alpha - (L - 1) * interim_alpha`. Holm at level a_l controls the family-wise error of one
look at a_l, so by the union bound the probability of serving a challenger that is no better than the
incumbent, at any look, is at most the sum of the levels, alpha, whatever the dependence between looks,
conditions and words. Futility is non-binding: a challenger that shows no advantage at an interim look
(wins <= losses on its discordant words) stops being measured; dropping it can only lower the error rate.
tests/core/test_serving.py shows both by simulation: the false-switch rate under the null, and the power
under a known gain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field
from scipy.stats import binomtest

from bridgex.intervals import wilson_interval

Policy = Literal["validated", "hsic"]
Incumbent = Literal["none", "en"]
NONE = "none"
DESIGN = "Haybittle-Peto looks, union bound over looks, Holm over challengers, non-binding futility"


class DevScore(BaseModel):
    """P@1 of one condition on the dev words, with its Wilson 95% interval."""

    hits: int
    n: int
    p_at_1: float
    ci: tuple[float, float]


class ChallengerTest(BaseModel):
    """One challenger against the incumbent on the paired dev words of a look."""

    condition: str
    n: int = Field(description="Paired words: both conditions answered (failed generations excluded).")
    wins: int = Field(description="Words only the challenger got right.")
    losses: int = Field(description="Words only the incumbent got right.")
    p_value: float = Field(description="One-sided exact sign test on the discordant words (challenger better).")
    holm_level: float | None = Field(None, description="Holm's threshold for this p-value at this look.")
    significant: bool = False
    dropped: bool = Field(False, description="Stopped for futility (no advantage at an interim look).")


class Decision(BaseModel):
    """The serving test's record: what `/bridges` and the dashboard show."""

    incumbent: str
    served: str
    alpha: float
    design: str = DESIGN
    looks: list[int] = Field(description="Planned cumulative dev words per look.")
    levels: list[float] = Field(description="Test level of each look (sums to alpha).")
    look: int = Field(description="Index of the look that closed the decision.")
    words: int = Field(description="Dev words measured when it closed.")
    closed_by: Literal["efficacy", "futility", "final_look", "no_challenger"]
    tests: list[ChallengerTest]


class ServedChoice(BaseModel):
    bridge: str | None = Field(description="Bridge `auto` serves; None = translate directly.")
    policy: Policy
    reason: str
    decision: Decision | None = None
    demo_words: list[str] | None = Field(
        None, description="Source words of the demonstrations measured (and served) for this pair."
    )
    demo_choice: str | None = Field(None, description="How they were chosen (DECISION demo_choice).")


def dev_score(hits: int, n: int) -> DevScore:
    return DevScore(hits=hits, n=n, p_at_1=hits / n if n else 0.0, ci=wilson_interval(hits, n))


def incumbent_for(source: str, target: str, incumbent: Incumbent) -> str:
    """The condition served unless beaten: "en" only where English is not a side of the pair."""
    if incumbent not in ("none", "en"):
        raise ValueError(f"serve_incumbent must be 'none' or 'en', not {incumbent!r}")
    return "en" if incumbent == "en" and "en" not in (source, target) else NONE


def validation_conditions(
    hsic_order: Sequence[str], top_m: int, source: str, target: str, incumbent: Incumbent = "none"
) -> list[str]:
    """What the dev split measures, incumbent first: none, the top-m HSIC candidates, and English (when not a
    side of the pair)."""
    out = [incumbent_for(source, target, incumbent), NONE, *list(hsic_order)[:top_m]]
    if "en" not in (source, target):
        out.append("en")
    return list(dict.fromkeys(c for c in out if c not in (source, target)))


@dataclass(frozen=True)
class SequentialDesign:
    """Cumulative dev words per look and the level of each look (Haybittle-Peto with a union bound)."""

    looks: tuple[int, ...]
    alpha: float = 0.05
    interim_alpha: float = 0.001

    def __post_init__(self) -> None:
        if not self.looks or any(b <= a for a, b in zip(self.looks, self.looks[1:], strict=False)) or self.looks[0] < 1:
            raise ValueError(f"looks must be increasing positive word counts, got {self.looks}")
        if not 0 < self.alpha < 1 or self.final_alpha <= 0:
            raise ValueError(
                f"alpha={self.alpha} leaves nothing for the final look after {len(self.looks) - 1} interim looks "
                f"at {self.interim_alpha}: use fewer looks or a smaller interim_alpha"
            )

    @property
    def final_alpha(self) -> float:
        return self.alpha - (len(self.looks) - 1) * self.interim_alpha

    def level(self, look: int) -> float:
        return self.final_alpha if look == len(self.looks) - 1 else self.interim_alpha

    @classmethod
    def doubling(cls, first: int, most: int, available: int, alpha: float = 0.05) -> SequentialDesign:
        """Looks at first, 2 first, 4 first, ... up to min(most, available) words (the last look is that)."""
        cap = max(1, min(most, available))
        looks = [min(first, cap)]
        while looks[-1] < cap:
            looks.append(min(2 * looks[-1], cap))
        # 0.001 per interim look (Haybittle-Peto), less when alpha is so small that it would leave the final look
        # under 90% of alpha
        interim = min(0.001, alpha / (10 * max(1, len(looks) - 1)))
        return cls(looks=tuple(looks), alpha=alpha, interim_alpha=interim)


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact sign test p-value: P(at least `wins` of the discordant words go to the challenger | 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(binomtest(wins, n, 0.5, alternative="greater").pvalue)


def paired_test(condition: str, challenger: Sequence[bool | None], incumbent: Sequence[bool | None]) -> ChallengerTest:
    """Sign test of one challenger against the incumbent; words where either failed are excluded."""
    if len(challenger) != len(incumbent):
        raise ValueError(f"paired outcomes differ in length: {len(challenger)} against {len(incumbent)}")
    pairs = [(c, i) for c, i in zip(challenger, incumbent, strict=True) if c is not None and i is not None]
    wins = sum(1 for c, i in pairs if c and not i)
    losses = sum(1 for c, i in pairs if i and not c)
    return ChallengerTest(condition=condition, n=len(pairs), wins=wins, losses=losses, p_value=sign_test(wins, losses))


def holm(tests: list[ChallengerTest], level: float, family: int) -> list[ChallengerTest]:
    """Holm's step-down over the `family` challengers (dropped ones count, with p = 1): marks the significant."""
    order = sorted(range(len(tests)), key=lambda i: tests[i].p_value)
    out = [t.model_copy() for t in tests]
    for rank, i in enumerate(order):
        threshold = level / max(1, family - rank)
        out[i].holm_level = threshold
        if out[i].dropped or out[i].p_value > threshold:
            break
        out[i].significant = True
    return out


def decide_look(
    outcomes: Mapping[str, Sequence[bool | None]],
    incumbent: str,
    design: SequentialDesign,
    look: int,
    dropped: frozenset[str] = frozenset(),
    hsic_order: Sequence[str] = (),
) -> Decision | list[str]:
    """One look of the sequential test. `outcomes`: condition -> per-word outcome (True right, False wrong, None
    failed), the same words for every condition, the incumbent's among them. Returns the Decision when this look
    closes it, else the challengers to go on measuring (the others stop for futility)."""
    challengers = [c for c in outcomes if c != incumbent]
    final = look == len(design.looks) - 1
    level = design.level(look)
    base = {"incumbent": incumbent, "alpha": design.alpha, "looks": list(design.looks)}
    base |= {"levels": [design.level(i) for i in range(len(design.looks))], "look": look}
    words = len(outcomes[incumbent])
    if not challengers:
        return Decision(**base, served=incumbent, words=words, closed_by="no_challenger", tests=[])
    tests = []
    for c in challengers:
        t = paired_test(c, outcomes[c], outcomes[incumbent])
        if c in dropped:
            t.dropped, t.p_value = True, 1.0
        tests.append(t)
    tests = holm(tests, level, len(challengers))
    winners = [t for t in tests if t.significant]
    if winners:
        rank = {c: i for i, c in enumerate(hsic_order)}
        best = min(winners, key=lambda t: (-(t.wins - t.losses), rank.get(t.condition, len(rank)), t.condition))
        return Decision(**base, served=best.condition, words=words, closed_by="efficacy", tests=tests)
    if final:
        return Decision(**base, served=incumbent, words=words, closed_by="final_look", tests=tests)
    going_on = [t.condition for t in tests if not t.dropped and t.wins > t.losses]
    for t in tests:
        if t.condition not in going_on:
            t.dropped = True
    if not going_on:
        return Decision(**base, served=incumbent, words=words, closed_by="futility", tests=tests)
    return going_on


class SequentialTest:
    """The sequential test as a state machine, so the analyzer (async, through the worker) and the simulation in
    tests/core/test_serving.py (sync) run the very same procedure:

        test = SequentialTest(conditions, incumbent, design)
        while (ask := test.next()) is not None:
            conditions, start, stop = ask          # measure these conditions on dev words [start, stop)
            test.record({c: outcomes_of(c, start, stop) for c in conditions})
        test.decision
    """

    def __init__(
        self, conditions: Sequence[str], incumbent: str, design: SequentialDesign, hsic_order: Sequence[str] = ()
    ) -> None:
        if incumbent not in conditions:
            raise ValueError(f"the incumbent {incumbent!r} is not among the conditions {list(conditions)}")
        self.design = design
        self.incumbent = incumbent
        self.hsic_order = tuple(hsic_order)
        self.outcomes: dict[str, list[bool | None]] = {c: [] for c in dict.fromkeys(conditions)}
        self.active = list(self.outcomes)
        self.look = 0
        self.decision: Decision | None = None

    def next(self) -> tuple[list[str], int, int] | None:
        """(conditions, first word, end word) to measure next, or None once decided."""
        if self.decision is not None:
            return None
        start = len(self.outcomes[self.incumbent])
        return list(self.active), start, self.design.looks[self.look]

    def record(self, new: Mapping[str, Sequence[bool | None]]) -> Decision | None:
        ask = self.next()
        if ask is None:
            raise RuntimeError("the test is already decided")
        conditions, start, stop = ask
        for c in conditions:
            got = list(new[c])
            if len(got) != stop - start:
                raise ValueError(f"{c}: {len(got)} outcomes for words [{start}, {stop})")
            self.outcomes[c].extend(got)
        for seq in self.outcomes.values():  # conditions stopped for futility: no outcome (excluded)
            seq.extend([None] * (stop - len(seq)))
        dropped = frozenset(c for c in self.outcomes if c not in self.active)
        got = decide_look(self.outcomes, self.incumbent, self.design, self.look, dropped, self.hsic_order)
        if isinstance(got, Decision):
            self.decision = got
        else:
            self.active = [self.incumbent, *got]
            self.look += 1
        return self.decision


def _summary(decision: Decision) -> str:
    parts = [
        f"{t.condition} +{t.wins}/-{t.losses} p={t.p_value:.3g}{' (stopped)' if t.dropped else ''}"
        for t in decision.tests
    ]
    return f"{decision.words} dev words against {decision.incumbent}: " + (", ".join(parts) or "no challenger")


def choose(
    policy: Policy,
    hsic_order: Sequence[str],
    decision: Decision | None,
    *,
    demo_words: Sequence[str] | None = None,
    demo_choice: str | None = None,
) -> ServedChoice:
    """The served bridge. `hsic_order`: scored candidates, best first; `decision`: the sequential test's record
    (None: nothing could be measured)."""
    demos = list(demo_words) if demo_words is not None else None
    if policy == "hsic":
        if not hsic_order:
            return ServedChoice(bridge=None, policy=policy, reason="no candidate could be scored")
        return ServedChoice(
            bridge=hsic_order[0],
            policy=policy,
            reason="HSIC argmax (the paper's choice)",
            demo_words=demos,
            demo_choice=demo_choice,
        )
    if policy != "validated":
        raise ValueError(f"serve_policy must be 'validated' or 'hsic', not {policy!r}")
    if decision is None:
        return ServedChoice(
            bridge=None,
            policy=policy,
            reason="no dev measurement: translating directly (an unmeasured bridge may be worse)",
        )
    served = None if decision.served == NONE else decision.served
    if decision.closed_by == "efficacy":
        t = next(t for t in decision.tests if t.condition == decision.served)
        why = (
            f"{decision.served} beat the incumbent {decision.incumbent} (one-sided sign test p={t.p_value:.3g} "
            f"<= Holm level {t.holm_level:.3g})"
        )
    else:
        why = f"no challenger beat the incumbent {decision.incumbent} at alpha={decision.alpha} ({decision.closed_by})"
    return ServedChoice(
        bridge=served,
        policy=policy,
        reason=f"{why}; {_summary(decision)}",
        decision=decision,
        demo_words=demos,
        demo_choice=demo_choice,
    )
