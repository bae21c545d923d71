"""The one cooperative-cancel and progress protocol of long computations (profiling, probing, the gold filter,
ranking, a whole analysis job).

A computation takes `progress(current, total)` and `should_cancel()` callbacks; it calls `check_cancel` between
batches or layers, which raises `Cancelled`. Every layer catches this one type: no per-module exceptions to glue.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]
"""Called with (done, total) as work advances; advisory, never raises into the computation."""

ShouldCancel = Callable[[], bool]
"""Polled between batches or layers; True stops the computation with `Cancelled`."""


class Cancelled(Exception):
    """`should_cancel()` turned true; the message says where the computation stopped."""


def check_cancel(should_cancel: ShouldCancel | None, where: str) -> None:
    """Raise `Cancelled(where)` when a cancel was requested."""
    if should_cancel is not None and should_cancel():
        raise Cancelled(where)


__all__ = ["Cancelled", "Progress", "ShouldCancel", "check_cancel"]
