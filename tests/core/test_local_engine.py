"""bridgex.generation.local: batched greedy completions with each demonstration block computed once must give
every prompt the answer it gets alone, and the answers the vLLM worker gives for the same weights."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from bridgex.generation.client import GenerationClient
from bridgex.generation.local import LocalEngine

BLOCK_A = 'English:"water"→Français:"eau"\nEnglish:"house"→Français:"maison"\n'
BLOCK_B = 'Deutsch:"Buch"→日本語:"本"\n'
QUERIES = ['English:"tree"→Français:', 'English:"sun and moon"→Français:', 'English:"a"→Français:', "English:"]
PROMPTS = [BLOCK_A + q for q in QUERIES] + [BLOCK_B + q for q in QUERIES] + ["no newline at all →", "Wasser"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, tok


def alone(model, tok, prompt: str, max_tokens: int, stop: tuple[str, ...] = ("\n",)) -> tuple[str, str, int]:
    """(text, finish_reason, tokens) of one prompt, greedy, recomputed whole at every step: no cache, no batch."""
    ids = tok(prompt)["input_ids"]
    out: list[int] = []
    eos = {tok.eos_token_id, model.generation_config.eos_token_id} - {None}
    with torch.inference_mode():
        while True:
            nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(nxt)
            if nxt in eos:
                return tok.decode(out, skip_special_tokens=True), "stop", len(out)
            text = tok.decode(out, skip_special_tokens=True)
            cuts = [text.find(s) for s in stop if s in text]
            if cuts:
                return text[: min(cuts)], "stop", len(out)
            if len(out) >= max_tokens:
                return text, "length", len(out)


async def ask_all(engine: LocalEngine, prompts: list[str], max_tokens: int, stop=("\n",)) -> list:
    return await asyncio.gather(*(engine.complete(p, max_tokens=max_tokens, stop=stop) for p in prompts))


def test_batched_answers_are_each_prompts_own_greedy_decode(tiny) -> None:
    model, tok = tiny
    engine = LocalEngine(model, tok, max_batch=3)  # several batches per demonstration block
    got = asyncio.run(ask_all(engine, PROMPTS, 8))
    for p, c in zip(PROMPTS, got, strict=True):
        text, reason, n = alone(model, tok, p, 8)
        assert (c.text, c.finish_reason, c.usage.completion_tokens) == (text, reason, n), p
        assert c.usage.prompt_tokens == len(tok(p)["input_ids"])
    assert engine.stats.requests == len(PROMPTS)


def test_blocks_share_a_batch_and_answer_as_apart(tiny) -> None:
    """Rows of different demonstration blocks in one batch (each block's KV padded to the longest) answer as
    batches of one block each, in fewer forward passes."""
    model, tok = tiny
    mixed, apart = LocalEngine(model, tok, max_batch=64), LocalEngine(model, tok, max_batch=64, mix_blocks=False)
    a = asyncio.run(ask_all(mixed, PROMPTS, 6))
    b = asyncio.run(ask_all(apart, PROMPTS, 6))
    assert [(c.text, c.finish_reason) for c in a] == [(c.text, c.finish_reason) for c in b]
    assert mixed.stats.forwards < apart.stats.forwards


def test_stop_strings_and_length(tiny) -> None:
    model, tok = tiny
    prompt = BLOCK_A + QUERIES[0]
    whole, _, _ = alone(model, tok, prompt, 12, stop=())
    assert len(whole) >= 3, whole
    stop = whole[2]  # a character the greedy continuation is known to reach
    engine = LocalEngine(model, tok)
    c = asyncio.run(engine.complete(prompt, max_tokens=12, stop=(stop,)))
    assert c.finish_reason == "stop" and c.text == whole[: whole.find(stop)]
    c = asyncio.run(engine.complete(prompt, max_tokens=2, stop=()))
    assert (c.text, c.finish_reason, c.usage.completion_tokens) == alone(model, tok, prompt, 2, stop=())
    assert not c.finished and whole.startswith(c.text.rstrip("\ufffd"))


def test_each_demonstration_block_is_computed_once(tiny) -> None:
    model, tok = tiny
    engine = LocalEngine(model, tok, max_batch=64)
    prompts = [BLOCK_A + q for q in QUERIES] + [BLOCK_B + q for q in QUERIES]
    asyncio.run(ask_all(engine, prompts, 4))
    asyncio.run(ask_all(engine, prompts, 4))  # a second event loop: the blocks are still there
    st = engine.stats
    assert (st.prefix_misses, st.requests) == (2, 16)
    blocks = sum(len(tok(b)["input_ids"]) for b in (BLOCK_A, BLOCK_B))
    queries = sum(len(tok(p)["input_ids"]) for p in prompts) - 4 * blocks
    assert st.computed_prompt_tokens == blocks + 2 * queries
    assert st.prompt_tokens == 2 * sum(len(tok(p)["input_ids"]) for p in prompts)
    engine.clear_prefixes()
    asyncio.run(ask_all(engine, prompts[:1], 2))
    assert engine.stats.prefix_misses == 3


def test_refuses_what_it_cannot_do(tiny) -> None:
    model, tok = tiny
    engine = LocalEngine(model, tok)
    for kwargs in ({"temperature": 0.7}, {"top_p": 0.9}, {"logprobs": 2}, {"max_tokens": 0}):
        with pytest.raises(ValueError):
            asyncio.run(engine.complete("x", **kwargs))
    with pytest.raises(ValueError):
        LocalEngine(model, tok, max_batch=0)


def test_a_cancelled_request_leaves_the_others_their_answers(tiny) -> None:
    model, tok = tiny
    engine = LocalEngine(model, tok, max_batch=4)

    async def go() -> list:
        tasks = [asyncio.ensure_future(engine.complete(p, max_tokens=6)) for p in PROMPTS]
        await asyncio.sleep(0)
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    got = asyncio.run(go())
    assert isinstance(got[1], asyncio.CancelledError)
    for i, (p, c) in enumerate(zip(PROMPTS, got, strict=True)):
        if i != 1:
            assert c.text == alone(model, tok, p, 6)[0]


@pytest.mark.integration
def test_answers_equal_the_vllm_workers_for_the_same_weights(tiny, gen_worker) -> None:
    """The same tiny weights in fp32, served by vLLM and decoded here: the same greedy completion, prompt by prompt."""
    model, tok = tiny
    prompts = [b + f'English:"{w}"→Français:' for b in (BLOCK_A, BLOCK_B) for w in ("tree", "sun", "bread", "x y z")]

    async def go() -> tuple[list, list]:
        async with GenerationClient(gen_worker[1], timeout=60) as client:
            served = await asyncio.gather(*(client.complete(p, max_tokens=8) for p in prompts))
        local = await ask_all(LocalEngine(model, tok, max_batch=5), prompts, 8)
        return served, local

    served, local = asyncio.run(go())
    assert [(c.text, c.finish_reason) for c in local] == [(c.text, c.finish_reason) for c in served]
