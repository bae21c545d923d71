"""What is kept of the activations: language profiles (method.md step 1) and probe reductions (step 3).

Hooks reduce inside the hook (counts, sums, per-prompt means), so memory stays O(L x I), never [B, T, I] for
all layers. Only the tokens a batch marks as counted enter a statistic (no BOS by default, never padding).
`LanguageProfile` is the result type that artifacts and the pipeline store and read back; `count_and_sum` is
the per-block reduction both capture backends (hooks here, vLLM workers) use, so their counts agree. The
accumulators allocate their results when built, before the caller enters inference mode, and only write them
in place afterwards (see bridgex.profiling), so the results are ordinary tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from bridgex.profiling.batching import Batch


@dataclass
class LanguageProfile:
    """Streaming statistics of one language: count[l, j] = tokens with act > 0, sum[l, j] = sum of act."""

    language: str
    count: Tensor  # [L, I] int64
    sum: Tensor  # [L, I] float64
    n_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prob(self) -> Tensor:
        """p[l, j] = count / n_tokens (float64)."""
        if self.n_tokens <= 0:
            raise ValueError(f"profile {self.language!r} has no tokens")
        return self.count.to(torch.float64) / self.n_tokens

    @property
    def mean(self) -> Tensor:
        if self.n_tokens <= 0:
            raise ValueError(f"profile {self.language!r} has no tokens")
        return self.sum / self.n_tokens

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.count.shape[0]), int(self.count.shape[1]))


def count_and_sum(a: Tensor) -> tuple[Tensor, Tensor]:
    """(count of a > 0, sum of a) over rows of a [n, I] activation block, NaN rows ignored.

    On CUDA the count is the float sum of heaviside(a) (1 where a > 0): one elementwise kernel plus a float
    reduction, about 2x faster than summing a bool tensor into int64 (measured on an H100), and exact
    (integers below 2^24 rows per batch in float32). On CPU heaviside is not vectorised, so the bool sum
    is used there. Sums accumulate in float32 per batch (float64 for float64 models); totals are float64.
    """
    acc = torch.float64 if a.dtype == torch.float64 or a.shape[0] >= 2**24 else torch.float32
    if a.device.type == "cuda":
        pos = torch.heaviside(a, a.new_zeros(()))
        count = torch.nansum(pos, 0, dtype=acc).round_().to(torch.int64)
    else:
        count = (a > 0).sum(0)
    return count, torch.nansum(a, 0, dtype=acc)


class ProfileAccumulator:
    """Streaming count/sum over all layers: `reduce` is the hook reducer for the batch set in `batch`."""

    def __init__(self, num_layers: int, intermediate_size: int, device: torch.device):
        self.count = torch.zeros((num_layers, intermediate_size), dtype=torch.int64, device=device)
        self.sum = torch.zeros((num_layers, intermediate_size), dtype=torch.float64, device=device)
        self.batch: Batch | None = None

    def reduce(self, layer: int, act: Tensor) -> None:
        # Statistics over all rows minus the few rows that do not count (BOS, padding): no copy of the big
        # [B*T, I] tensor. nansum: a padding row that attended to nothing may hold NaN, which must not leak.
        # Mostly-excluded batches (heavy padding) select the kept rows instead.
        a = act.reshape(-1, act.shape[-1])
        batch = self.batch
        assert batch is not None, "set the batch before running it"
        if batch.excluded is None:
            c, sm = count_and_sum(a)
        elif 2 * batch.excluded.numel() <= a.shape[0]:
            c, sm = count_and_sum(a)
            c_ex, sm_ex = count_and_sum(a.index_select(0, batch.excluded))
            c, sm = c - c_ex, sm - sm_ex
        else:
            c, sm = count_and_sum(a.index_select(0, batch.kept))  # type: ignore[arg-type]
        self.count[layer] += c
        self.sum[layer] += sm


class ProbeReducer:
    """Per prompt, the mean of act over its counted tokens or the last token's act, into `out` [L', I, N].

    `start(batch)` before each forward, `reduce` as the hook reducer, `finish(batch)` after it: the batch's
    values stay on the device until the batch is done, then go to `out` (float32, CPU) in one copy.
    """

    def __init__(
        self,
        layers: list[int],
        intermediate_size: int,
        n_prompts: int,
        *,
        reduce: Literal["mean", "last"],
        has_bos: bool,
        include_bos: bool,
        padding_side: str,
        device: torch.device,
    ):
        self.out = torch.zeros((len(layers), intermediate_size, n_prompts), dtype=torch.float32)
        self.layers = layers
        self.intermediate_size = intermediate_size
        self.row = {layer: r for r, layer in enumerate(layers)}
        self.mode = reduce
        self.skip = 1 if has_bos and not include_bos else 0
        self.padding_side = padding_side
        self.device = device
        self.state: dict[str, Any] = {}

    def start(self, batch: Batch) -> None:
        state, device = self.state, self.device
        t = batch.input_ids.shape[1]
        lengths = torch.tensor(batch.lengths)
        n = (lengths - self.skip).clamp(min=1)
        last = (lengths - 1) if self.padding_side == "right" else torch.full_like(lengths, t - 1)
        state["counted"] = batch.counted
        state["n"] = n.to(device=device, dtype=torch.float32).unsqueeze(1)
        state["arange"] = torch.arange(len(batch.order), device=device)
        state["last"] = last.to(device)
        state["vals"] = torch.zeros((len(self.layers), len(batch.order), self.intermediate_size), device=device)

    def reduce(self, layer: int, act: Tensor) -> None:
        state = self.state
        if self.mode == "last":
            vals = act[state["arange"], state["last"]].float()  # [B, I]
        else:  # masked_fill also clears NaN of padding rows that attended to nothing
            masked = act.masked_fill(~state["counted"].unsqueeze(-1), 0)
            vals = masked.sum(1, dtype=torch.float32) / state["n"]
        state["vals"][self.row[layer]] = vals  # stays on the device until the batch is done

    def finish(self, batch: Batch) -> None:
        self.out[:, :, batch.order] = self.state["vals"].cpu().transpose(1, 2)
