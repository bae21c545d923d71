"""Dynamic batching engine on the tiny random Llama: parity with `model.generate`, per-row limits, stops,
dropping finished rows, seeded sampling, streaming, bounded queue, timeouts."""

from __future__ import annotations

import asyncio

import pytest
import torch

from services.worker.engine import Engine, GenerationTimeout, QueueFull, SamplingParams

PROMPTS = [
    'English:"water"→Français:',
    "hi",
    'Deutsch:"Haus"→日本語: a much longer prompt, so the batch is left-padded for the others',
    "水の本",
]


def reference(lm, prompt: str, n: int) -> list[int]:
    enc = lm.tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = lm.model.generate(**enc, do_sample=False, max_new_tokens=n)
    gen = out[0, enc.input_ids.shape[1]:].tolist()
    eos = lm.model.generation_config.eos_token_id
    return gen[: gen.index(eos) + 1] if eos in gen else gen


async def _engine(lm, **kw) -> Engine:
    e = Engine(lm.model, lm.tokenizer, **{"max_batch_size": 8, "batch_wait_ms": 50, **kw})
    await e.start()
    return e


async def test_greedy_parity_single_and_mixed_length_batch(tiny_lm) -> None:
    e = await _engine(tiny_lm)
    try:
        ids = [e.tokenize(p) for p in PROMPTS]
        assert len({len(x) for x in ids}) == len(PROMPTS)  # really different lengths
        single = await e.generate(ids[0], SamplingParams(max_tokens=12))
        sizes: list[int] = []
        run = e._run_batch
        e._run_batch = lambda batch: (sizes.append(len(batch)), run(batch))[1]  # type: ignore[method-assign]
        batched = await asyncio.gather(*(e.generate(x, SamplingParams(max_tokens=12)) for x in ids))
        assert sizes == [len(PROMPTS)], "concurrent requests must run as one batch"
    finally:
        await e.stop()
    assert single.token_ids == reference(tiny_lm, PROMPTS[0], 12)
    for p, r in zip(PROMPTS, batched, strict=True):
        assert r.token_ids == reference(tiny_lm, p, 12), p
        assert r.prompt_tokens == len(tiny_lm.tokenizer(p)["input_ids"])
        assert r.finish_reason in ("length", "stop")


async def test_finished_rows_stop_costing_work(tiny_lm) -> None:
    e = await _engine(tiny_lm)
    sizes: list[int] = []
    forward = e._forward

    def spy(ids, mask, pos, cache):
        sizes.append(ids.shape[0])
        return forward(ids, mask, pos, cache)

    e._forward = spy  # type: ignore[method-assign]
    try:
        ids = [e.tokenize(p) for p in PROMPTS[:3]]
        res = await asyncio.gather(*(e.generate(x, SamplingParams(max_tokens=n))
                                     for x, n in zip(ids, (2, 5, 9), strict=True)))
    finally:
        await e.stop()
    assert [r.completion_tokens for r in res] == [2, 5, 9]
    assert all(r.finish_reason == "length" for r in res)
    # prefill + 8 decode steps; the 2-token row leaves after step 1, the 5-token row after step 4
    assert sizes == [3, 3, 2, 2, 2, 1, 1, 1, 1]
    for p, r, n in zip(PROMPTS, res, (2, 5, 9), strict=False):
        assert r.token_ids == reference(tiny_lm, p, n)


async def test_late_requests_join_the_running_batch_with_parity(tiny_lm) -> None:
    e = await _engine(tiny_lm, batch_wait_ms=1)
    sizes: list[int] = []
    forward = e._forward

    def spy(ids, mask, pos, cache):
        sizes.append(ids.shape[0])
        return forward(ids, mask, pos, cache)

    e._forward = spy  # type: ignore[method-assign]
    n = 60

    async def late(p: str, delay: float):
        await asyncio.sleep(delay)
        return await e.generate(e.tokenize(p), SamplingParams(max_tokens=n))

    try:
        first = asyncio.ensure_future(late(PROMPTS[0], 0))
        while not sizes:  # the first batch is running
            await asyncio.sleep(0.001)
        res = await asyncio.gather(first, late(PROMPTS[2], 0), late(PROMPTS[3], 0.01))
    finally:
        await e.stop()
    assert max(sizes) > 1, "late requests should have joined the running batch"
    assert e.batches_run == 1
    for p, r in zip((PROMPTS[0], PROMPTS[2], PROMPTS[3]), res, strict=True):
        assert r.token_ids == reference(tiny_lm, p, n), p


async def test_stop_string_truncates_and_reports(tiny_lm) -> None:
    e = await _engine(tiny_lm)
    try:
        ids = e.tokenize(PROMPTS[1])
        full = await e.generate(ids, SamplingParams(max_tokens=16))
        text = full.text
        k = next(i for i in range(1, len(text) - 1) if "\ufffd" not in text[i:i + 2])
        stop = text[k:k + 2]
        cut = await e.generate(ids, SamplingParams(max_tokens=16, stop=("never-there", stop)))
    finally:
        await e.stop()
    assert cut.finish_reason == "stop" and cut.stop_reason == stop
    assert cut.text == text[: text.find(stop)]
    assert cut.completion_tokens < full.completion_tokens


async def test_seeded_sampling_is_reproducible_whatever_the_batch(tiny_lm) -> None:
    e = await _engine(tiny_lm)
    try:
        ids = e.tokenize(PROMPTS[0])
        sp = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, seed=7)
        alone = await e.generate(ids, sp)
        others = [e.generate(e.tokenize(p), SamplingParams(max_tokens=16, temperature=1.0)) for p in PROMPTS]
        together, *_ = await asyncio.gather(e.generate(ids, sp), *others)
        other_seed = await e.generate(ids, SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, seed=8))
    finally:
        await e.stop()
    assert alone.token_ids == together.token_ids
    assert other_seed.token_ids != alone.token_ids


async def test_stream_deltas_add_up_to_final_text(tiny_lm) -> None:
    e = await _engine(tiny_lm)
    try:
        ids = e.tokenize(PROMPTS[0])
        deltas, final = [], None
        async for item in e.stream(ids, SamplingParams(max_tokens=10)):
            if isinstance(item, str):
                deltas.append(item)
            else:
                final = item
        plain = await e.generate(ids, SamplingParams(max_tokens=10))
    finally:
        await e.stop()
    assert final is not None and final.token_ids == plain.token_ids
    assert "".join(deltas) == final.text == plain.text
    assert len(deltas) > 1


async def test_bounded_queue_rejects_when_full(tiny_lm) -> None:
    e = await _engine(tiny_lm, max_queue=2, max_batch_size=1)
    try:
        ids = e.tokenize("hi")
        a = e.submit(ids, SamplingParams(max_tokens=4))
        b = e.submit(ids, SamplingParams(max_tokens=4))
        with pytest.raises(QueueFull, match="queue full"):
            e.submit(ids, SamplingParams(max_tokens=4))
        await asyncio.gather(a.future, b.future)  # the accepted ones still finish
        e.submit(ids, SamplingParams(max_tokens=1))  # room again
    finally:
        await e.stop()


async def test_timeout_then_engine_keeps_serving(tiny_lm) -> None:
    e = await _engine(tiny_lm)
    try:
        ids = e.tokenize(PROMPTS[2])
        with pytest.raises(GenerationTimeout, match="did not finish"):
            await e.generate(ids, SamplingParams(max_tokens=500), timeout=0.05)
        ok = await asyncio.wait_for(e.generate(ids, SamplingParams(max_tokens=3)), 30)
    finally:
        await e.stop()
    assert ok.completion_tokens == 3
