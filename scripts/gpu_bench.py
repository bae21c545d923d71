#!/usr/bin/env python3
"""GPU benchmark for a lent H100: profiling throughput and HSIC ranking time at Llama-3-8B shape.

Self-contained: needs only torch, transformers and this repository's shared/bridgex (no downloads, no model
files). Builds a Llama-3-8B-shaped model (32 layers, hidden 4096, intermediate 14336, 32 heads, 8 KV heads,
vocab 128256) with random bf16 weights directly on the GPU, then measures
  * profiling: profile_texts (hooks + reductions) vs a bare batched forward of the same batches (tokens/s),
  * probe activations: 500 short prompts on the 12 window layers,
  * HSIC: 12 layers x 5 candidates with n1 = n2 = 64, N = 500 (bridgex.hsic.layer_score), and the big
    2048 x 2048, N = 1000 hsic_matrix case,
and prints one JSON summary (also written to --out). `--small` runs a tiny config on CPU as a smoke test.

    PYTHONPATH=shared python scripts/gpu_bench.py --out $OUT/gpu_bench.json
    PYTHONPATH=shared python scripts/gpu_bench.py --small
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "shared"))

import torch  # noqa: E402

BIG = {"layers": 32, "hidden": 4096, "intermediate": 14336, "heads": 32, "kv_heads": 8, "vocab": 128256}
SMALL = {"layers": 4, "hidden": 64, "intermediate": 128, "heads": 4, "kv_heads": 2, "vocab": 600}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t, out


def build_model(shape: dict[str, int], device: torch.device, dtype: torch.dtype) -> Any:
    """Random weights, created directly on the target device (CPU init of 8B params would take minutes)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=8192,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def make_texts(n_texts: int, words_per_text: int, seed: int = 0) -> list[str]:
    from bridgex.models.tiny import _TINY_CORPUS

    vocab = sorted({w for w in _TINY_CORPUS.replace("\n", " ").split(" ") if w})
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(vocab) for _ in range(rng.randint(words_per_text // 2, words_per_text)))
        for _ in range(n_texts)
    ]


def bench_profiling(lm: Any, args: argparse.Namespace) -> dict[str, Any]:
    from bridgex.profiling import bare_forward, chunk_texts, profile_texts

    texts = make_texts(args.texts, args.words)
    chunks, n_tokens = chunk_texts(lm.tokenizer, texts, chunk_tokens=args.chunk_tokens, max_tokens=args.tokens)
    dev = lm.device

    def bare() -> None:
        bare_forward(lm, chunks, batch_size=args.batch_size)

    def hooked() -> Any:
        return profile_texts(
            lm,
            texts,
            language="rand",
            batch_size=args.batch_size,
            chunk_tokens=args.chunk_tokens,
            max_tokens=args.tokens,
        )

    _timed(bare, dev)  # warm-up: kernels, allocator
    _timed(hooked, dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times: dict[str, list[float]] = {"bare": [], "hooked": []}
    prof = None
    for _ in range(args.repeats):
        times["bare"].append(_timed(bare, dev)[0])
        t, prof = _timed(hooked, dev)
        times["hooked"].append(t)
    assert prof is not None and prof.n_tokens == n_tokens
    p = prof.prob
    b, h = min(times["bare"]), min(times["hooked"])
    return {
        "tokens": n_tokens,
        "chunks": len(chunks),
        "batch_size": args.batch_size,
        "chunk_tokens": args.chunk_tokens,
        "bare_s": [round(x, 4) for x in times["bare"]],
        "hooked_s": [round(x, 4) for x in times["hooked"]],
        "bare_tokens_per_s": round(n_tokens / b, 1),
        "hooked_tokens_per_s": round(n_tokens / h, 1),
        "ratio_min": round(h / b, 4),
        "ratio_median": round(statistics.median(times["hooked"]) / statistics.median(times["bare"]), 4),
        "prob_mean": round(float(p.mean()), 4),
        "prob_std": round(float(p.std()), 4),
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None,
    }


def window(num_layers: int) -> list[int]:
    lo, hi = 0.3125, 0.6875
    return [layer for layer in range(num_layers) if lo <= (layer + 0.5) / num_layers < hi]


def bench_probe(lm: Any, args: argparse.Namespace, layers: list[int]) -> tuple[dict[str, Any], torch.Tensor]:
    from bridgex.profiling import probe_activations

    words = make_texts(args.probe_n, 2, seed=1)
    prompts = [f'English:"{w}"→Français:' for w in words]
    probe_activations(lm, prompts[: args.batch_size * 2], layers=layers, batch_size=args.probe_batch)  # warm-up
    t, acts = _timed(lambda: probe_activations(lm, prompts, layers=layers, batch_size=args.probe_batch), lm.device)
    return {
        "prompts": len(prompts),
        "layers": layers,
        "seconds": round(t, 4),
        "prompts_per_s": round(len(prompts) / t, 1),
        "shape": list(acts.shape),
    }, acts


def bench_hsic(acts: torch.Tensor, layers: list[int], device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    from bridgex import hsic

    g = torch.Generator().manual_seed(0)
    n_neurons = acts.shape[1]
    acts_dev = acts.to(device)
    n = min(args.hsic_n, n_neurons // 2)
    out: dict[str, Any] = {
        "n1": n,
        "n2": n,
        "N": int(acts.shape[2]),
        "layers": len(layers),
        "candidates": args.candidates,
    }
    pair_rows = [torch.randperm(n_neurons, generator=g)[:n].to(device) for _ in layers]
    cand_rows = [
        [torch.randperm(n_neurons, generator=g)[:n].to(device) for _ in layers] for _ in range(args.candidates)
    ]

    def rank(method: str, dtype: torch.dtype | None) -> list[float]:
        scores = []
        for c in range(args.candidates):
            per = [
                hsic.layer_score(
                    acts_dev[r].index_select(0, pair_rows[r]),
                    acts_dev[r].index_select(0, cand_rows[c][r]),
                    "reference",
                    method=method,
                    dtype=dtype,
                )  # type: ignore[arg-type]
                for r in range(len(layers))
            ]
            scores.append(sum(per) / len(per))
        return scores

    raw: dict[str, list[float]] = {}
    for method in ("auto", "exact"):
        for dtype in (None, torch.float64):
            rank(method, dtype)  # warm-up
            t, scores = _timed(lambda m=method, d=dtype: rank(m, d), device)
            key = f"{method}_{'f64' if dtype is not None else 'f32'}"
            raw[key] = scores
            out[f"rank_{key}_s"] = round(t, 4)
            out[f"scores_{key}"] = [round(s, 6) for s in scores]
    for key in ("auto_f32", "exact_f32", "auto_f64"):
        out[f"max_rel_diff_{key}_vs_exact_f64"] = max(
            abs(a - b) / max(abs(b), 1e-12) for a, b in zip(raw[key], raw["exact_f64"], strict=True)
        )

    # the big case: 2048 x 2048 neurons over N = 1000 samples
    big_n, big_samples = args.big_n, args.big_samples
    x = torch.randn(big_n, big_samples, generator=g).to(device)
    y = 0.5 * x[torch.randperm(big_n, generator=g).to(device)] + torch.randn(big_n, big_samples, generator=g).to(device)
    hsic.hsic_matrix(x[:64], y[:64])  # warm-up
    for method in ("auto", "exact"):
        plan, _, _ = hsic.plan(x, y, method=method)  # type: ignore[arg-type]
        t, m = _timed(lambda meth=method: hsic.hsic_matrix(x, y, method=meth), device)  # type: ignore[misc]
        out[f"big_{method}"] = {
            "n1": big_n,
            "n2": big_n,
            "N": big_samples,
            "seconds": round(t, 4),
            "method": plan.method,
            "terms": plan.terms,
            "chunk": plan.chunk,
            "score": round(hsic.max_mean(m), 6),
        }
    return out


def bench_reductions(device: torch.device, dtype: torch.dtype, rows: int, width: int) -> dict[str, float]:
    """Milliseconds per call of candidate per-layer reductions on one [rows, width] activation tensor."""
    from bridgex.profiling import _stats

    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(rows, width, generator=g, device=device).to(dtype)
    ex = torch.arange(0, rows, 512, device=device)
    acc = torch.float32

    variants: dict[str, Callable[[], Any]] = {
        "count_only": lambda: (a > 0).sum(0),
        "count_int32": lambda: (a > 0).sum(0, dtype=torch.int32),
        "count_heaviside_f32": lambda: torch.nansum(torch.heaviside(a, a.new_zeros(())), 0, dtype=acc),
        "library_stats": lambda: _stats(a),
        "sum_only": lambda: a.sum(0, dtype=acc),
        "nansum_only": lambda: torch.nansum(a, 0, dtype=acc),
        "current_subtract_nansum": lambda: (
            (a > 0).sum(0) - (a.index_select(0, ex) > 0).sum(0),
            torch.nansum(a, 0, dtype=acc) - torch.nansum(a.index_select(0, ex), 0, dtype=acc),
        ),
        "subtract_sum": lambda: (
            (a > 0).sum(0) - (a.index_select(0, ex) > 0).sum(0),
            a.sum(0, dtype=acc) - a.index_select(0, ex).sum(0, dtype=acc),
        ),
        "two_stage": lambda: (
            (a > 0).view(-1, 64, width).sum(1, dtype=torch.int32).sum(0),
            a.view(-1, 64, width).sum(1, dtype=acc).sum(0),
        ),
        "mm_ones_f32": lambda: (
            torch.ones(1, rows, device=device)
            @ torch.stack([(a > 0).to(torch.float32), a.float()]).view(2, rows, width)[0]
        ),
    }
    try:
        fused = torch.compile(lambda x: ((x > 0).sum(0, dtype=torch.int32), x.sum(0, dtype=acc)), dynamic=True)
        fused(a)
        variants["compiled_fused"] = lambda: fused(a)
    except Exception as e:  # no triton / compiler: report and go on
        variants["compiled_fused_error"] = lambda e=e: str(e)[:80]
    out: dict[str, float] = {}
    for name, fn in variants.items():
        fn()
        reps = 20
        t, _ = _timed(lambda fn=fn, reps=reps: [fn() for _ in range(reps)], device)
        out[name] = round(1000 * t / reps, 3)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="tiny config on CPU (smoke test)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON summary here")
    ap.add_argument("--tokens", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--micro", action="store_true", help="also time candidate per-layer reductions")
    args = ap.parse_args(argv)
    small = args.small
    shape = SMALL if small else BIG
    device = torch.device(args.device or ("cpu" if small or not torch.cuda.is_available() else "cuda"))
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    args.tokens = args.tokens or (2048 if small else 65536)
    args.chunk_tokens = 128 if small else 512
    args.batch_size = 8 if small else 16
    args.texts, args.words = (64, 60) if small else (512, 400)
    args.probe_n, args.probe_batch = (64, 16) if small else (500, 64)
    args.hsic_n, args.candidates = (16 if small else 64), 5
    args.big_n, args.big_samples = (128, 100) if small else (2048, 1000)

    from bridgex.models import LoadedModel, tiny_random_llama
    from transformers import AutoTokenizer

    summary: dict[str, Any] = {
        "shape": shape,
        "device": str(device),
        "dtype": str(dtype),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(device)
    import transformers

    summary["transformers"] = transformers.__version__
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # the tiny model's byte-level BPE tokenizer (ids < 600)
        tok = AutoTokenizer.from_pretrained(tiny_random_llama(Path(tmp) / "tok"), local_files_only=True)
    t_build, model = _timed(lambda: build_model(shape, device, dtype), device)
    summary["build_s"] = round(t_build, 2)
    summary["params_b"] = round(sum(p.numel() for p in model.parameters()) / 1e9, 3)
    lm = LoadedModel(
        model=model,
        tokenizer=tok,
        model_id="random-llama3-8b-shape" if not small else "random-tiny",
        revision="random-seed0",
        weight_hash="none",
        device=device,
        num_layers=shape["layers"],
        intermediate_size=shape["intermediate"],
    )
    if args.micro:
        rows = args.batch_size * args.chunk_tokens
        summary["reductions_ms"] = bench_reductions(device, dtype, rows, shape["intermediate"])
    summary["profiling"] = bench_profiling(lm, args)
    layers = window(shape["layers"])
    summary["probe"], acts = bench_probe(lm, args, layers)
    del model, lm
    if device.type == "cuda":
        torch.cuda.empty_cache()
    summary["hsic"] = bench_hsic(acts, layers, device, args)
    summary["total_s"] = round(time.perf_counter() - t_all, 1)
    text = json.dumps(summary, indent=2)
    print(text, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return summary


if __name__ == "__main__":
    main()
