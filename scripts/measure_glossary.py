"""How often a translation holds the glossary's target term, with and without the glossary (issue 23 item 3).

    .venv/bin/python scripts/measure_glossary.py --pairs en-fr,en-de,en-es --n 100 --out glossary.json
        # --api http://127.0.0.1:8000 (the default); key: --key or BRIDGEX_API_KEY (none in open mode)
    .venv/bin/python scripts/measure_glossary.py --dry-run --out plan.json   # the items only, no gateway

Items come from the data directory (`bridgex data ensure --pairs en-fr` gathers a pair): UDHR sentences of the source
language that hold a word of the pair's dictionary whose translation the target language's UDHR article of the same
number uses (so the glossary holds the sense the text needs, as a translator's would). Per sentence the focus term is
the least frequent such word (function words, words of under 3 letters and words spelled alike in both languages are
left out); the glossary maps each focus term to that attested translation, one per word. One glossary per pair is made
through POST /glossaries (deleted at the end). Every sentence is translated twice through POST /translate/batch (task
text, the same bridge and k_shot): without and with `glossary_id`. The unit is (sentence, glossary term the sentence
holds), found by `bridgex.glossary.TermMatcher`, the gateway's own matching; a term is present when
`bridgex.glossary.contains` finds its target term in the translation (whole words, case-insensitive). The UDHR gives
about 60 such sentences per pair.
Printed and written to --out as JSON: per pair and pooled, the present rates with Wilson 95% intervals
(`bridgex.intervals`), the paired counts (present only with / only without the glossary) with an exact two-sided sign
test, and how often the gateway reported exactly the terms counted here as applied.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from bridgex.data.layout import DataLayout
from bridgex.frequency import STOPWORD_RANK, word_frequency
from bridgex.glossary import TermMatcher, contains, normalize_term
from bridgex.intervals import wilson_interval
from scipy.stats import binomtest

SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
MIN_WORDS, MAX_WORDS = 4, 40


def sentences(layout: DataLayout, lang: str) -> list[tuple[int, str]]:
    """(article number, sentence) of the UDHR in `lang` (paragraphs split at sentence ends), MIN_WORDS..MAX_WORDS
    words, each sentence once."""
    out: dict[str, int] = {}
    for number, paras in layout.udhr_articles(lang).items():
        for para in paras:
            for sent in SENTENCE_END.split(para):
                sent = " ".join(sent.split())
                if MIN_WORDS <= len(sent.split()) <= MAX_WORDS:
                    out.setdefault(sent, number)
    return [(number, sent) for sent, number in out.items()]


def function_words(lang: str) -> set[str]:
    """The language's most frequent words (wordfreq's top STOPWORD_RANK, mostly function words: "and", "his",
    "shall"): left out as terms (empty when wordfreq lacks the language)."""
    try:
        from wordfreq import top_n_list

        return {normalize_term(w) for w in top_n_list(lang, STOPWORD_RANK)}
    except (LookupError, ValueError):
        return set()


def dictionary_words(layout: DataLayout, s: str, t: str) -> dict[str, list[str]]:
    """normalised source word -> its translations: one-word entries of the pair's whole dictionary; function words
    on either side and translations spelled like the word (present without any glossary) left out."""
    out: dict[str, list[str]] = {}
    common, common_t = function_words(s), function_words(t)
    for word, targets in layout.dictionary(s, t, "all").translations().items():
        if not word.isalpha() or len(word) < 3 or normalize_term(word) in common:
            continue
        key = normalize_term(word)
        glosses = [g.strip() for g in targets if g.strip() and normalize_term(g) not in (key, *common_t)]
        if glosses:
            out.setdefault(key, glosses)
    return out


def _rarity(word: str, lang: str) -> tuple[int, float, int]:
    """Sort key: known words by ascending frequency first (content words), then unknown ones, longest first."""
    f = word_frequency(word, lang)
    return (0, f, -len(word)) if f else (1, 0.0, -len(word))


def build_items(layout: DataLayout, s: str, t: str, n: int, seed: int) -> dict[str, Any]:
    """The pair's sentences (at most n) with their focus terms, and the glossary entries. A word's glossary
    translation is one of its dictionary translations that the target language's UDHR article of the same number
    uses (the most common one by word frequency): the sense the text needs, as a translator's glossary would
    hold it. One translation per word across sentences."""
    words = dictionary_words(layout, s, t)
    reference = {num: " ".join(paras) for num, paras in layout.udhr_articles(t).items()}
    pool = sentences(layout, s)
    random.Random(f"{seed}:{s}-{t}").shuffle(pool)
    chosen: list[dict[str, Any]] = []
    entries: dict[str, str] = {}
    for number, sent in pool:
        ref = reference.get(number, "")
        options: dict[str, str] = {}
        for w in dict.fromkeys(re.findall(r"\w+", normalize_term(sent))):
            attested = [g for g in words.get(w, ()) if contains(ref, g, t)]
            if w in entries:
                if entries[w] in attested:
                    options[w] = entries[w]
            elif attested:
                options[w] = max(attested, key=lambda g: word_frequency(g, t) or 0.0)
        if not options:
            continue
        focus = min(options, key=lambda w: _rarity(w, s))
        entries.setdefault(focus, options[focus])
        chosen.append({"text": sent, "article": number, "focus": focus})
        if len(chosen) == n:
            break
    matcher = TermMatcher(entries, s)
    for item in chosen:  # every glossary term the sentence holds, as the gateway finds them
        item["terms"] = [{"source": x.source, "target": x.target} for x in matcher.find(item["text"])]
    return {"pair": f"{s}-{t}", "source": s, "target": t, "entries": entries, "items": chosen}


def rate(k: int, n: int) -> dict[str, Any]:
    low, high = wilson_interval(k, n)
    return {"present": k, "n": n, "rate": round(k / n, 4) if n else None, "ci95": [round(low, 4), round(high, 4)]}


def summarize(units: list[dict[str, Any]], agree: list[bool]) -> dict[str, Any]:
    n = len(units)
    without = sum(u["without"] for u in units)
    with_ = sum(u["with"] for u in units)
    only_with = sum(1 for u in units if u["with"] and not u["without"])
    only_without = sum(1 for u in units if u["without"] and not u["with"])
    p = 1.0 if only_with + only_without == 0 else float(binomtest(only_with, only_with + only_without).pvalue)
    return {
        "units": n,
        "without_glossary": rate(without, n),
        "with_glossary": rate(with_, n),
        "paired": {"only_with": only_with, "only_without": only_without, "sign_test_p": round(p, 4)},
        "applied_as_counted": rate(sum(agree), len(agree)),
    }


class Gateway:
    def __init__(self, api: str, key: str | None, timeout: float) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=api, headers=headers, timeout=timeout)

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        for _ in range(30):  # rate limits and a busy worker: wait as told
            r = self.client.request(method, path, **kw)
            if r.status_code not in (429, 503):
                return r
            time.sleep(float(r.headers.get("Retry-After", "2")))
        return r

    def translate(self, bodies: list[dict[str, Any]], batch: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(bodies), batch):
            r = self.call("POST", "/translate/batch", json={"items": bodies[i : i + batch]})
            if r.status_code != 200:
                raise SystemExit(f"POST /translate/batch: {r.status_code} {r.text[:500]}")
            out += r.json()["results"]
            print(f"  {len(out)}/{len(bodies)} translated", file=sys.stderr)
        return out


def measure_pair(gw: Gateway, plan: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    s, t, items = plan["source"], plan["target"], plan["items"]
    r = gw.call(
        "POST",
        "/glossaries",
        json={"name": f"measure_glossary {s}-{t}", "source": s, "target": t, "entries": plan["entries"]},
    )
    if r.status_code != 201:
        raise SystemExit(f"POST /glossaries ({s}-{t}): {r.status_code} {r.text[:500]}")
    gid = r.json()["id"]
    try:
        base: dict[str, Any] = {"source": s, "target": t, "task": "text", "bridge": args.bridge}
        if args.k_shot is not None:
            base["k_shot"] = args.k_shot
        if args.max_tokens is not None:
            base["max_tokens"] = args.max_tokens
        bodies = [{**base, "text": it["text"]} for it in items]
        bodies += [{**base, "text": it["text"], "glossary_id": gid} for it in items]
        results = gw.translate(bodies, args.batch)
    finally:
        gw.call("DELETE", f"/glossaries/{gid}")
    units: list[dict[str, Any]] = []
    agree: list[bool] = []
    failed = 0
    rows = []
    for it, plain, glossed in zip(items, results[: len(items)], results[len(items) :], strict=True):
        if not (plain["ok"] and glossed["ok"]):
            failed += 1
            rows.append({"text": it["text"], "error": (plain.get("error") or glossed.get("error"))})
            continue
        a, b = plain["result"], glossed["result"]
        applied = (b.get("glossary") or {}).get("applied", [])
        agree.append(sorted(applied) == sorted(x["source"] for x in it["terms"]))
        for term in it["terms"]:
            units.append(
                {
                    "without": contains(a["translation"], term["target"], t),
                    "with": contains(b["translation"], term["target"], t),
                }
            )
        rows.append(
            {
                "text": it["text"],
                "terms": it["terms"],
                "without": a["translation"],
                "with": b["translation"],
                "applied": applied,
                "missing": (b.get("glossary") or {}).get("missing", []),
            }
        )
    model = next((r["result"]["model"] for r in results if r.get("ok")), None)
    return {
        "pair": plan["pair"],
        "glossary_entries": len(plan["entries"]),
        "sentences": len(items),
        "failed": failed,
        "model": model,
        **summarize(units, agree),
        "_units": units,
        "_agree": agree,
        "rows": rows,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    head, _, rest = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(description=head, epilog=rest, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--api", default="http://127.0.0.1:8000", help="the running gateway")
    p.add_argument("--key", default=os.environ.get("BRIDGEX_API_KEY"), help="API key (env BRIDGEX_API_KEY)")
    p.add_argument("--pairs", default="en-fr,en-de,en-es", help="comma-separated source-target pairs")
    p.add_argument("--n", type=int, default=100, help="sentences per pair (each translated twice)")
    p.add_argument("--data-dir", type=Path, default=None, help="data directory (default: BRIDGEX_DATA_DIR)")
    p.add_argument("--bridge", default="none", help='bridge of every request ("none", "auto" or a code)')
    p.add_argument("--k-shot", type=int, default=None, help="k_shot of every request (default: the server's)")
    p.add_argument("--max-tokens", type=int, default=None, help="max_tokens of every request (default: 128)")
    p.add_argument("--batch", type=int, default=16, help="items per /translate/batch request")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per HTTP request")
    p.add_argument("--seed", type=int, default=0, help="sentence order")
    p.add_argument("--dry-run", action="store_true", help="only build the items and glossaries; no gateway")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    layout = DataLayout(args.data_dir)
    plans = []
    for pair in [p.strip() for p in args.pairs.split(",") if p.strip()]:
        s, _, t = pair.partition("-")
        try:
            plan = build_items(layout, s, t, args.n, args.seed)
        except FileNotFoundError as exc:  # bridgex.data.layout.DataNotPrepared says how to gather it
            raise SystemExit(f"{pair}: {exc}") from exc
        if not plan["items"]:
            raise SystemExit(f"{pair}: no UDHR sentence holds a dictionary word (is the pair's data gathered?)")
        plans.append(plan)
    report: dict[str, Any] = {
        "api": args.api,
        "bridge": args.bridge,
        "k_shot": args.k_shot,
        "max_tokens": args.max_tokens,
        "seed": args.seed,
        "data_dir": str(layout.root),
    }
    if args.dry_run:
        report.update(dry_run=True, pairs=plans)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
        print(f"dry run: {sum(len(p['items']) for p in plans)} sentences in {len(plans)} pairs -> {args.out}")
        return report
    gw = Gateway(args.api, args.key, args.timeout)
    results = [measure_pair(gw, plan, args) for plan in plans]
    pooled = summarize([u for r in results for u in r.pop("_units")], [a for r in results for a in r.pop("_agree")])
    report.update(pairs=results, pooled=pooled)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"{'pair':8} {'units':>5}  {'without glossary':>24}  {'with glossary':>24}  sign test p")
    for name, r in [*((r["pair"], r) for r in results), ("pooled", pooled)]:
        w, g = r["without_glossary"], r["with_glossary"]
        cell = lambda x: f"{x['rate'] or 0:.3f} [{x['ci95'][0]:.3f}, {x['ci95'][1]:.3f}]"  # noqa: E731
        print(f"{name:8} {r['units']:>5}  {cell(w):>24}  {cell(g):>24}  {r['paired']['sign_test_p']}")
    print(f"-> {args.out}")
    return report


if __name__ == "__main__":
    main()
