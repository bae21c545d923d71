"""Runs inside vLLM's worker (`worker_extension_cls`): hooks that reduce MLP activations where they are computed.

Why not hook `act_fn` as with HF: vLLM builds one act_fn instance (e.g. GeluAndMul) and shares it across all
layers, and it returns act(gate) * up, not the neuron value act(gate) of method.md step 0. Each layer's fused
`mlp.gate_up_proj` returns [gate | up] for this tensor-parallel rank; its first half is this rank's slice of
the gate, to which we apply the layer's activation ourselves. Neuron j of rank r is global neuron
r * I_local + j; the driver concatenates ranks in order.

Tokens: vLLM flattens the batch without padding between requests. With prefix caching off every prompt starts
at position 0, so positions mark the request boundaries; rows the forward context marks as padding never count.
The driver asks for one new token, so no decode step passes through the MLP. In "probe" mode the driver sends
groups that fit one scheduler step, so no prompt is split; a split prompt is detected and reported, never
averaged wrongly. Probe results are keyed by the prompt's token ids (identical prompts give identical values).

Everything returned is a plain CPU tensor or dict; the hooks hold no graph (vLLM runs under inference mode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bridgex.profiling import UnsupportedArchitecture, _stats, find_layers


def gate_activation(act_fn: nn.Module) -> Callable[[Tensor], Tensor]:
    """The activation a vLLM `XAndMul` module applies to the gate half (HF's act_fn on gate_proj)."""
    name = type(act_fn).__name__
    if name == "SiluAndMul":
        return F.silu
    if name == "GeluAndMul":
        approximate = str(getattr(act_fn, "approximate", "none"))
        return lambda x: F.gelu(x, approximate=approximate)
    raise UnsupportedArchitecture(f"vLLM MLP activation {name} is not supported (SiluAndMul, GeluAndMul)")


def _local_intermediate(proj: nn.Module) -> int:
    """This rank's gate width: half the fused projection's output. Read from the layer's partition size, not
    the weight's shape: the CPU backend may repack weights into a kernel layout."""
    size = getattr(proj, "output_size_per_partition", None)
    if size is None:
        raise UnsupportedArchitecture(f"{type(proj).__name__} has no output_size_per_partition")
    return int(size) // 2


def _tp() -> tuple[int, int]:
    try:
        from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size

        return int(get_tensor_model_parallel_rank()), int(get_tensor_model_parallel_world_size())
    except Exception:  # not initialised (unit tests): a single rank
        return 0, 1


def _padding_rows() -> Tensor | None:
    try:
        from vllm.forward_context import get_forward_context

        return getattr(get_forward_context(), "is_padding", None)
    except Exception:
        return None


class _Capture:
    """Hooks and accumulators of one capture session (installed by bridgex_capture_start)."""

    def __init__(self, model: nn.Module, spec: dict[str, Any]) -> None:
        _, layers = find_layers(model)
        self.mode: str = spec["mode"]
        if self.mode not in ("profile", "probe"):
            raise ValueError(f"unknown capture mode {self.mode!r}")
        self.layers = [int(x) for x in spec.get("layers") or range(len(layers))]
        self.include_bos = bool(spec.get("include_bos", False))
        self.reduce = str(spec.get("reduce", "mean"))
        self.row = {layer: r for r, layer in enumerate(self.layers)}
        self.handles: list[Any] = []
        self.error: str | None = None
        self.calls = dict.fromkeys(self.layers, 0)
        self.forwards = 0
        mlps = [layers[i].mlp for i in self.layers]
        for i, mlp in zip(self.layers, mlps, strict=True):
            if not hasattr(mlp, "gate_up_proj") or not hasattr(mlp, "act_fn"):
                raise UnsupportedArchitecture(f"layer {i}: vLLM MLP without gate_up_proj/act_fn ({type(mlp)})")
        self.act = [gate_activation(m.act_fn) for m in mlps]
        self.inter_local = _local_intermediate(mlps[0].gate_up_proj)
        self.device = next(mlps[0].gate_up_proj.parameters()).device
        n = len(self.layers)
        self.count = torch.zeros((n, self.inter_local), dtype=torch.int64, device=self.device)
        self.sum = torch.zeros((n, self.inter_local), dtype=torch.float64, device=self.device)
        self.n_tokens = 0
        self.results: dict[tuple[int, ...], Tensor] = {}
        self.step: dict[str, Any] = {}
        try:
            self.handles.append(model.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(model.register_forward_hook(self._post, with_kwargs=True))
            for r, mlp in enumerate(mlps):
                self.handles.append(mlp.gate_up_proj.register_forward_hook(self._make_hook(r)))
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    # --- per forward ------------------------------------------------------------------------------
    def _pre(self, _m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        pos = kwargs.get("positions", args[1] if len(args) > 1 else None)
        if pos is None or ids is None:
            self.error = "the model forward got no input_ids/positions (embeddings input is not supported)"
            self.step = {}
            return
        n = int(pos.shape[-1])
        pad = _padding_rows()
        n_real = n - int(pad[:n].sum()) if isinstance(pad, Tensor) and pad.numel() >= n else n
        pos = pos.reshape(-1)[:n_real]
        self.calls = dict.fromkeys(self.layers, 0)
        counted = pos > 0 if not self.include_bos else torch.ones_like(pos, dtype=torch.bool)
        step: dict[str, Any] = {
            "n_real": n_real,
            "counted_idx": counted.nonzero().squeeze(1),
            "n_counted": int(counted.sum()),
        }
        if self.mode == "probe":
            pos_l = pos.tolist()
            ids_l = ids.reshape(-1)[:n_real].tolist()
            if pos_l and pos_l[0] != 0:
                self.error = "a prompt was split across scheduler steps; send fewer tokens per call"
            starts = [i for i, p in enumerate(pos_l) if p == 0]
            ends = [*starts[1:], n_real]
            seg = torch.empty(n_real, dtype=torch.long)
            for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
                seg[s:e] = k
            lengths = torch.tensor([e - s for s, e in zip(starts, ends, strict=True)])
            n = (lengths - (0 if self.include_bos else 1)).clamp(min=1)
            step |= {
                "keys": [tuple(ids_l[s:e]) for s, e in zip(starts, ends, strict=True)],
                "seg": seg.to(self.device),
                "n": n.to(self.device, torch.float32).unsqueeze(1),
                "last": torch.tensor([e - 1 for e in ends], device=self.device),
                "vals": torch.zeros((len(self.layers), len(starts), self.inter_local), device=self.device),
            }
        self.step = step

    def _make_hook(self, r: int) -> Callable[..., None]:
        def hook(_m: nn.Module, _inputs: Any, output: Any) -> None:
            if not self.step:
                return
            out = output[0] if isinstance(output, tuple) else output
            st = self.step
            gate = out.reshape(-1, out.shape[-1])[: st["n_real"], : self.inter_local]
            act = self.act[r](gate)
            self.calls[self.layers[r]] += 1
            if self.mode == "profile":
                a = act if st["n_counted"] == st["n_real"] else act.index_select(0, st["counted_idx"])
                c, sm = _stats(a)
                self.count[r] += c
                self.sum[r] += sm
            elif self.reduce == "last":
                st["vals"][r] = act.index_select(0, st["last"]).float()
            else:
                idx = st["counted_idx"]
                sums = torch.zeros_like(st["vals"][r]).index_add_(0, st["seg"][idx], act[idx].float())
                st["vals"][r] = sums / st["n"]

        return hook

    def _post(self, _m: nn.Module, _args: Any, _kwargs: Any, _out: Any) -> None:
        if not self.step:
            return
        wrong = {k: v for k, v in self.calls.items() if v != 1}
        if wrong:
            self.error = f"gate_up_proj hooks fired {wrong} times in one forward (expected once per layer)"
        self.forwards += 1
        if self.mode == "profile":
            self.n_tokens += self.step["n_counted"]
        else:
            vals = self.step["vals"].cpu()
            for k, key in enumerate(self.step["keys"]):
                self.results[key] = vals[:, k, :].clone()
        self.step = {}


class CaptureExtension:
    """Methods added to vLLM's worker class; called from the driver with `LLM.collective_rpc(name, args)`."""

    def _bridgex_model(self) -> nn.Module:
        runner = self.model_runner  # type: ignore[attr-defined]
        return runner.get_model() if hasattr(runner, "get_model") else runner.model

    def bridgex_capture_info(self) -> dict[str, Any]:
        _, layers = find_layers(self._bridgex_model())
        rank, size = _tp()
        return {
            "num_layers": len(layers),
            "intermediate_local": _local_intermediate(layers[0].mlp.gate_up_proj),
            "tp_rank": rank,
            "tp_size": size,
        }

    def bridgex_capture_start(self, spec: dict[str, Any]) -> None:
        self.bridgex_capture_stop()
        self._bridgex_capture = _Capture(self._bridgex_model(), spec)

    def bridgex_capture_take(self) -> dict[str, Any]:
        """What was captured since the last take (accumulators are reset); raises on a capture error."""
        cap: _Capture | None = getattr(self, "_bridgex_capture", None)
        if cap is None:
            raise RuntimeError("no capture running: call bridgex_capture_start first")
        if cap.error:
            raise RuntimeError(f"vLLM capture failed: {cap.error}")
        rank, size = _tp()
        out: dict[str, Any] = {"tp_rank": rank, "tp_size": size, "forwards": cap.forwards}
        if cap.mode == "profile":
            # copies: .cpu() of a CPU tensor is the tensor itself, and it is zeroed next
            out |= {
                "count": cap.count.to("cpu", copy=True),
                "sum": cap.sum.to("cpu", copy=True),
                "n_tokens": cap.n_tokens,
            }
            cap.count.zero_()
            cap.sum.zero_()
            cap.n_tokens = 0
        else:
            out["results"] = cap.results
            cap.results = {}
        cap.forwards = 0
        return out

    def bridgex_capture_stop(self) -> None:
        cap: _Capture | None = getattr(self, "_bridgex_capture", None)
        if cap is not None:
            cap.remove()
            self._bridgex_capture = None
