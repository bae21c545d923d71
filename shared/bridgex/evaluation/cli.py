"""CLI commands (filled in by the owning module)."""

import typer


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the `bridgex` app."""
