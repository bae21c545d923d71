"""Outputs of a harness run: results.json, results.md (tables with 95% intervals, Spearman), PNG plots.

Plots use matplotlib's Agg backend (no display on servers): accuracy per pair and condition, per-layer HSIC
per candidate (from the rankings), and the language overlap heatmap when profiles or an overlap matrix are
given.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["load_overlap", "markdown_report", "write_outputs"]

MAIN_ORDER = ("none", "en", "typology", "oracle")


def _fmt(row: dict) -> str:
    v, lo, hi = row["value"], row["low"], row["high"]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if row["metric"] == "chrf":
        return f"{v:.1f} [{lo:.1f}, {hi:.1f}]"
    return f"{v:.3f} [{lo:.2f}, {hi:.2f}]"


def _cond_order(names: set[str]) -> list[str]:
    hsic = sorted(n for n in names if n.startswith("hsic:"))
    cands = sorted(n for n in names if n.startswith("cand:"))
    first = [n for n in ("none", "en") if n in names]
    rest = [n for n in ("typology", "oracle") if n in names]
    return first + hsic + rest + cands


def markdown_report(results: dict[str, Any]) -> str:
    """Tables per task and k: pairs x conditions, value [95% CI] (bridge used); then Spearman."""
    lines = [f"# BridgeX evaluation: {results.get('model', '?')}", ""]
    cfg = results.get("config", {})
    lines += [
        f"Worker: `{results.get('worker_url', '')}`; pairs {', '.join(cfg.get('pairs', []))}; "
        f"tasks {', '.join(cfg.get('tasks', []))}; k-shot {cfg.get('k_shots')}; "
        f"limit {cfg.get('limit')}.",
        "Values: P@1 / accuracy (0-1, Wilson 95% CI) or chrF (0-100, bootstrap 95% CI); the bridge a "
        "condition used is in parentheses. `oracle` = best single candidate, chosen after the fact "
        "(an upper bound, not a method).",
        "",
    ]
    conds = results.get("conditions", [])
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in conds:
        groups.setdefault((r["task"], r["k"]), []).append(r)
    for (task, k), rows in sorted(groups.items()):
        names = _cond_order({r["condition"] for r in rows if not r["condition"].startswith("cand:")})
        pairs = list(dict.fromkeys(r["pair"] for r in rows))
        metric = rows[0]["metric"]
        lines += [f"## {task.upper()} ({metric}), k={k}", ""]
        lines.append("| pair | n | " + " | ".join(names) + " |")
        lines.append("|---|---|" + "---|" * len(names))
        for pair in pairs:
            cells = {r["condition"]: r for r in rows if r["pair"] == pair}
            n = next(iter(cells.values()))["n"]
            out = []
            for name in names:
                r = cells.get(name)
                if r is None:
                    out.append("")
                    continue
                tag = f" ({r['bridge']})" if name not in ("none", "en") else ""
                out.append(_fmt(r) + tag)
            lines.append(f"| {pair} | {n} | " + " | ".join(out) + " |")
        lines.append("")
        cand_rows = [r for r in rows if r["condition"].startswith("cand:")]
        if cand_rows:
            cnames = sorted({r["bridge"] for r in cand_rows})
            lines += [
                "Every candidate bridge:",
                "",
                "| pair | " + " | ".join(cnames) + " |",
                "|---|" + "---|" * len(cnames),
            ]
            for pair in pairs:
                cells = {r["bridge"]: r for r in cand_rows if r["pair"] == pair}
                lines.append(f"| {pair} | " + " | ".join(_fmt(cells[c]) if c in cells else "" for c in cnames) + " |")
            lines.append("")
    sp = results.get("spearman", [])
    if sp:
        lines += [
            "## Spearman: HSIC rank vs per-bridge score",
            "",
            "rank 1 = HSIC's best, so a *negative* rho means HSIC's order agrees with the measured one.",
            "",
            "| task | k | pair | method | n | rho | p |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sp:
            lines.append(
                f"| {r['task']} | {r['k']} | {r['pair']} | {r['method']} | {r['n']} | "
                f"{_num(r['rho'])} | {_num(r['p'])} |"
            )
        lines.append("")
        pooled = results.get("spearman_pooled", [])
        if pooled:
            lines += [
                "Pooled over pairs (score centred per pair):",
                "",
                "| task | k | method | n | rho | p |",
                "|---|---|---|---|---|---|",
            ]
            for r in pooled:
                lines.append(
                    f"| {r['task']} | {r['k']} | {r['method']} | {r['n']} | {_num(r['rho'])} | {_num(r['p'])} |"
                )
            lines.append("")
    if results.get("skipped"):
        lines += (
            ["## Skipped", ""]
            + [f"- {s['task']} {s['pair']} k={s['k']}: {s['reason']}" for s in results["skipped"]]
            + [""]
        )
    req = results.get("requests", {})
    incomplete = sum(r.get("missing", 0) for r in results.get("by_bridge", []))
    if incomplete:
        lines += [
            f"**Incomplete run**: {incomplete} item scores are missing (transient generation failures; "
            "rows show n without them). Rerun the same command to finish from the cache.",
            "",
        ]
    lines.append(
        f"Requests: {req.get('sent', 0)} sent, {req.get('cached', 0)} from cache, "
        f"{req.get('rejected', 0)} rejected, {req.get('failed', 0)} failed; "
        f"{results.get('elapsed_s', 0)} s."
    )
    if results.get("plots"):
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in results["plots"]]
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def write_outputs(results: dict[str, Any], out_dir: Path, *, profiles: Path | None = None, plots: bool = True) -> None:
    """results.json + results.md + PNGs under out_dir (plots listed, relative, in results['plots'])."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results["plots"] = []
    if plots:
        img = out_dir / "img"
        img.mkdir(exist_ok=True)
        results["plots"] = [str(p.relative_to(out_dir)) for p in _make_plots(results, img, profiles)]
    (out_dir / "results.json").write_text(
        json.dumps(_jsonable(results), ensure_ascii=False, indent=1), encoding="utf-8"
    )
    (out_dir / "results.md").write_text(markdown_report(results), encoding="utf-8")


# --------------------------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _make_plots(results: dict[str, Any], img: Path, profiles: Path | None) -> list[Path]:
    paths: list[Path] = []
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in results.get("conditions", []):
        groups.setdefault((r["task"], r["k"]), []).append(r)
    for (task, k), rows in sorted(groups.items()):
        paths.append(_plot_conditions(rows, img / f"{task}_k{k}_conditions.png", f"{task.upper()} k={k}"))
    for pair, methods in results.get("rankings", {}).items():
        for method, ranked in methods.items():
            if any(c.get("per_layer") for c in ranked):
                paths.append(
                    _plot_layers(
                        ranked, img / _safe(f"hsic_layers_{pair}_{method}.png"), f"HSIC per layer, {pair} ({method})"
                    )
                )
    if profiles is not None:
        try:
            codes, matrix = load_overlap(profiles)
            paths.append(_plot_heatmap(codes, matrix, img / "overlap_heatmap.png"))
        except Exception as e:  # a plot must not sink a finished evaluation
            log.warning("overlap heatmap skipped: %s", e)
            results.setdefault("warnings", []).append(f"overlap heatmap skipped: {e}")
    return paths


def _plot_conditions(rows: list[dict], path: Path, title: str) -> Path:
    plt = _plt()
    names = _cond_order({r["condition"] for r in rows if not r["condition"].startswith("cand:")})
    pairs = list(dict.fromkeys(r["pair"] for r in rows))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(pairs) * max(1, len(names)) * 0.35 + 2), 4.2))
    for j, name in enumerate(names):
        xs, ys, lo, hi = [], [], [], []
        for i, pair in enumerate(pairs):
            r = next((r for r in rows if r["pair"] == pair and r["condition"] == name), None)
            if r is None or r["value"] is None or math.isnan(r["value"]):
                continue
            xs.append(i + (j - (len(names) - 1) / 2) * width)
            ys.append(r["value"])
            # a percentile bootstrap interval need not contain the point estimate: clip the bars at it
            lo.append(max(0.0, r["value"] - r["low"]))
            hi.append(max(0.0, r["high"] - r["value"]))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=name)
    ax.set_xticks(range(len(pairs)), pairs)
    ax.set_ylabel(rows[0]["metric"])
    ax.set_title(title + " (95% CI)")
    ax.legend(fontsize=7, ncol=min(4, len(names)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_layers(ranked: list[dict], path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for c in ranked:
        per = {int(k): float(v) for k, v in (c.get("per_layer") or {}).items()}
        if not per:
            continue
        xs = sorted(per)
        ax.plot(xs, [per[x] for x in xs], marker="o", ms=3, label=f"{c['code']} (rank {c.get('rank')})")
    ax.set_xlabel("layer")
    ax.set_ylabel("HSIC score S_l(b)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_heatmap(codes: list[str], matrix: list[list[float]], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(0.45 * len(codes) + 2.5, 0.45 * len(codes) + 2))
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(codes)), codes)
    ax.set_yticks(range(len(codes)), codes)
    if len(codes) <= 16:
        for i in range(len(codes)):
            for j in range(len(codes)):
                ax.text(j, i, f"{matrix[i][j]:.0f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax, label="|T_i ∩ T_j|")
    ax.set_title("Language neuron overlap")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_overlap(path: Path) -> tuple[list[str], list[list[float]]]:
    """Overlap matrix from a JSON file {codes, overlap|matrix}, or computed from profile artifacts
    (`bridgex.neurons.language_sets` + `overlap_matrix`) in a directory."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        matrix = data.get("overlap") or data.get("matrix")
        if not isinstance(data.get("codes"), list) or not isinstance(matrix, list):
            raise ValueError(f"{path}: expected JSON with 'codes' and 'overlap' (or 'matrix')")
        return [str(c) for c in data["codes"]], [[float(v) for v in row] for row in matrix]
    return _overlap_from_profiles(path)


def _overlap_from_profiles(path: Path) -> tuple[list[str], list[list[float]]]:
    from bridgex import neurons
    from bridgex.artifacts import read_artifact

    probs = {}
    files = sorted(path.glob("*.json")) if path.is_dir() else []
    for f in files:
        try:
            tensors, manifest = read_artifact(f.parent, f.stem)
        except Exception:
            continue
        lang = manifest.get("language") or (manifest.get("params") or {}).get("language")
        if lang and "count" in tensors:
            n = float(manifest.get("n_tokens") or (manifest.get("params") or {}).get("n_tokens") or 0)
            if n > 0:
                probs[str(lang)] = tensors["count"].double() / n
        elif lang and "prob" in tensors:
            probs[str(lang)] = tensors["prob"]
    if len(probs) < 2:
        raise ValueError(f"no language profiles (safetensors + JSON manifest with 'language') in {path}")
    sets = neurons.language_sets(probs)
    if isinstance(sets, tuple):
        sets = sets[0]
    codes, mat = neurons.overlap_matrix(sets)
    return list(codes), mat.tolist()
