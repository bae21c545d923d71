"""Where neuron activations come from: one interface, two engines that give the same numbers.

- "hf": forward hooks on `mlp.act_fn` of a Hugging Face model (bridgex.profiling), on CPU or CUDA.
- "vllm": the same statistics captured inside vLLM's V1 engine through a worker extension and
  `LLM.collective_rpc` (bridgex.capture.vllm_engine; the code that runs inside vLLM's worker is
  bridgex.capture.vllm_worker). Imported on first use: importing vLLM costs seconds.

Both take the token ids bridgex.profiling builds (BOS + text, no other special tokens), so the artifacts are
the same whichever engine wrote them (tests/core/test_capture_vllm.py checks it on the default model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from torch import Tensor

from bridgex.cancel import Progress, ShouldCancel
from bridgex.profiling import LanguageProfile, probe_activations, profile_texts


class CaptureBackend(Protocol):
    """Produces method.md step 1 statistics and step 3 activations for a loaded model.

    Contract: whatever the caller's grad mode, the returned tensors hold no autograd graph (requires_grad
    False, grad_fn None) and are ordinary tensors, not inference tensors. A graph would keep every batch's
    activations alive (gigabytes in the analyzer); an inference tensor would make in-place ops of the
    pipeline raise. The "hf" backend gets this from bridgex.profiling (inference mode inside its functions).
    """

    name: str

    def profile(
        self,
        lm: Any,
        texts: Sequence[str],
        *,
        language: str,
        batch_size: int,
        chunk_tokens: int,
        max_tokens: int | None,
        progress: Progress | None = None,
        should_cancel: ShouldCancel | None = None,
    ) -> LanguageProfile: ...

    def probe(
        self,
        lm: Any,
        prompts: Sequence[str],
        *,
        layers: list[int],
        reduce: Literal["mean", "last"],
        batch_size: int,
        progress: Progress | None = None,
        should_cancel: ShouldCancel | None = None,
    ) -> Tensor: ...


class HFHookBackend:
    """Forward hooks on a Hugging Face model (bridgex.profiling)."""

    name = "hf"

    def profile(
        self,
        lm: Any,
        texts: Sequence[str],
        *,
        language: str,
        batch_size: int,
        chunk_tokens: int,
        max_tokens: int | None,
        progress: Progress | None = None,
        should_cancel: ShouldCancel | None = None,
    ) -> LanguageProfile:
        return profile_texts(
            lm,
            list(texts),
            language=language,
            batch_size=batch_size,
            chunk_tokens=chunk_tokens,
            max_tokens=max_tokens,
            progress=progress,
            should_cancel=should_cancel,
        )

    def probe(
        self,
        lm: Any,
        prompts: Sequence[str],
        *,
        layers: list[int],
        reduce: Literal["mean", "last"],
        batch_size: int,
        progress: Progress | None = None,
        should_cancel: ShouldCancel | None = None,
    ) -> Tensor:
        return probe_activations(
            lm,
            list(prompts),
            layers=layers,
            reduce=reduce,
            batch_size=batch_size,
            progress=progress,
            should_cancel=should_cancel,
        )


BACKEND_NAMES = ("hf", "vllm")
_BACKENDS: dict[str, CaptureBackend] = {"hf": HFHookBackend()}


def register_backend(backend: CaptureBackend) -> None:
    """Add a capture engine under `backend.name`."""
    _BACKENDS[backend.name] = backend


def get_backend(name: str = "hf") -> CaptureBackend:
    if name == "vllm" and name not in _BACKENDS:
        from bridgex.capture.vllm_engine import VLLMBackend

        register_backend(VLLMBackend())
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown capture backend {name!r}; available: {sorted({*_BACKENDS, *BACKEND_NAMES})}"
        ) from None
