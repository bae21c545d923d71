"""`bridgex` command line: the whole method from a shell, no service needed.

Commands live next to the code they drive; each module exposes `register(app)`.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="BridgeX: bridge-language analysis and evaluation.", no_args_is_help=True)

for _module in ("bridgex.cli_method", "bridgex.data.cli", "bridgex.evaluation.cli"):
    importlib.import_module(_module).register(app)


if __name__ == "__main__":
    app()
