"""From texts to padded batches: tokenisation, chunking, length grouping and the masks of counted tokens.

Every backend (the hooks here, vLLM in bridgex.capture) must feed the model the same token ids, so the one
way of building them lives here: BOS + text, no other special tokens.

BOS (DECISION, documented): every chunk and every prompt starts with BOS, as the model was trained, but BOS is
not language text and its activations are identical for every input (position 0 sees only itself). It is
therefore excluded from the counted tokens by default (`include_bos=True` counts it). Padding never counts:
every batch carries a mask of the tokens that count.

Batches are built by length (sorted) to keep padding small; statistics do not depend on order. Position ids
are computed from the attention mask, so left- and right-padded batches give the unpadded results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class Batch:
    input_ids: Tensor  # [B, T]
    attention_mask: Tensor  # [B, T] long
    position_ids: Tensor  # [B, T]
    counted: Tensor  # [B, T] bool on the device: tokens that enter statistics
    order: list[int]  # original indices of the rows
    n_counted: int  # known on the host, so the loop never waits for the device
    excluded: Tensor | None  # flat row indices (device) of tokens that do not count; None when all count
    kept: Tensor | None  # flat row indices (device) of tokens that count; None when all count
    lengths: list[int]


def encode(tokenizer: Any, text: str) -> list[int]:
    """The token ids of `text` without special tokens (callers prepend BOS themselves)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def pad_token_id(tokenizer: Any) -> int:
    """The id that fills padding (pad, else EOS, else 0); padded positions are masked out, so any id works."""
    for cand in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if cand is not None:
            return int(cand)
    return 0


def make_batch(
    seqs: list[list[int]],
    order: list[int],
    *,
    pad_id: int,
    has_bos: bool,
    include_bos: bool,
    padding_side: str,
    device: torch.device,
) -> Batch:
    """Pad on the host, derive masks and index lists there, then move (no device->host sync per batch)."""
    b, t = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((b, t), pad_id, dtype=torch.long)
    mask = torch.zeros((b, t), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if padding_side == "right" else slice(t - len(s), t)
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    counted = mask.bool()
    if has_bos and not include_bos:
        counted &= pos > 0
    flat = counted.reshape(-1)
    n_counted = int(flat.sum())
    excluded = kept = None
    if n_counted < flat.numel():
        excluded = (~flat).nonzero().squeeze(1).to(device, non_blocking=True)
        kept = flat.nonzero().squeeze(1).to(device, non_blocking=True)
    nb = device.type == "cuda"
    return Batch(
        ids.to(device, non_blocking=nb),
        mask.to(device, non_blocking=nb),
        pos.to(device, non_blocking=nb),
        counted.to(device, non_blocking=nb),
        order,
        n_counted,
        excluded,
        kept,
        [len(x) for x in seqs],
    )


def length_groups(seqs: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Index groups sorted by length (less padding); the caller builds each batch when it runs it."""
    idx = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def chunk_texts(
    tokenizer: Any, texts: Iterable[str], *, chunk_tokens: int = 256, max_tokens: int | None = None
) -> tuple[list[list[int]], int]:
    """Tokenise each text (no special tokens), cut into pieces of chunk_tokens - 1 and prepend BOS per piece.

    Chunks never cross text boundaries (each text is its own context, as in the reference scripts). Returns
    the chunks and the number of language (non-BOS) tokens in them, capped at max_tokens.
    """
    if chunk_tokens < 2:
        raise ValueError("chunk_tokens must be >= 2 (BOS + at least one token)")
    bos = tokenizer.bos_token_id
    body = chunk_tokens - 1 if bos is not None else chunk_tokens
    chunks: list[list[int]] = []
    total = 0
    for text in texts:
        if max_tokens is not None and total >= max_tokens:
            break
        if not text or not text.strip():
            continue
        ids = encode(tokenizer, text)
        for i in range(0, len(ids), body):
            piece = ids[i : i + body]
            if max_tokens is not None:
                piece = piece[: max_tokens - total]
            if not piece:
                break
            chunks.append(([bos] if bos is not None else []) + piece)
            total += len(piece)
    return chunks, total
