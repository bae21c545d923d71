"""Which bridge each evaluation condition uses, per pair: none, English, HSIC-chosen (per DECISION method),
what the service serves (the ranking's serve_policy decision, possibly no bridge), every candidate (so the
oracle is known), typology fallback.

Conditions are labels over bridges: a condition's score is the score of its bridge, so two conditions that
pick the same bridge (HSIC and typology both choosing `de`, say) share every generation.
Rankings are the analyzer's published JSON (`bridgex.ranking.Ranking.model_dump()`), read from a file or a
directory; the pair and the method (selection x bridge set) come from the JSON's params/provenance fields, or
else from the file name (`en-sw.top_rate.specific.json`, `en-sw/lape-full.json`, ...).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from bridgex.languages import normalize_code

__all__ = [
    "Condition",
    "PairRankings",
    "RankingInfo",
    "build_conditions",
    "load_rankings",
]

SELECTIONS = ("top_rate", "lape")
BRIDGE_SETS = ("specific", "full")


@dataclass(frozen=True)
class RankingInfo:
    """One ranking of candidates for one pair and one method (selection x bridge set)."""

    src: str
    tgt: str
    method: str  # "<selection>/<bridge_set>", e.g. "top_rate/specific"
    ranked: list[dict]  # [{code, score, rank, per_layer, set_sizes, coverage}] best first
    path: str
    declared_best: str | None = None
    served: dict | None = None  # the analyzer's serving decision ({"bridge", "policy", "reason"}), when recorded

    @property
    def best(self) -> str | None:
        if self.declared_best:
            return self.declared_best
        scored = [c for c in self.ranked if c.get("score") is not None]
        return scored[0]["code"] if scored else None

    def rank_of(self) -> dict[str, int]:
        """HSIC rank of every candidate that could be scored (unscored ones carry no ranking information)."""
        return {c["code"]: int(c.get("rank", i + 1)) for i, c in enumerate(self.ranked) if c.get("score") is not None}


@dataclass
class PairRankings:
    by_method: dict[str, RankingInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class Condition:
    name: str  # "none", "en", "hsic:top_rate/specific", "served:top_rate/specific", "cand:de", "typology"
    bridge: str | None


def _find(d: dict, *keys: str) -> object | None:
    """First of `keys` found at the top level or inside params/provenance/pair/request."""
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    for sub in ("params", "provenance", "pair", "request", "method"):
        v = d.get(sub)
        if isinstance(v, dict):
            for k in keys:
                if v.get(k) is not None:
                    return v[k]
    return None


_PAIR_RE = re.compile(r"(?<![A-Za-z])([a-z]{2,3})[-_]([a-z]{2,3})(?![A-Za-z])")


def _ranking_from(data: dict, path: Path) -> RankingInfo | None:
    ranked = data.get("ranked")
    if not isinstance(ranked, list) or not all(isinstance(c, dict) and "code" in c for c in ranked):
        return None
    src, tgt = _find(data, "src", "source"), _find(data, "tgt", "target")
    pair = _find(data, "pair")
    if (src is None or tgt is None) and isinstance(pair, str) and "-" in pair:
        src, tgt = pair.split("-", 1)
    text = path.as_posix()
    if src is None or tgt is None:
        found = list(_PAIR_RE.finditer(text))
        if not found:
            return None
        src, tgt = found[-1].group(1), found[-1].group(2)
    selection = _find(data, "selection")
    bridge_set = _find(data, "bridge_set", "bridge_set_variant", "set_variant")
    low = text.lower()
    if selection is None:
        selection = next((s for s in SELECTIONS if s in low or s.replace("_", "-") in low), "top_rate")
    if bridge_set is None:
        bridge_set = next((b for b in BRIDGE_SETS if b in Path(low).name or f"/{b}" in low), "specific")
    ranked = sorted(ranked, key=lambda c: (c.get("rank") or 0, -(c.get("score") or float("-inf"))))
    best = data.get("best") if isinstance(data.get("best"), str) else None
    served = data.get("served") if isinstance(data.get("served"), dict) else None
    return RankingInfo(
        normalize_code(str(src)), normalize_code(str(tgt)), f"{selection}/{bridge_set}", ranked, str(path), best, served
    )


def load_rankings(path: Path | None) -> dict[tuple[str, str], PairRankings]:
    """Every ranking JSON under `path` (a file or a directory, searched recursively), by (src, tgt)."""
    out: dict[tuple[str, str], PairRankings] = {}
    if path is None:
        return out
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"rankings path not found: {path}")
    files = [path] if path.is_file() else sorted(path.rglob("*.json"))
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue
        candidates = [data] if isinstance(data, dict) else []
        # a wrapper {"ranking": {...}} or {"result": {...}} (job results) is accepted too
        for key in ("ranking", "result"):
            if isinstance(data, dict) and isinstance(data.get(key), dict):
                candidates.append({**data, **data[key]})
        for d in candidates:
            info = _ranking_from(d, f)
            if info is not None:
                pr = out.setdefault((info.src, info.tgt), PairRankings())
                # newest file wins on a clash (sorted paths; later overrides)
                pr.by_method[info.method] = info
                break
    return out


def build_conditions(
    src: str, tgt: str, candidates: list[str], rankings: PairRankings | None, typology_bridge: str | None
) -> list[Condition]:
    """Conditions for one pair, in report order. English only when it is neither side of the pair."""
    conds = [Condition("none", None)]
    if "en" not in (src, tgt):
        conds.append(Condition("en", "en"))
    if rankings is not None:
        for method in sorted(rankings.by_method):
            best = rankings.by_method[method].best
            if best is not None:
                conds.append(Condition(f"hsic:{method}", best))
        for method in sorted(rankings.by_method):  # what `auto` serves (serve_policy), None = direct
            served = rankings.by_method[method].served
            if served is not None:
                conds.append(Condition(f"served:{method}", served.get("bridge")))
    if typology_bridge is not None and typology_bridge not in (src, tgt):
        conds.append(Condition("typology", typology_bridge))
    conds += [Condition(f"cand:{b}", b) for b in candidates if b not in (src, tgt)]
    return conds
