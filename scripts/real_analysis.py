"""Run the analyzer's stages in-process (no Celery, no Redis) on the configured model for some pairs, timing
each stage, and print the recommended bridges with their scores.

    .venv/bin/python scripts/real_analysis.py sw-fi ja-zh ar-he --no-gold-filter
    .venv/bin/python scripts/real_analysis.py sw-fi --gold-filter --worker-url http://127.0.0.1:8001

Needs the prepared data (`bridgex data prepare`, in CoreSettings().data_path). Artifacts go to
CoreSettings().artifacts_path and are reused: the profiles of a language are computed once for all pairs (the
first pair pays for them; the per-stage timings show it). `--json` writes every result to a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from services.analyzer import stages
from services.analyzer.config import AnalyzerSettings
from services.common.analysis import AnalysisRequest, AnalysisSpec, InvalidAnalysisRequest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="+", help="src-tgt, e.g. sw-fi")
    ap.add_argument("--candidates", help="comma-separated candidate bridges (default: settings.candidates)")
    gf = ap.add_mutually_exclusive_group()
    gf.add_argument("--gold-filter", dest="gold_filter", action="store_true", default=None)
    gf.add_argument("--no-gold-filter", dest="gold_filter", action="store_false")
    ap.add_argument("--worker-url", help="generation worker for the gold filter")
    ap.add_argument("--selection", choices=["top_rate", "lape"])
    ap.add_argument("--bridge-set", choices=["specific", "full"])
    ap.add_argument("--probe-max", type=int)
    ap.add_argument("--probe-min", type=int)
    ap.add_argument("--force", action="store_true", help="rebuild probe sets and activations")
    ap.add_argument("--json", type=Path, help="write all results here")
    args = ap.parse_args(argv)

    overrides = {"worker_url": args.worker_url} if args.worker_url else {}
    settings = AnalyzerSettings(**overrides)
    print(
        f"model={settings.model} device={settings.device} data={settings.data_path} "
        f"artifacts={settings.artifacts_path}",
        flush=True,
    )
    results: dict[str, dict] = {}
    failures = 0
    for pair in args.pairs:
        src, _, tgt = pair.partition("-")
        try:
            req = AnalysisRequest(
                source=src,
                target=tgt,
                candidates=args.candidates.split(",") if args.candidates else None,
                gold_filter=args.gold_filter,
                selection=args.selection,
                bridge_set=args.bridge_set,
                probe_max=args.probe_max,
                probe_min=args.probe_min,
            ).normalized(settings)
        except (InvalidAnalysisRequest, ValueError) as e:
            print(f"[{pair}] invalid: {e}", file=sys.stderr)
            failures += 1
            continue
        last = [0.0]

        def show(stage: str, cur: int, tot: int, pct: float, pair: str = pair, last: list[float] = last) -> None:
            now = time.monotonic()
            if now - last[0] > 5:
                last[0] = now
                print(f"  [{pair}] {stage} {cur}/{tot} ({pct:.0f}%)", flush=True)

        ctx = stages.JobContext(settings=settings, force=args.force, on_progress=show)
        t0 = time.perf_counter()
        try:
            res = stages.run_analysis(AnalysisSpec.from_request(req), ctx, publish=False)
        except stages.AnalysisFailed as e:
            print(f"[{pair}] FAILED: {e}", file=sys.stderr)
            results[pair] = {"error": str(e), "timings_s": ctx.timings}
            failures += 1
            continue
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        results[pair] = res
        print(
            f"\n[{pair}] best bridge: {res['best']}  (probe set: {res['probe_size']} words, "
            f"hash {res['probe_hash']}, layers {res['layers']})"
        )
        for c in res["ranking"]:
            score = "n/a" if c["score"] is None else f"{c['score']:.6g}"
            print(f"   {c['rank']}. {c['code']:<4} {score}")
        print("   stage timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in res["timings_s"].items()))
        print(f"   ranking artifact: {res['artifacts']['ranking']}\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
        print(f"results written to {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
