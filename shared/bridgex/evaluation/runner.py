"""The harness end to end: plan units (task x pair x k), generate in three shared stages, score, report.

Stages run over all units at once so the worker always has a full queue to batch:
  A. demo texts in each bridge (chain tasks with k > 0, only where the data has no gold translation);
  B. step 1 for every item and distinct bridge (shared by every condition that uses that bridge);
  C. the final prompt for every item and bridge (and no bridge).
Each distinct request is generated once and cached (JSONL), so an interrupted run resumes where it stopped
and a finished one reruns with zero requests.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridgex.evaluation import metrics
from bridgex.evaluation.cache import GenerationCache
from bridgex.evaluation.conditions import Condition, PairRankings, build_conditions, load_rankings
from bridgex.evaluation.generate import Generator, Request
from bridgex.evaluation.loaders import EvalDataError
from bridgex.evaluation.tasks import TASKS, BaseTask, EvalItem, TaskData
from bridgex.generation.client import GenerationClient, WorkerUnavailable
from bridgex.languages import DEFAULT_CANDIDATES, normalize_code

__all__ = ["EvalConfig", "HarnessError", "Unit", "evaluate", "parse_pairs"]

log = logging.getLogger(__name__)


class HarnessError(RuntimeError):
    """The run cannot proceed (worker down, no usable data); the message says what to do."""


@dataclass
class EvalConfig:
    worker_url: str
    out_dir: Path
    pairs: list[tuple[str, str]]
    tasks: list[str] = field(default_factory=lambda: ["bli"])
    k_shots: list[int] = field(default_factory=lambda: [0])
    data: TaskData = field(default_factory=TaskData)
    rankings: Path | None = None
    profiles: Path | None = None
    candidates: list[str] = field(default_factory=lambda: list(DEFAULT_CANDIDATES))
    limit: int | None = None
    concurrency: int = 8
    model: str | None = None
    timeout_s: float = 120.0
    api_key: str | None = None
    mt_max_tokens: int = 256
    typology: bool = True
    progress: bool = True
    plots: bool = True
    cache_path: Path | None = None
    transport: Any = None  # an httpx transport for GenerationClient (unit tests); None = real HTTP


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """`en-sw,id-tl` -> [("en", "sw"), ("id", "tl")] with normalised codes; clear error otherwise."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" not in part:
            raise ValueError(f"pair {part!r} is not SRC-TGT (e.g. en-sw)")
        s, t = part.split("-", 1)
        s, t = normalize_code(s), normalize_code(t)
        if s == t:
            raise ValueError(f"pair {part!r} has the same language on both sides")
        out.append((s, t))
    if not out:
        raise ValueError("no pairs given (e.g. --pairs en-sw,id-tl)")
    return out


@dataclass
class Unit:
    """One task on one pair with k demonstrations, and everything generated for it."""

    task: BaseTask
    src: str
    tgt: str
    k: int
    items: list[EvalItem]
    demos: list[EvalItem]
    conditions: list[Condition]
    ranking: PairRankings | None
    demo_bridge: dict[str, dict[str, str]] = field(default_factory=dict)
    bridge_text: dict[str, list[str]] = field(default_factory=dict)

    @property
    def pair(self) -> str:
        return f"{self.src}-{self.tgt}"

    @property
    def bridges(self) -> list[str]:
        return sorted({c.bridge for c in self.conditions if c.bridge is not None})

    def label(self) -> str:
        return f"{self.task.name} {self.pair} k={self.k}"


def _typology_bridge(src: str, tgt: str, candidates: list[str]) -> str | None:
    try:
        from bridgex.typology import nearest_candidate
    except ImportError:
        return None
    try:
        res = nearest_candidate(src, tgt, [c for c in candidates if c not in (src, tgt)])
    except TypeError:
        res = nearest_candidate(src, tgt)
    except Exception as e:  # lang2vec missing a language: no typology row, said in the JSON
        log.warning("typology fallback unavailable for %s-%s: %s", src, tgt, e)
        return None
    if isinstance(res, tuple | list):
        res = res[0] if res else None
    return getattr(res, "code", res)


async def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run the harness; returns the results dict (also written, with markdown and plots, to cfg.out_dir)."""
    from bridgex.evaluation.report import write_outputs

    t0 = time.monotonic()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    rankings = load_rankings(cfg.rankings)
    skipped: list[dict] = []

    units: list[Unit] = []
    typology: dict[str, str | None] = {}
    for task_name in cfg.tasks:
        if task_name not in TASKS:
            raise HarnessError(f"unknown task {task_name!r}; choose from {', '.join(TASKS)}")
        task = TASKS[task_name](cfg.data, mt_max_tokens=cfg.mt_max_tokens)
        for src, tgt in cfg.pairs:
            pr = rankings.get((src, tgt))
            cands = list(
                dict.fromkeys(
                    [
                        *cfg.candidates,
                        *(c["code"] for info in (pr.by_method.values() if pr else []) for c in info.ranked),
                    ]
                )
            )
            cands = [c for c in cands if c not in (src, tgt)]
            key = f"{src}-{tgt}"
            if key not in typology:
                typology[key] = _typology_bridge(src, tgt, cands) if cfg.typology else None
            conds = build_conditions(src, tgt, cands, pr, typology[key])
            for k in cfg.k_shots:
                try:
                    items, demos = task.load(src, tgt, cfg.limit, k)
                except (EvalDataError, FileNotFoundError, KeyError) as e:
                    skipped.append({"task": task_name, "pair": key, "k": k, "reason": str(e)})
                    log.warning("skipping %s %s k=%d: %s", task_name, key, k, e)
                    continue
                units.append(Unit(task, src, tgt, k, items, demos, conds, pr))
    if not units:
        reasons = "; ".join(f"{s['task']} {s['pair']}: {s['reason']}" for s in skipped[:5])
        raise HarnessError(f"nothing to evaluate ({reasons or 'no tasks/pairs'})")

    cache = GenerationCache(cfg.cache_path or cfg.out_dir / "generations.jsonl")
    try:
        async with GenerationClient(
            cfg.worker_url,
            model=cfg.model,
            timeout=cfg.timeout_s,
            concurrency=cfg.concurrency,
            api_key=cfg.api_key,
            transport=cfg.transport,
        ) as client:
            try:
                healthy = await client.health()
            except Exception:
                healthy = False
            if not healthy:
                raise HarnessError(
                    f"generation worker at {cfg.worker_url} is not healthy (is it running? "
                    "`python -m services.worker`, or `make run`)"
                )
            model = cfg.model or next(iter(await client.models()), "unknown")
            gen = Generator(client, cache, model, concurrency=cfg.concurrency, progress=cfg.progress)
            try:
                await _stage_demos(units, gen)
                await _stage_bridge(units, gen)
                await _stage_final(units, gen)
            except WorkerUnavailable as e:
                raise HarnessError(
                    f"worker at {cfg.worker_url} went away: {e}. Finished generations are "
                    f"cached in {cache.path}; rerun the same command to resume."
                ) from e
    finally:
        cache.close()

    results = _score(units, gen, cfg.out_dir)
    results.update(
        {
            "model": model,
            "worker_url": cfg.worker_url,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": {
                "pairs": [f"{s}-{t}" for s, t in cfg.pairs],
                "tasks": cfg.tasks,
                "k_shots": cfg.k_shots,
                "limit": cfg.limit,
                "candidates": cfg.candidates,
                "concurrency": cfg.concurrency,
                "rankings": str(cfg.rankings) if cfg.rankings else None,
                "data_dir": str(cfg.data.data_dir) if cfg.data.data_dir else None,
            },
            "typology": typology,
            "rankings": {
                f"{s}-{t}": {
                    v: [
                        {
                            "code": c["code"],
                            "rank": c.get("rank"),
                            "score": c.get("score"),
                            "per_layer": c.get("per_layer", {}),
                        }
                        for c in info.ranked
                    ]
                    for v, info in pr.by_method.items()
                }
                for (s, t), pr in rankings.items()
                if (s, t) in set(cfg.pairs)
            },
            "skipped": skipped,
            "requests": gen.stats.as_dict(),
            "elapsed_s": round(time.monotonic() - t0, 2),
        }
    )
    write_outputs(results, cfg.out_dir, profiles=cfg.profiles, plots=cfg.plots)
    return results


async def _stage_demos(units: list[Unit], gen: Generator) -> None:
    """Demo texts in each bridge: gold from the data where it exists, else the model's own step-1 answer."""
    reqs: list[tuple[Unit, str, EvalItem, Request]] = []
    for u in units:
        if not (u.task.chain_demos and u.demos):
            continue
        for b in u.bridges:
            gold = u.task.demo_bridge_gold(u.src, b, u.demos)
            u.demo_bridge[b] = dict(gold)
            for d in u.demos:
                if d.id not in gold:
                    reqs.append((u, b, d, u.task.bridge_request(d, u.src, b, [])))
    if reqs:
        await gen.run([r for *_, r in reqs], "demos→bridge")
        for u, b, d, r in reqs:
            u.demo_bridge[b][d.id] = u.task.parse_bridge(gen.text(r)) or d.source


def _bridge_requests(u: Unit, b: str) -> list[Request]:
    demos = u.task.step1_demos(u.demos, u.demo_bridge.get(b, {}))
    return [u.task.bridge_request(it, u.src, b, demos) for it in u.items]


async def _stage_bridge(units: list[Unit], gen: Generator) -> None:
    reqs = [r for u in units for b in u.bridges for r in _bridge_requests(u, b)]
    await gen.run(reqs, "step 1 (→bridge)")
    for u in units:
        for b in u.bridges:
            # None marks an item whose step 1 failed transiently: its step 2 waits for a rerun
            u.bridge_text[b] = [
                u.task.parse_bridge(gen.text(r)) if gen.done(r) else None for r in _bridge_requests(u, b)
            ]


def _final_requests(u: Unit, b: str | None) -> list[Request | None]:
    texts = u.bridge_text.get(b) if b else None
    out: list[Request | None] = []
    for i, it in enumerate(u.items):
        if b and (texts is None or texts[i] is None):
            out.append(None)
            continue
        out.append(
            u.task.final_request(
                it, u.src, u.tgt, b, texts[i] if texts else None, u.demos, u.demo_bridge.get(b) if b else None
            )
        )
    return out


async def _stage_final(units: list[Unit], gen: Generator) -> None:
    reqs = [r for u in units for b in [None, *u.bridges] for r in _final_requests(u, b) if r is not None]
    await gen.run(reqs, "step 2 (→target)")


def _score(units: list[Unit], gen: Generator, out_dir: Path) -> dict[str, Any]:
    by_bridge: list[dict] = []
    conditions: list[dict] = []
    spearman_rows: list[dict] = []
    pred_path = out_dir / "predictions.jsonl"
    with pred_path.open("w", encoding="utf-8") as pf:
        for u in units:
            est: dict[str | None, metrics.Estimate] = {}
            missing: dict[str | None, int] = {}
            for b in [None, *u.bridges]:
                # items whose generations failed transiently are left out (and counted), not scored as wrong
                done = [
                    (i, it, r)
                    for i, (it, r) in enumerate(zip(u.items, _final_requests(u, b), strict=True))
                    if r is not None and gen.done(r)
                ]
                missing[b] = len(u.items) - len(done)
                raws = [gen.text(r) for _, _, r in done]
                items = [it for _, it, _ in done]
                preds = [u.task.parse(t, it) for t, it in zip(raws, items, strict=True)]
                est[b] = u.task.estimate(preds, items)
                by_bridge.append(
                    {
                        "task": u.task.name,
                        "pair": u.pair,
                        "k": u.k,
                        "bridge": b or "none",
                        "metric": u.task.metric,
                        "missing": missing[b],
                        **est[b].as_dict(),
                    }
                )
                for (i, it, _), raw, p in zip(done, raws, preds, strict=True):
                    pf.write(
                        json.dumps(
                            {
                                "task": u.task.name,
                                "pair": u.pair,
                                "k": u.k,
                                "bridge": b or "none",
                                "id": it.id,
                                "bridge_text": u.bridge_text[b][i] if b else None,
                                "output": raw,
                                "prediction": p,
                                "gold": it.gold,
                                "score": u.task.item_score(p, it),
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
            base = {"task": u.task.name, "pair": u.pair, "k": u.k, "metric": u.task.metric}
            for c in u.conditions:
                conditions.append(
                    {
                        **base,
                        "condition": c.name,
                        "bridge": c.bridge or "none",
                        "missing": missing[c.bridge],
                        **est[c.bridge].as_dict(),
                    }
                )
            cands = [c for c in u.conditions if c.name.startswith("cand:") and est[c.bridge].n > 0]
            if cands:
                best = max(cands, key=lambda c: est[c.bridge].value)
                conditions.append(
                    {
                        **base,
                        "condition": "oracle",
                        "bridge": best.bridge,
                        "missing": missing[best.bridge],
                        **est[best.bridge].as_dict(),
                    }
                )
            if u.ranking:
                for method, info in sorted(u.ranking.by_method.items()):
                    ranks = info.rank_of()
                    pts = [(ranks[b], est[b].value) for b in u.bridges if b in ranks and est[b].n > 0]
                    rho, p = metrics.spearman([r for r, _ in pts], [v for _, v in pts])
                    spearman_rows.append(
                        {
                            **base,
                            "method": method,
                            "n": len(pts),
                            "rho": rho,
                            "p": p,
                            "points": [
                                {"bridge": b, "rank": ranks[b], "value": est[b].value}
                                for b in u.bridges
                                if b in ranks and est[b].n > 0
                            ],
                        }
                    )
    return {
        "by_bridge": by_bridge,
        "conditions": conditions,
        "spearman": spearman_rows,
        "spearman_pooled": _pooled_spearman(spearman_rows),
    }


def _pooled_spearman(rows: list[dict]) -> list[dict]:
    """Per (task, k, method): Spearman over all (pair, candidate) points, accuracy centred per pair (so
    pairs of different difficulty do not drive it). Negative rho = HSIC rank 1 goes with higher accuracy."""
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        vals = [p["value"] for p in r["points"]]
        if len(vals) < 2:
            continue
        mean = statistics.fmean(vals)
        groups.setdefault((r["task"], r["k"], r["method"]), []).extend(
            (p["rank"], p["value"] - mean) for p in r["points"]
        )
    out = []
    for (task, k, method), pts in sorted(groups.items()):
        rho, p = metrics.spearman([a for a, _ in pts], [b for _, b in pts])
        out.append({"task": task, "k": k, "method": method, "n": len(pts), "rho": rho, "p": p})
    return out
