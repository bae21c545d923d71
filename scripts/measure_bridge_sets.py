"""Issue 21 item 6: do the bridge-set remedies put the validated winner into HSIC's top two more often?

    BRIDGEX_DATA_DIR=... BRIDGEX_ARTIFACTS_DIR=... .venv/bin/python scripts/measure_bridge_sets.py \
        de-ja id-ja zh-ja ... --dev 100 --out bridge_sets.json

Run it on a data directory and artifact store where the pairs were analysed (`make run` + POST /analyze, or
scripts/real_analysis.py): the probe sets, profiles and activations are reused, so each variant's ranking costs
only its rank stage (`serve_policy=hsic`: nothing is measured for it, nothing is published).

Per pair:
- the validated winner: dev P@1 of every candidate bridge and of direct translation on the first `--dev` dev
  words, measured as the analysis measures (DevMeasurer: the served k_shot and demonstrations, greedy, screened),
  on the analyzer's own model (bridgex.generation.local, whose answers are the worker's: docs/results.md run 16).
  The winner is the candidate bridge with the most hits; tied candidates are all winners; a pair where no bridge
  gets a hit has none and is left out.
- each variant's HSIC ranking (DECISIONs: selection, bridge set, HSIC or CKA, a larger top_rate for bigger sets) and
  its bridge sets' median size per layer.
Per variant: on how many pairs the top two contain a winner, against the rate two candidates drawn at random would
have (the exact binomial test, scipy.stats.binomtest, one-sided: better than chance), with Wilson intervals; and
each remedy against the default on the pairs where they differ (exact sign test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from math import comb
from pathlib import Path
from typing import Any

from bridgex.demos import ordered_words
from bridgex.generation.local import LocalEngine
from bridgex.intervals import wilson_interval
from scipy.stats import binomtest

from services.analyzer import stages
from services.analyzer.config import AnalyzerSettings
from services.analyzer.validation import DEMO_ORDER_KEPT, DevMeasurer, dev_words
from services.common.analysis import AnalysisRequest, AnalysisSpec

VARIANTS: dict[str, dict[str, Any]] = {
    "default (top_rate 0.01, specific, HSIC)": {},
    "full bridge set": {"bridge_set": "full"},
    "LAPE selection": {"selection": "lape"},
    "CKA (bandwidth-free scale)": {"hsic_variant": "cka"},
    "larger sets (top_rate 0.05)": {"top_rate": 0.05},
}


def rankings(settings: AnalyzerSettings, src: str, tgt: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, over in VARIANTS.items():
        req = AnalysisRequest(source=src, target=tgt, serve_policy="hsic", **over).normalized(settings)
        try:
            res = stages.run_analysis(
                AnalysisSpec.from_request(req), stages.JobContext(settings=settings), publish=False
            )
        except stages.AnalysisFailed as e:  # a variant whose sets are empty in every layer scores no candidate
            out[name] = {"order": [], "scores": {}, "median_set_size": 0, "empty_layers": None, "error": str(e)}
            continue
        ranked = [c for c in res["ranking"] if c.get("score") is not None]
        ranked_file = json.loads(Path(res["artifacts"]["ranking"]).read_text())["ranked"]
        sizes = [n for c in ranked_file for n in (c.get("set_sizes") or {}).values()]
        out[name] = {
            "order": [c["code"] for c in ranked],
            "scores": {c["code"]: c["score"] for c in ranked},
            "median_set_size": statistics.median(sizes) if sizes else None,
            "empty_layers": sum(1 for n in sizes if n == 0),
            "layers": len(sizes),
        }
    return out


async def dev_hits(
    engine: LocalEngine, settings: AnalyzerSettings, src: str, tgt: str, bridges: list[str], n: int
) -> dict[str, list[int]]:
    data = str(settings.data_path)
    words = dev_words(data, src, tgt, n)
    m = DevMeasurer(
        engine,  # type: ignore[arg-type]  (LocalEngine answers GenerationClient.complete)
        src,
        tgt,
        ordered_words(data, src, tgt)[:DEMO_ORDER_KEPT],
        settings.k_shot,
        data,
        concurrency=settings.local_batch,
        screen_tokens=settings.screen_tokens,
    )
    got = await m.outcomes(["none", *bridges], words)
    return {c: [sum(1 for x in v if x), sum(1 for x in v if x is not None)] for c, v in got.items()}


def chance(n: int, winners: int) -> float:
    """The chance that two of n candidates drawn at random include one of `winners`."""
    return 1 - comb(n - winners, 2) / comb(n, 2) if n >= 2 else 1.0


def summary(pairs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    base = next(iter(VARIANTS))
    for name in VARIANTS:
        hits, expect, judged, per_pair = 0, 0.0, 0, {}
        for pair, p in pairs.items():
            winners = p["winners"]
            order = p["rankings"][name]["order"]  # candidates the variant scores (a degenerate set scores none)
            if not winners:
                continue
            judged += 1
            ok = bool(set(order[:2]) & set(winners))
            per_pair[pair] = ok
            hits += ok
            expect += chance(len(p["dev"]) - 1, len(winners))  # every measured bridge: the dev keys less "none"
        rate = expect / judged if judged else 0.0
        test = binomtest(hits, judged, rate, alternative="greater") if judged else None
        lo, hi = wilson_interval(hits, judged)
        sizes = [p["rankings"][name]["median_set_size"] for p in pairs.values()]
        sizes = [s for s in sizes if s is not None]
        rows[name] = {
            "pairs": judged,
            "top2_has_winner": hits,
            "rate": hits / judged if judged else None,
            "wilson95": [lo, hi],
            "chance_rate": rate,
            "p_better_than_chance": test.pvalue if test is not None else None,
            "median_set_size": statistics.median(sizes) if sizes else None,
            "per_pair": per_pair,
        }
    for name, row in rows.items():
        if name == base:
            continue
        a, b = rows[base]["per_pair"], row["per_pair"]
        wins = sum(1 for k in a if b.get(k) and not a[k])
        losses = sum(1 for k in a if a[k] and not b.get(k))
        row["vs_default"] = {
            "wins": wins,
            "losses": losses,
            "p": binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0,
        }
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="src-tgt pairs already analysed on this data directory")
    ap.add_argument("--dev", type=int, default=100, help="dev words per condition")
    ap.add_argument("--out", type=Path, required=True, help="results; pairs already in it are not measured again")
    ap.add_argument("--summarize", action="store_true", help="only summarize the pairs already in --out")
    args = ap.parse_args(argv)
    if args.summarize:
        report(json.loads(args.out.read_text())["pairs"], args.out)
        return 0
    settings = AnalyzerSettings()
    lm = stages.load_lm(settings)
    engine = LocalEngine(lm.model, lm.tokenizer, max_batch=settings.local_batch, name=lm.model_id)
    pairs: dict[str, dict[str, Any]] = json.loads(args.out.read_text())["pairs"] if args.out.is_file() else {}
    for pair in args.pairs:
        if pair in pairs:  # measured by an earlier run into the same file
            continue
        src, _, tgt = pair.partition("-")
        t0 = time.perf_counter()
        ranks = rankings(settings, src, tgt)
        bridges = sorted({c for r in ranks.values() for c in r["order"]})
        dev = asyncio.run(dev_hits(engine, settings, src, tgt, bridges, args.dev))
        best = max((dev[b][0] for b in bridges), default=0)
        winners = [b for b in bridges if best > 0 and dev[b][0] == best]
        pairs[pair] = {"dev": dev, "winners": winners, "rankings": ranks, "seconds": time.perf_counter() - t0}
        tops = {k: v["order"][:2] for k, v in ranks.items()}
        print(f"{pair}: dev {dev}; winners {winners}; top two {tops}", flush=True)
        args.out.write_text(json.dumps({"pairs": pairs}, indent=1, ensure_ascii=False))
    report(pairs, args.out)
    return 0


def report(pairs: dict[str, dict[str, Any]], out: Path) -> None:
    rows = summary(pairs)
    out.write_text(json.dumps({"pairs": pairs, "variants": rows}, indent=1, ensure_ascii=False))
    print(f"\n{'variant':<42}{'pairs':>6}{'top2 has winner':>17}{'chance':>8}{'p':>8}{'set size':>10}  vs default")
    for name, r in rows.items():
        vs = r.get("vs_default")
        lo, hi = r["wilson95"]
        versus = "" if vs is None else f"+{vs['wins']}/-{vs['losses']} p={vs['p']:.2f}"
        print(
            f"{name:<42}{r['pairs']:>6}{r['top2_has_winner']:>6} [{lo:.2f}, {hi:.2f}]{r['chance_rate']:>8.2f}"
            f"{(r['p_better_than_chance'] or 1):>8.3f}{r['median_set_size'] or 0:>10}  {versus}"
        )


if __name__ == "__main__":
    sys.exit(main())
