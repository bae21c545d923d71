"""Gather the data a request needs when it is first needed, instead of a 12-minute `bridgex data prepare`.

The analyzer's "data" stage and the gateway's k-shot demonstrations call `ensure_data` with the pairs they
are about to read. When everything is there it only stats files (no lock, no reads), so it can sit on every
request path. Otherwise it takes the data directory's inter-process lock, checks again (another process may
have just built the same pair), builds only what is still missing through `bridgex.data.prepare.build` and
merges the manifest. A directory's recorded parameters win over the caller's, so it never mixes two splits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridgex.data.layout import DataLayout
from bridgex.data.prepare import (
    Built,
    DataBusy,
    PrepareConfig,
    PrepareError,
    build,
    data_lock,
    data_root,
    existing_params,
    merge_manifest,
    params_of,
    read_manifest,
    request,
    write_manifest,
)

__all__ = ["DataBusy", "ensure_data", "missing_data"]

_log = logging.getLogger("bridgex.data")


def missing_data(
    root: Path, pairs: Sequence[tuple[str, str]], languages: Sequence[str] = ()
) -> tuple[list[str], list[tuple[str, str]]]:
    """(languages, pairs) not in the data directory, by stat only.

    A language needs text/<lang>.txt and text/<lang>.udhr.json (the pairs' languages are included); a pair
    needs dict/<s>-<t>/all.tsv or the reverse's (DataLayout derives a reversed pair). Writers write these
    files last and atomically, so their presence means complete.
    """
    layout = DataLayout(root)
    langs, norm_pairs = request(languages, pairs)
    miss_langs = [c for c in langs if not (layout.text_path(c).is_file() and layout.udhr_json_path(c).is_file())]
    miss_pairs = [
        (s, t)
        for s, t in norm_pairs
        if not (layout.dictionary_path(s, t, "all").is_file() or layout.dictionary_path(t, s, "all").is_file())
    ]
    return miss_langs, miss_pairs


def ensure_data(
    cfg: PrepareConfig,
    pairs: Sequence[tuple[str, str]],
    languages: Sequence[str] = (),
    *,
    log: Callable[[str], None] = _log.info,
    progress: Callable[[int, int], None] | None = None,
    lock_timeout: float | None = None,
) -> dict[str, Any]:
    """Build only the text and dictionaries that `pairs` and `languages` lack in `cfg.data_dir`.

    `cfg` gives the sources (udhr, freedict_dir, install, ...) and, for a new directory only, the parameters;
    cfg.pairs and cfg.languages are ignored. `progress(current, total)` follows `build`'s steps ((1, 1) when
    nothing is missing). Waits for another writer's lock, or raises DataBusy after `lock_timeout` seconds.
    Returns a JSON-able report: what was built and reused, FreeDict installs, waits and duration.
    """
    start = time.monotonic()
    root = Path(cfg.data_dir).expanduser().resolve()
    langs, norm_pairs = request(languages, pairs)
    miss_langs, miss_pairs = missing_data(root, norm_pairs, langs)
    built, waited = None, 0.0
    if miss_langs or miss_pairs:
        root = data_root(cfg)
        try:
            root.mkdir(parents=True, exist_ok=True)
            with data_lock(root, lock_timeout, log) as waited:
                miss_langs, miss_pairs = missing_data(root, norm_pairs, langs)  # double-checked under the lock
                if miss_langs or miss_pairs:
                    built = _build_missing(cfg, root, miss_langs, miss_pairs, log, progress)
        except PermissionError as exc:  # e.g. a data volume mounted read-only
            raise PrepareError(
                f"cannot write the data directory {root} ({exc}): mount it read-write, or prepare "
                f"{_names(miss_pairs) or miss_langs} with `bridgex data ensure` where it is writable"
            ) from exc
    if built is None and progress is not None:
        progress(1, 1)
    done_langs, done_pairs = (miss_langs, _names(miss_pairs)) if built is not None else ([], [])
    return {
        "data_dir": str(root),
        "built": {"languages": done_langs, "pairs": done_pairs},
        "reused": {
            "languages": [c for c in langs if c not in done_langs],
            "pairs": [p for p in _names(norm_pairs) if p not in done_pairs],
        },
        "freedict": {
            "installed": built.freedict_installed if built else [],
            "missing": built.sources["freedict"]["missing"] if built else [],
        },
        "udhr": built.sources["udhr"]["origin"] if built else None,
        "lock_wait_s": round(waited, 3),
        "seconds": round(time.monotonic() - start, 3),
    }


def _build_missing(
    cfg: PrepareConfig,
    root: Path,
    languages: list[str],
    pairs: list[tuple[str, str]],
    log: Callable[[str], None],
    progress: Callable[[int, int], None] | None,
) -> Built:
    """Build under the lock with the directory's recorded parameters, then merge the manifest."""
    old = read_manifest(root)
    params = {**params_of(cfg), **existing_params(old)}
    cfg = replace(cfg, **params)
    log(f"gathering data in {root}: text {languages or 'ready'}, pairs {_names(pairs) or 'ready'}")
    built = build(cfg, root, languages, pairs, log, progress)
    write_manifest(root, merge_manifest(old, built, params, cfg.freedict_dir))
    return built


def _names(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [f"{s}-{t}" for s, t in pairs]
