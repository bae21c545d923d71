"""Where the neurons are and how they are read: layer discovery and forward hooks on `mlp.act_fn`.

The neuron (l, j) is channel j of `act_fn(gate_proj(x))`; a forward hook on `layers[l].mlp.act_fn` sees
exactly that tensor. This module finds those modules across the architectures we know and attaches hooks
that are always removed again, even when the forward raises, so a model is never left hooked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

Reducer = Callable[[int, Tensor], None]

_LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "language_model.model.layers",
    "language_model.layers",
    "model.decoder.layers",
    "gpt_neox.layers",
    "transformer.h",
    "layers",
)


class UnsupportedArchitecture(RuntimeError):
    """The model has no per-layer `mlp.act_fn` module to hook (not a gated-MLP decoder we know)."""


# --------------------------------------------------------------------------------------------- discovery


def _get_path(root: nn.Module, dotted: str) -> Any:
    obj: Any = root
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_layers(model: nn.Module) -> tuple[str, Sequence[nn.Module]]:
    """The decoder layer list and its dotted path (handles `model.language_model.layers` nesting)."""
    for dotted in _LAYER_PATHS:
        layers = _get_path(model, dotted)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return dotted, layers
    raise UnsupportedArchitecture(
        f"{type(model).__name__}: no decoder layer list found (looked for {', '.join(_LAYER_PATHS)})"
    )


def _act_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    dotted, layers = find_layers(model)
    found: list[tuple[str, nn.Module]] = []
    for i, layer in enumerate(layers):
        path = f"{dotted}.{i}.mlp.act_fn"
        mlp = getattr(layer, "mlp", None)
        act = getattr(mlp, "act_fn", None) if mlp is not None else None
        if not isinstance(act, nn.Module):
            have = sorted(n for n, _ in (mlp.named_children() if isinstance(mlp, nn.Module) else []))
            raise UnsupportedArchitecture(
                f"{type(model).__name__}: layer {i} has no `{path}` module"
                + (
                    f" (its mlp has: {', '.join(have) or 'no submodules'})"
                    if mlp is not None
                    else f" (layer has no `mlp`; it has: {', '.join(n for n, _ in layer.named_children())})"
                )
                + "; BridgeX profiles gated MLPs (Llama, Qwen, Mistral, Gemma) whose activation is a module."
            )
        found.append((path, act))
    if len({id(m) for _, m in found}) != len(found):
        raise UnsupportedArchitecture(
            f"{type(model).__name__}: layers share one act_fn module, so a hook cannot tell layers apart"
        )
    return found


def find_mlp_act_modules(model: nn.Module) -> list[nn.Module]:
    """`layers[l].mlp.act_fn` for every layer, in layer order; raises UnsupportedArchitecture otherwise."""
    return [m for _, m in _act_modules(model)]


# --------------------------------------------------------------------------------------------- hooks


class ActivationHooks:
    """Context manager: forward hooks on `mlp.act_fn` of the chosen layers, always removed on exit.

    `reducer(layer, act)` receives the act_fn output [B, T, I] of each hooked layer; when None, the last
    output per layer is kept in `captured` (small models and tests only). `calls` counts hook firings per
    layer so callers can check every layer ran (a fused kernel that bypasses the module would otherwise go
    unnoticed).
    """

    def __init__(self, model: nn.Module, layers: Sequence[int] | None = None, reducer: Reducer | None = None):
        self.model = model
        named = _act_modules(model)
        n = len(named)
        self.layers = list(range(n)) if layers is None else [int(x) for x in layers]
        bad = [x for x in self.layers if not 0 <= x < n]
        if bad:
            raise ValueError(f"layers {bad} out of range: the model has {n} layers (0..{n - 1})")
        self._targets = [(layer, named[layer][0], named[layer][1]) for layer in self.layers]
        self.reducer = reducer
        self.captured: dict[int, Tensor] = {}
        self.calls: dict[int, int] = dict.fromkeys(self.layers, 0)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _make_hook(self, layer: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            self.calls[layer] += 1
            if self.reducer is not None:
                self.reducer(layer, output)
            else:
                self.captured[layer] = output.detach().clone()

        return hook

    def __enter__(self) -> ActivationHooks:
        try:
            for layer, _path, module in self._targets:
                self._handles.append(module.register_forward_hook(self._make_hook(layer)))
            missing = [
                path
                for (_l, path, module), h in zip(self._targets, self._handles, strict=True)
                if h.id not in module._forward_hooks
            ]
            if len(self._handles) != len(self._targets) or missing:
                raise UnsupportedArchitecture(f"could not hook: {', '.join(missing) or 'some layers'}")
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def reset_calls(self) -> None:
        for k in self.calls:
            self.calls[k] = 0

    def check_fired(self, times: int = 1) -> None:
        """Every hooked layer fired exactly `times` times since the last reset (one forward = once)."""
        wrong = {k: v for k, v in self.calls.items() if v != times}
        if wrong:
            raise UnsupportedArchitecture(
                f"act_fn hooks fired {wrong} times (expected {times}): the MLP does not call its act_fn "
                "module (fused kernel?), so activations cannot be read this way"
            )
