"""Greedy parity on the real default model (Gemma-3-270M): batched engine output == `model.generate`."""

from __future__ import annotations

import asyncio

import pytest
import torch
from bridgex.prompts import word_prompt

from services.worker.engine import Engine, SamplingParams

pytestmark = pytest.mark.slow


async def test_gemma_batched_greedy_equals_generate(default_model) -> None:
    lm = default_model
    prompts = [word_prompt("water", "en", "fr"),
               word_prompt("house", "de", "ja", bridge="en", bridge_word="house"),
               "The capital of France is"]
    n = 6
    e = Engine(lm.model, lm.tokenizer, max_batch_size=8, batch_wait_ms=50)
    await e.start()
    try:
        async def late(p: str, delay: float):
            await asyncio.sleep(delay)
            return await e.generate(e.tokenize(p), SamplingParams(max_tokens=n))

        # two start together; the third arrives mid-batch and joins it (continuous batching)
        outs = await asyncio.gather(late(prompts[0], 0), late(prompts[1], 0), late(prompts[2], 0.3))
    finally:
        await e.stop()
    eos = set(e.eos_ids)
    for p, o in zip(prompts, outs, strict=True):
        enc = lm.tokenizer(p, return_tensors="pt")
        with torch.inference_mode():
            out = lm.model.generate(**enc, do_sample=False, max_new_tokens=n)
        ref = out[0, enc.input_ids.shape[1]:].tolist()
        cut = next((i + 1 for i, t in enumerate(ref) if t in eos), len(ref))
        assert o.token_ids == ref[:cut], p
