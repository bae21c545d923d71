"""Measure language detection (bridgex.detect, what /detect and `source: "auto"` use) on the project's data
(issue 23; docs/results.md run 7).

    .venv/bin/python scripts/measure_detection.py [--data-dir DIR] [--words 300] [--out docs/run7/detection.json]

Per language, restricted to the 15 paper languages as the gateway is:
- dictionary words: the `--words` most frequent source words (bridgex.frequency) of the language's dictionary
  with English (en: with German), written in the language's script (a zh entry "Tony" is not Chinese text);
- UDHR words: distinct words of the language's UDHR text (space-separated languages only), as many;
- UDHR sentences: the UDHR paragraphs split at sentence ends, at least 3 words (zh/ja: 10 characters).
Accuracy = the top language is the true one, with Wilson 95% intervals (bridgex.intervals); the main
confusions (pt/es, id/tl, zh/ja on kanji-only words); the accuracy/coverage trade-off of a threshold on the
top confidence (coverage: share answered, the rest get 422 language_undetermined; precision: right among those
answered; wrong: answered wrongly, as a share of all); detector build time, memory and per-call latency.
Needs a data directory with all 15 languages (`bridgex data prepare --pairs en-xx,xx-en,...`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from bridgex.data.layout import DataLayout
from bridgex.detect import HAN_AMBIGUOUS_CHARS, detect, detector, is_han_only
from bridgex.frequency import frequency_order
from bridgex.intervals import wilson_interval
from bridgex.languages import PAPER_LANGUAGES
from bridgex.settings import get_settings

LANGS = tuple(PAPER_LANGUAGES)
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.5001, 0.6, 0.7, 0.8, 0.9)
PAIRS = (("pt", "es"), ("es", "pt"), ("id", "tl"), ("tl", "id"), ("ja", "zh"), ("zh", "ja"))
SCRIPT_PREFIX = {
    "Latn": ("LATIN",),
    "Hans": ("CJK",),
    "Jpan": ("CJK", "HIRAGANA", "KATAKANA"),
    "Arab": ("ARABIC",),
    "Hebr": ("HEBREW",),
}
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


def in_script(word: str, lang: str) -> bool:
    """Every letter of `word` in the language's script (Japanese: kanji or kana)."""
    prefixes = SCRIPT_PREFIX[PAPER_LANGUAGES[lang].script]
    letters = [ch for ch in word if unicodedata.category(ch).startswith("L")]
    return bool(letters) and all(unicodedata.name(ch, "").startswith(prefixes) for ch in letters)


def dictionary_words(layout: DataLayout, lang: str, n: int) -> list[str]:
    other = "de" if lang == "en" else "en"
    translations = layout.dictionary(lang, other, "all").translations()
    kept = {w: g for w, g in translations.items() if in_script(w, lang)}
    return frequency_order(kept, lang, other, salt="detect")[:n]


def udhr_paragraphs(layout: DataLayout, lang: str) -> list[str]:
    return [p for paras in layout.udhr_articles(lang).values() for p in paras]


def udhr_sentences(layout: DataLayout, lang: str) -> list[str]:
    out = []
    for para in udhr_paragraphs(layout, lang):
        for s in SENTENCE_END.split(para):
            s = s.strip()
            long_enough = len(s) >= 10 if lang in ("zh", "ja") else len(s.split()) >= 3
            if long_enough and s not in out:
                out.append(s)
    return out


def udhr_words(layout: DataLayout, lang: str, n: int) -> list[str]:
    if lang in ("zh", "ja"):  # no spaces between words
        return []
    seen: dict[str, None] = {}
    for para in udhr_paragraphs(layout, lang):
        for tok in para.split():
            w = tok.strip(".,;:!?()[]«»\"'“”‘’—–-")
            if len(w) >= 2 and in_script(w, lang) and w.casefold() not in seen:
                seen[w.casefold()] = None
    return list(seen)[:n]


def run_set(items: dict[str, list[str]]) -> list[dict[str, Any]]:
    records = []
    for lang, texts in items.items():
        for text in texts:
            ranked = detect(text, LANGS)
            top, conf = ranked[0] if ranked else (None, 0.0)
            second, conf2 = ranked[1] if len(ranked) > 1 else (None, 0.0)
            records.append({"lang": lang, "text": text, "top": top, "conf": conf, "second": second, "conf2": conf2})
    return records


def rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "acc": round(k / n, 4) if n else None, "ci95": [round(lo, 4), round(hi, 4)]}


def summarise(records: list[dict[str, Any]], tau: float) -> dict[str, Any]:
    per_lang, at_tau = {}, {}
    for lang in LANGS:
        rs = [r for r in records if r["lang"] == lang]
        if rs:
            per_lang[lang] = rate(sum(r["top"] == lang for r in rs), len(rs))
            answered = [r for r in rs if r["top"] is not None and r["conf"] >= tau]
            at_tau[lang] = {
                "coverage": round(len(answered) / len(rs), 4),
                "precision": rate(sum(r["top"] == lang for r in answered), len(answered)),
            }
    confusions = Counter((r["lang"], r["top"]) for r in records if r["top"] != r["lang"])
    pairs = {}
    for a, b in PAIRS:
        rs = [r for r in records if r["lang"] == a]
        pairs[f"{a}->{b}"] = {"n": len(rs), "as_other": sum(r["top"] == b for r in rs)}
    tradeoff = []
    for tau in THRESHOLDS:
        answered = [r for r in records if r["top"] is not None and r["conf"] >= tau]
        right = sum(r["top"] == r["lang"] for r in answered)
        # macro: every language weighs the same whatever its count
        macro_cov = statistics.mean(
            sum(1 for r in records if r["lang"] == lang and r["top"] is not None and r["conf"] >= tau)
            / max(1, sum(1 for r in records if r["lang"] == lang))
            for lang in per_lang
        )
        tradeoff.append(
            {
                "threshold": tau,
                "coverage": round(len(answered) / len(records), 4),
                "coverage_macro": round(macro_cov, 4),
                "precision": rate(right, len(answered)),
                "wrong_share": round((len(answered) - right) / len(records), 4),
                "right_share": round(right / len(records), 4),
            }
        )
    wrong = [r for r in records if r["top"] != r["lang"]]
    return {
        "n": len(records),
        "overall": rate(sum(r["top"] == r["lang"] for r in records), len(records)),
        "per_language": per_lang,
        "at_threshold": {"threshold": tau, "per_language": at_tau},
        "confusions": [{"true": a, "detected": b, "count": c} for (a, b), c in confusions.most_common(12)],
        "pairs": pairs,
        "tradeoff": tradeoff,
        "confident_wrong": sorted(
            ({k: r[k] for k in ("lang", "text", "top", "conf")} for r in wrong if r["conf"] >= 0.8),
            key=lambda r: -r["conf"],
        )[:15],
    }


def shared_words(layout: DataLayout, a: str, b: str, n: int, tau: float) -> dict[str, Any]:
    """Words both languages' dictionaries hold, spelled alike: what detection says about them."""

    def source_words(lang: str) -> dict[str, list[str]]:
        other = "de" if lang == "en" else "en"
        return {w: g for w, g in layout.dictionary(lang, other, "all").translations().items() if in_script(w, lang)}

    wa, wb = source_words(a), source_words(b)
    both = {w: wa[w] for w in wa if w in wb}
    texts = frequency_order(both, a, "en", salt="detect")[:n]
    ranked = [detect(t, LANGS) for t in texts]
    answered = [r[0] for r in ranked if r and r[0][1] >= tau]
    return {
        "pair": f"{a}/{b}",
        "n": len(texts),
        "threshold": tau,
        "answered": len(answered),
        "answered_as": dict(Counter(code for code, _ in answered).most_common()),
        "top_at_any_confidence": dict(Counter(r[0][0] for r in ranked if r).most_common()),
        "examples": [
            {"text": t, "top": [[c, round(v, 3)] for c, v in r[:3]]}
            for t, r in list(zip(texts, ranked, strict=True))[:8]
        ],
    }


def han_study(words: dict[str, list[str]], sentences: dict[str, list[str]]) -> dict[str, Any]:
    """Han-only texts: how long ja and zh ones are (what HAN_AMBIGUOUS_CHARS splits between zh and ja)."""

    def lengths(texts: list[str]) -> Counter[int]:
        return Counter(sum(1 for ch in t if unicodedata.category(ch).startswith("L")) for t in texts if is_han_only(t))

    ja, zh = lengths(words["ja"]), lengths(words["zh"])
    return {
        "han_ambiguous_chars": HAN_AMBIGUOUS_CHARS,
        "ja_words": len(words["ja"]),
        "ja_words_han_only": sum(ja.values()),
        "ja_words_han_only_by_length": dict(sorted(ja.items())),
        "zh_words_han_only_by_length": dict(sorted(zh.items())),
        "ja_sentences_han_only": sum(is_han_only(s) for s in sentences["ja"]),
        "zh_sentences_han_only": sum(is_han_only(s) for s in sentences["zh"]),
    }


def timings(sentences: dict[str, list[str]], words: dict[str, list[str]]) -> dict[str, Any]:
    import psutil

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    detector(LANGS)
    build = time.perf_counter() - t0
    rss = proc.memory_info().rss - rss0
    long_text = " ".join(sentences["en"])[:2000]

    def per_call(texts: list[str], repeat: int = 1) -> float:
        t = time.perf_counter()
        for _ in range(repeat):
            for x in texts:
                detect(x, LANGS)
        return (time.perf_counter() - t) / (repeat * len(texts)) * 1e3

    all_words = [w for ws in words.values() for w in ws[:50]]
    all_sentences = [s for ss in sentences.values() for s in ss[:20]]
    return {
        "build_s": round(build, 2),
        "rss_mb": round(rss / 2**20),
        "word_ms": round(per_call(all_words, 3), 3),
        "sentence_ms": round(per_call(all_sentences, 3), 3),
        "text_2000_chars_ms": round(per_call([long_text], 50), 3),
    }


def fmt(r: dict[str, Any] | None) -> str:
    if not r or not r["n"]:
        return "–"
    return f"{r['acc']:.3f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] n={r['n']}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=None, help="data directory (default: settings data_path)")
    ap.add_argument("--words", type=int, default=300, help="words per language and word set")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here")
    ap.add_argument("--threshold", type=float, default=0.6, help="the threshold whose per-language coverage is shown")
    args = ap.parse_args(argv)
    layout = DataLayout(args.data_dir or get_settings().data_path)
    missing = [c for c in LANGS if not layout.udhr_json_path(c).is_file()]
    if missing:
        print(f"{layout.root} lacks the UDHR text of {missing}; prepare it first (see the docstring)", file=sys.stderr)
        return 2

    sentences = {c: udhr_sentences(layout, c) for c in LANGS}
    words = {c: dictionary_words(layout, c, args.words) for c in LANGS}
    tokens = {c: udhr_words(layout, c, args.words) for c in LANGS}
    result: dict[str, Any] = {"timings": timings(sentences, words)}
    sets = {"dictionary_words": words, "udhr_words": tokens, "udhr_sentences": sentences}
    for name, items in sets.items():
        result[name] = summarise(run_set(items), args.threshold)
    result["han"] = han_study(words, sentences)
    result["shared_words"] = [
        shared_words(layout, a, b, args.words, args.threshold) for a, b in (("es", "pt"), ("id", "tl"), ("zh", "ja"))
    ]
    result["setup"] = {
        "data_dir": str(layout.root),
        "words_per_language": args.words,
        "languages": list(LANGS),
        "lingua": _version("lingua-language-detector"),
        "thresholds": list(THRESHOLDS),
        "threshold_shown": args.threshold,
    }

    print(f"timings: {result['timings']}")
    print(f"\n{'lang':5} {'dictionary words':32} {'UDHR words':32} {'UDHR sentences':32}")
    for c in LANGS:
        row = [fmt(result[name]["per_language"].get(c)) for name in sets]
        print(f"{c:5} {row[0]:32} {row[1]:32} {row[2]:32}")
    print(f"{'all':5} " + " ".join(f"{fmt(result[name]['overall']):32}" for name in sets))
    print(f"\nat threshold {args.threshold}: coverage (share answered) / precision among answered")
    for c in LANGS:
        cells = []
        for name in sets:
            x = result[name]["at_threshold"]["per_language"].get(c)
            cells.append(f"{x['coverage']:.2f} / {fmt(x['precision'])}" if x else "–")
        print(f"{c:5} {cells[0]:40} {cells[1]:40} {cells[2]:40}")
    for name in sets:
        s = result[name]
        print(f"\n{name}: confusions (true -> detected: count)")
        print("  " + ", ".join(f"{x['true']}->{x['detected']}: {x['count']}" for x in s["confusions"]))
        print("  pairs: " + ", ".join(f"{k}: {v['as_other']}/{v['n']}" for k, v in s["pairs"].items()))
        print(f"  {'threshold':>9} {'coverage':>8} {'precision [95% CI]':>28} {'wrong':>6}")
        for t in s["tradeoff"]:
            p = t["precision"]
            print(
                f"  {t['threshold']:9.4g} {t['coverage']:8.3f} {p['acc'] or 0:12.3f} "
                f"[{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}] {t['wrong_share']:6.3f}"
            )
    print(f"\nHan-only: {result['han']}")
    for sw in result["shared_words"]:
        print(
            f"shared {sw['pair']} words: n={sw['n']}, answered at {sw['threshold']}: {sw['answered']} "
            f"{sw['answered_as']}; top at any confidence {sw['top_at_any_confidence']}; e.g. {sw['examples'][:4]}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
