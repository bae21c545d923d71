"""Measure what the service serves, through the running gateway (issue 9's real run; `make run` first).

    .venv/bin/python scripts/measure_served.py kshot en-ja en-zh ... --words 100 --out kshot.json
    .venv/bin/python scripts/measure_served.py analyze en-ja ... --out analysis.json
    .venv/bin/python scripts/measure_served.py evaluate en-ja ... --analysis analysis.json --out eval.json
    .venv/bin/python scripts/measure_served.py demos en-ja ... --analysis analysis.json --out demos.json
    .venv/bin/python scripts/measure_served.py confidence en-ja ... --words 100 --out confidence.json

`kshot`: P@1 of direct translation (bridge none) at k_shot 0 and 3 on the evaluation split's most common words.
`analyze`: POST /analyze with the defaults per pair, waits, records probes tried/kept, the HSIC top, the dev
accuracies, the served choice and the stage timings. `evaluate`: P@1 on the evaluation split for none, always
en, the HSIC top and `auto` as served, per pair and pooled, with Wilson intervals and an exact two-sided sign
test per word against none. Every request goes through POST /translate, so this measures the served prompts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from bridgex.data.layout import DataLayout
from bridgex.evaluation.metrics import wilson_interval
from bridgex.frequency import frequency_order
from bridgex.probes import matches_gold
from bridgex.prompts import normalize_word
from bridgex.settings import get_settings
from scipy.stats import binomtest, bootstrap, mannwhitneyu


def eval_words(s: str, t: str, n: int) -> list[tuple[str, list[str]]]:
    tr = DataLayout(get_settings().data_path).dictionary(s, t, "eval").translations()
    tr = {w: g for w, g in tr.items() if g and normalize_word(w) not in {normalize_word(x) for x in g}}
    return [(w, tr[w]) for w in frequency_order(tr, s, t, salt="eval")[:n]]


def sign_test(b: int, c: int) -> float:
    """Exact two-sided sign test p for b wins against c losses (scipy.stats.binomtest)."""
    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def paired(x: list[bool], y: list[bool]) -> dict[str, Any]:
    """x against y on the same words: words only x gets, only y gets, two-sided and one-sided (x worse) p."""
    b = sum(1 for p, q in zip(x, y, strict=True) if p and not q)
    c = sum(1 for p, q in zip(x, y, strict=True) if q and not p)
    worse = 1.0 if b + c == 0 else float(binomtest(c, b + c, 0.5, alternative="greater").pvalue)
    return {"only_this": b, "only_other": c, "p": round(sign_test(b, c), 4), "p_worse": round(worse, 4)}


async def translate_all(api: str, items: list[dict[str, Any]], concurrency: int = 12) -> list[dict[str, Any]]:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=api, timeout=600) as c:

        async def one(body: dict[str, Any]) -> dict[str, Any]:
            async with sem:
                for attempt in range(100):
                    r = await c.post("/translate", json=body)
                    if r.status_code == 503 and attempt < 99:  # data being gathered, or a busy worker
                        await asyncio.sleep(10)
                        continue
                    if r.status_code == 429 and attempt < 99:  # the gateway's per-client rate limit
                        await asyncio.sleep(float(r.headers.get("retry-after") or 5))
                        continue
                    r.raise_for_status()
                    return r.json()
            raise RuntimeError("unreachable")

        return list(await asyncio.gather(*(one(b) for b in items)))


def score(hits: list[bool]) -> dict[str, Any]:
    k, n = sum(hits), len(hits)
    lo, hi = wilson_interval(k, n)
    return {"hits": k, "n": n, "p_at_1": round(k / n, 4) if n else None, "ci": [round(lo, 4), round(hi, 4)]}


def cmd_kshot(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"pairs": {}, "pooled": {}}
    pooled: dict[int, list[bool]] = {0: [], 3: []}
    for pair in args.pairs:
        s, t = pair.split("-")
        words = eval_words(s, t, args.words)
        row: dict[str, Any] = {}
        for k in (0, 3):
            res = asyncio.run(
                translate_all(
                    args.api, [{"text": w, "source": s, "target": t, "bridge": "none", "k_shot": k} for w, _ in words]
                )
            )
            hits = [matches_gold(r["translation"], g) for r, (_, g) in zip(res, words, strict=True)]
            row[f"k{k}"] = score(hits)
            row[f"k{k}_hits"] = hits
            pooled[k] += hits
        wins = sum(1 for a, b in zip(row["k3_hits"], row["k0_hits"], strict=True) if a and not b)
        losses = sum(1 for a, b in zip(row["k3_hits"], row["k0_hits"], strict=True) if b and not a)
        row["sign_test"] = {"k3_only": wins, "k0_only": losses, "p": round(sign_test(wins, losses), 4)}
        out["pairs"][pair] = {k: v for k, v in row.items() if not k.endswith("_hits")}
        print(pair, out["pairs"][pair], flush=True)
    w = sum(1 for a, b in zip(pooled[3], pooled[0], strict=True) if a and not b)
    losses = sum(1 for a, b in zip(pooled[3], pooled[0], strict=True) if b and not a)
    out["pooled"] = {
        "k0": score(pooled[0]),
        "k3": score(pooled[3]),
        "sign_test": {"k3_only": w, "k0_only": losses, "p": round(sign_test(w, losses), 4)},
    }
    return out


async def _gold_filter(worker: str, pairs: list, source: str, target: str, words: int, demos: list) -> Any:
    """The analyzer's gold filter over the first `words` words, against the worker at `worker`."""
    from bridgex.generation.client import GenerationClient
    from bridgex.generation.gold_filter import abuild_probe_set

    async with GenerationClient(worker, timeout=120, concurrency=8) as client:
        return await abuild_probe_set(
            pairs,
            source,
            target,
            client=client,
            probe_max=words,
            probe_min=words // 4,  # the hopeless rule then looks only after all words (comparable arms)
            max_examined=words,
            demos=demos,
            concurrency=8,
        )


def cmd_goldfilter(args: argparse.Namespace) -> dict[str, Any]:
    """DECISION gold_filter_k: words kept by the gold filter with 0 and 3 demonstrations (same words)."""
    from bridgex.demos import word_demos

    settings = get_settings()
    out: dict[str, Any] = {}
    for pair in args.pairs:
        s, t = pair.split("-")
        d = DataLayout(settings.data_path).dictionary(s, t, "probe")
        demos = word_demos(str(settings.data_path), s, t, None, 3, "")[1]
        # the same words for both: the k=3 demonstration words are left out of both
        pairs = [p for p in d.pairs if p.source not in {x.source_text for x in demos}]
        row = {}
        for k in (0, 3):
            t0 = time.monotonic()
            ps = asyncio.run(_gold_filter(args.worker, pairs, s, t, args.words, demos if k else []))
            row[f"k{k}"] = {"tried": ps.tried, "kept": ps.kept, "seconds": round(time.monotonic() - t0, 1)}
        out[pair] = row
        print(pair, row, flush=True)
    return out


async def _direct_p_at_1(worker: str, s: str, t: str, words: list, demo_order: list[str], choice: str) -> list[bool]:
    """Direct translation (no bridge, k=3) of `words` through the worker with demonstrations in `demo_order`."""
    from bridgex.demos import word_demos
    from bridgex.generation.client import GenerationClient
    from bridgex.prompts import parse_word, word_prompt

    root = str(get_settings().data_path)
    async with GenerationClient(worker, timeout=120, concurrency=16) as client:

        async def one(w: str, golds: list[str]) -> bool:
            _, demos = word_demos(root, s, t, None, 3, w, words=demo_order, choice=choice)
            out = await client.complete(word_prompt(w, s, t, demos=demos), max_tokens=16)
            return matches_gold(parse_word(out.text), golds)

        return list(await asyncio.gather(*(one(w, g) for w, g in words)))


def cmd_demos(args: argparse.Namespace) -> dict[str, Any]:
    """DECISION demo_choice: P@1 of direct translation on the evaluation words with the demonstrations each
    choice picks (the same words, paired); "kept" reads the pair's gold-filtered probe set from --analysis."""
    from bridgex.demos import ordered_words
    from bridgex.probes import ProbeSet

    analysis = json.loads(Path(args.analysis).read_text()) if Path(args.analysis).exists() else {}
    root = str(get_settings().data_path)
    out: dict[str, Any] = {"pairs": {}, "pooled": {}}
    pooled: dict[str, list[bool]] = {}
    for pair in args.pairs:
        s, t = pair.split("-")
        words = eval_words(s, t, args.words)
        probes = ((analysis.get(pair) or {}).get("artifacts") or {}).get("probes")
        kept: list[str] = []
        if probes and Path(probes).exists():
            ps = ProbeSet.load(Path(probes))
            kept = ps.words if ps.filter == "gold" else []
        row: dict[str, Any] = {"n": len(words), "kept_words": len(kept)}
        hits: dict[str, list[bool]] = {}
        for choice in ("frequent", "direct", "kept"):
            if choice == "kept" and not kept:
                continue
            order = ordered_words(root, s, t, choice, kept)
            hits[choice] = asyncio.run(_direct_p_at_1(args.worker, s, t, words, order, choice))
            row[choice] = score(hits[choice]) | {"demos": order[:3]}
            if choice != "frequent":
                row[choice]["vs_frequent"] = paired(hits[choice], hits["frequent"])
            pooled.setdefault(choice, [])
        for choice in ("frequent", "direct", "kept"):  # pooled over the pairs where every choice ran
            if "kept" in hits:
                pooled[choice].extend(hits[choice])
        for choice in ("frequent", "direct"):
            pooled.setdefault(f"{choice}_all", []).extend(hits[choice])
        out["pairs"][pair] = row
        print(pair, json.dumps(row, ensure_ascii=False), flush=True)
    for name, h in pooled.items():
        out["pooled"][name] = score(h)
    if pooled.get("direct_all"):
        out["pooled"]["direct_vs_frequent"] = paired(pooled["direct_all"], pooled["frequent_all"])
    if pooled.get("kept"):
        out["pooled"]["kept_vs_frequent"] = paired(pooled["kept"], pooled["frequent"])
    return out


def cmd_analyze(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=args.api, timeout=60) as c:
        for pair in args.pairs:
            s, t = pair.split("-")
            t0 = time.monotonic()
            job = c.post("/analyze", json={"source": s, "target": t}).json()
            while True:
                rec = c.get(f"/jobs/{job['id']}").json()
                if rec["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(2)
            res = rec.get("result") or {}
            out[pair] = {
                "state": rec["state"],
                "error": rec.get("error"),
                "wall_s": round(time.monotonic() - t0, 1),
                "probe_filter": res.get("probe_filter"),
                "probe_counts": res.get("probe_counts"),
                "hsic": res.get("ranking"),
                "hsic_top": res.get("best"),
                "dev": res.get("dev"),
                "served": res.get("served"),
                "timings_s": res.get("timings_s"),
                "cache_key": res.get("cache_key"),
                "artifacts": res.get("artifacts"),
            }
            print(pair, json.dumps(out[pair], ensure_ascii=False), flush=True)
    return out


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    analysis = json.loads(Path(args.analysis).read_text())
    out: dict[str, Any] = {"pairs": {}, "pooled": {}}
    pooled: dict[str, list[bool]] = {}
    for pair in args.pairs:
        s, t = pair.split("-")
        words = eval_words(s, t, args.words)
        top = analysis.get(pair, {}).get("hsic_top")
        conds = {"none": "none", "auto": "auto"}
        if "en" not in (s, t):
            conds["en"] = "en"
        if top:
            conds["hsic"] = top
        row: dict[str, Any] = {"n": len(words), "hsic_top": top}
        hits: dict[str, list[bool]] = {}
        for name, bridge in conds.items():
            res = asyncio.run(
                translate_all(args.api, [{"text": w, "source": s, "target": t, "bridge": bridge} for w, _ in words])
            )
            hits[name] = [matches_gold(r["translation"], g) for r, (_, g) in zip(res, words, strict=True)]
            row[name] = score(hits[name])
            if name == "auto":
                row["auto_bridge"] = sorted({str(r["bridge"]) for r in res})
                row["auto_source"] = sorted({r["bridge_source"] for r in res})
            pooled.setdefault(name, []).extend(hits[name])
        en = hits.get("en", hits["none"])  # always-English is direct translation where en is a side
        hits["always_en"] = en
        for name in conds:
            if name != "none":
                row[name]["vs_none"] = paired(hits[name], hits["none"])
            if name not in ("en",):
                row[name]["vs_always_en"] = paired(hits[name], en)
        pooled.setdefault("always_en", []).extend(en)
        row["always_en"] = score(en)
        decision = ((analysis.get(pair, {}).get("served") or {}).get("decision")) or {}
        row["decision"] = {
            "incumbent": decision.get("incumbent"),
            "served": decision.get("served"),
            "closed_by": decision.get("closed_by"),
            "words": decision.get("words"),
            "tests": [
                {k: t.get(k) for k in ("condition", "wins", "losses", "p_value", "significant", "dropped")}
                for t in decision.get("tests") or []
            ],
        }
        out["pairs"][pair] = row
        print(pair, json.dumps(row), flush=True)
    for name, h in pooled.items():
        out["pooled"][name] = score(h)
    # every pooled list has one entry per evaluation word of every pair, in the same order
    out["pooled"]["auto_vs_none"] = paired(pooled["auto"], pooled["none"])
    out["pooled"]["auto_vs_always_en"] = paired(pooled["auto"], pooled["always_en"])
    if "hsic" in pooled and len(pooled["hsic"]) == len(pooled["none"]):
        out["pooled"]["hsic_vs_none"] = paired(pooled["hsic"], pooled["none"])
    tops = [(analysis.get(p, {}).get("hsic_top"), (analysis.get(p, {}).get("served") or {})) for p in args.pairs]
    bridged = [(top, sv.get("bridge")) for top, sv in tops if sv.get("bridge")]
    out["hsic_top_is_served"] = {"pairs_with_a_served_bridge": len(bridged), "equal": sum(a == b for a, b in bridged)}
    return out


def auroc(scores: list[float], right: list[bool]) -> float | None:
    """Probability that a right answer has a higher confidence than a wrong one (ties count half): the
    Mann-Whitney U of the right answers over n_right x n_wrong (scipy.stats.mannwhitneyu)."""
    pos = [c for c, r in zip(scores, right, strict=True) if r]
    neg = [c for c, r in zip(scores, right, strict=True) if not r]
    if not pos or not neg:
        return None
    return float(mannwhitneyu(pos, neg).statistic) / (len(pos) * len(neg))


def auroc_ci(scores: list[float], right: list[bool]) -> list[float] | None:
    """95% percentile bootstrap interval of the AUROC over words (scipy.stats.bootstrap, 2,000 resamples)."""
    if sum(right) < 2 or len(right) - sum(right) < 2:
        return None

    def stat(c: Any, r: Any) -> float:
        v = auroc(list(c), [bool(x) for x in r])
        return 0.5 if v is None else v

    res = bootstrap(
        (scores, [int(x) for x in right]),
        stat,
        paired=True,
        vectorized=False,
        n_resamples=2000,
        method="percentile",
        random_state=0,
    )
    return [round(float(res.confidence_interval.low), 4), round(float(res.confidence_interval.high), 4)]


def cmd_confidence(args: argparse.Namespace) -> dict[str, Any]:
    """Does `confidence` separate right answers from wrong ones? Direct translation (bridge none, the default
    k_shot) on the evaluation split, with alternatives=3: AUROC per pair and pooled, P@1 against the share
    of words whose right answer is among the alternatives, and P@1 among the most confident half."""
    out: dict[str, Any] = {"pairs": {}, "pooled": {}}
    conf_all: list[float] = []
    right_all: list[bool] = []
    any_all: list[bool] = []
    for pair in args.pairs:
        s, t = pair.split("-")
        words = eval_words(s, t, args.words)
        items = [{"text": w, "source": s, "target": t, "bridge": "none", "alternatives": 3} for w, _ in words]
        res = asyncio.run(translate_all(args.api, items))
        conf, right, any_right = [], [], []
        for r, (_, gold) in zip(res, words, strict=True):
            conf.append(r["confidence"] if r["confidence"] is not None else 0.0)
            right.append(matches_gold(r["translation"], gold))
            any_right.append(any(matches_gold(a["translation"], gold) for a in r.get("alternatives") or []))
        out["pairs"][pair] = {
            "p_at_1": score(right),
            "right_among_alternatives": score(any_right),
            "auroc": None if auroc(conf, right) is None else round(auroc(conf, right), 4),
            "auroc_ci": auroc_ci(conf, right),
            "mean_confidence_right": round(
                sum(c for c, r in zip(conf, right, strict=True) if r) / max(1, sum(right)), 4
            ),
            "mean_confidence_wrong": round(
                sum(c for c, r in zip(conf, right, strict=True) if not r) / max(1, len(right) - sum(right)), 4
            ),
        }
        print(pair, out["pairs"][pair], flush=True)
        conf_all += conf
        right_all += right
        any_all += any_right
    order = sorted(range(len(conf_all)), key=lambda i: -conf_all[i])
    top = [right_all[i] for i in order[: len(order) // 2]]
    out["pooled"] = {
        "p_at_1": score(right_all),
        "right_among_alternatives": score(any_all),
        "auroc": None if auroc(conf_all, right_all) is None else round(auroc(conf_all, right_all), 4),
        "auroc_ci": auroc_ci(conf_all, right_all),
        "p_at_1_most_confident_half": score(top),
    }
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["kshot", "goldfilter", "analyze", "evaluate", "demos", "confidence"])
    p.add_argument("pairs", nargs="+")
    p.add_argument("--api", default="http://127.0.0.1:8000")
    p.add_argument("--worker", default="http://127.0.0.1:8001")
    p.add_argument("--words", type=int, default=100)
    p.add_argument("--analysis", default="analysis.json")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    commands = {
        "kshot": cmd_kshot,
        "goldfilter": cmd_goldfilter,
        "analyze": cmd_analyze,
        "evaluate": cmd_evaluate,
        "demos": cmd_demos,
        "confidence": cmd_confidence,
    }
    result = commands[args.command](args)
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
