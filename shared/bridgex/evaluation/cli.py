"""`bridgex eval`: run the evaluation harness against a generation worker (any model it serves)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer

__all__ = ["register"]


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from e
    if not out or any(k < 0 for k in out):
        raise typer.BadParameter("k-shot values must be >= 0")
    return out


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def eval_command(
    worker_url: str = typer.Option(
        None, "--worker-url", help="Generation worker base URL (OpenAI protocol); default BRIDGEX_WORKER_URL."
    ),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Folder written by `bridgex data prepare` (default BRIDGEX_DATA_DIR)."
    ),
    pairs: str = typer.Option(..., "--pairs", help="Comma-separated SRC-TGT pairs, e.g. en-sw,id-tl."),
    tasks: str = typer.Option("bli", "--tasks", help="Comma-separated: bli, mt, mrc, cls."),
    k_shot: str = typer.Option("0", "--k-shot", help="Comma-separated demonstration counts, e.g. 0,3."),
    rankings: Path = typer.Option(None, "--rankings", help="Ranking JSON file or folder (analyzer output)."),
    profiles: Path = typer.Option(
        None, "--profiles", help="Profile artifacts folder or overlap JSON (for the overlap heatmap)."
    ),
    belebele: Path = typer.Option(None, "--belebele", help="Folder of Belebele JSONL files (task mrc)."),
    sib: Path = typer.Option(None, "--sib", help="SIB-200 folder (<flores code>/test.tsv; task cls)."),
    candidates: str = typer.Option(None, "--candidates", help="Candidate bridges (default BRIDGEX_CANDIDATES)."),
    limit: int = typer.Option(None, "--limit", min=1, help="At most N items per task and pair."),
    out: Path = typer.Option(Path("eval-out"), "--out", help="Output folder (results, cache, plots)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Requests in flight (the worker batches)."),
    model: str = typer.Option(None, "--model", help="Model name sent to the worker (default: its first)."),
    timeout: float = typer.Option(None, "--timeout", help="Per-request timeout in seconds."),
    mt_max_tokens: int = typer.Option(256, "--mt-max-tokens", min=8, help="Cap on generated tokens (MT)."),
    no_typology: bool = typer.Option(False, "--no-typology", help="Skip the typology fallback condition."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip PNG plots."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Does the chosen bridge help? Score none / English / HSIC / every candidate / typology per pair."""
    from bridgex.evaluation.loaders import EvalDataError
    from bridgex.evaluation.runner import EvalConfig, HarnessError, evaluate, parse_pairs
    from bridgex.evaluation.tasks import TASKS, TaskData
    from bridgex.settings import get_settings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        pair_list = parse_pairs(pairs)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--pairs") from e
    task_list = _names(tasks)
    bad = [t for t in task_list if t not in TASKS]
    if bad or not task_list:
        raise typer.BadParameter(f"unknown task(s) {bad}; choose from {', '.join(TASKS)}", param_hint="--tasks")
    cfg = EvalConfig(
        worker_url=(worker_url or settings.worker_url).rstrip("/"),
        out_dir=out,
        pairs=pair_list,
        tasks=task_list,
        k_shots=_ints(k_shot),
        data=TaskData(data_dir=data_dir or settings.data_path, belebele_dir=belebele, sib_dir=sib),
        rankings=rankings,
        profiles=profiles,
        candidates=_names(candidates) if candidates else list(settings.candidates),
        limit=limit,
        concurrency=concurrency,
        model=model,
        timeout_s=timeout or max(settings.worker_timeout_s, 120.0),
        api_key=settings.worker_key,
        mt_max_tokens=mt_max_tokens,
        typology=not no_typology,
        progress=not quiet,
        plots=not no_plots,
    )
    try:
        results = asyncio.run(evaluate(cfg))
    except (HarnessError, EvalDataError, FileNotFoundError) as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from e
    req = results["requests"]
    missing = sum(r.get("missing", 0) for r in results["by_bridge"])
    if missing:
        typer.secho(
            f"incomplete: {req['failed']} requests failed, {missing} item scores missing; rerun the "
            "same command to finish (done work is cached)",
            fg=typer.colors.YELLOW,
            err=True,
        )
    typer.echo(
        f"wrote {out / 'results.json'}, {out / 'results.md'} and {len(results['plots'])} plots "
        f"({req['sent']} requests sent, {req['cached']} from cache, {results['elapsed_s']} s)"
    )


def register(app: typer.Typer) -> None:
    """Attach `bridgex eval` to the `bridgex` app."""
    app.command("eval")(eval_command)
