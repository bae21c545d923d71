"""Weight-file discovery and the weight hash artifacts record (cached by name, size and mtime)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from bridgex.atomic import atomic_write_text
from bridgex.settings import CoreSettings

log = logging.getLogger(__name__)

_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")


def cache_root(cache_dir: Path | None) -> Path:
    """`cache_dir`, or the configured cache directory (BRIDGEX_CACHE_DIR / BRIDGEX_HOME)."""
    if cache_dir is not None:
        return Path(cache_dir)
    return CoreSettings().cache_path


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder (safetensors preferred; other formats only when there are none)."""
    for pattern in _WEIGHT_PATTERNS:
        files = sorted(p for p in folder.rglob(pattern) if p.is_file())
        if files:
            return files
    return []


def weight_hash(folder: str | Path, *, cache_dir: Path | None = None) -> str:
    """sha256 over the weight files (name + content), cached by (name, size, mtime): 16 GB take a while.

    The cache lives under our own cache dir (keyed by the folder's absolute path), never inside the model
    folder, which may be read-only (a shared hub cache, a mounted volume).
    """
    folder = Path(folder).resolve()
    files = weight_files(folder)
    if not files:
        raise FileNotFoundError(f"no weight files ({', '.join(_WEIGHT_PATTERNS)}) under {folder}")
    stamp = [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    cache_file = (
        cache_root(cache_dir) / "weight-hashes" / (hashlib.sha256(str(folder).encode()).hexdigest()[:32] + ".json")
    )
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("folder") == str(folder) and cached.get("files") == stamp:
            return cached["sha256"]
    except (OSError, ValueError):
        pass
    h = hashlib.sha256()
    for (name, _size, _mtime), path in zip(stamp, files, strict=True):
        h.update(name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 22), b""):
                h.update(block)
    digest = h.hexdigest()
    try:
        atomic_write_text(cache_file, json.dumps({"folder": str(folder), "files": stamp, "sha256": digest}))
    except OSError as e:  # a read-only cache only costs time
        log.warning("could not cache weight hash in %s: %s", cache_file, e)
    return digest
