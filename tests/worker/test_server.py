"""The real CPU worker (uvicorn subprocess, tiny random Llama) driven by the real bridgex client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from bridgex.client import GenerationClient, GenerationRejected, WorkerUnavailable

from tests.support import Service, start_worker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    svc, url = start_worker(tiny_model_dir, tmp_path_factory.mktemp("logs"), BRIDGEX_DEVICE="cpu",
                            BRIDGEX_DTYPE="float32", BRIDGEX_BATCH_WAIT_MS="20")
    yield svc, url
    svc.stop()


def greedy_text(lm, prompt: str, n: int, stop: str = "\n") -> str:
    enc = lm.tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = lm.model.generate(**enc, do_sample=False, max_new_tokens=n)
    text = lm.tokenizer.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)
    return text.split(stop)[0] if stop else text


async def test_client_against_real_worker(worker, tiny_model_dir: Path, tiny_lm) -> None:
    _, url = worker
    async with GenerationClient(url) as c:
        assert await c.health() is True
        assert await c.models() == [str(tiny_model_dir)]
        out = await c.complete('English:"water"→Français:', max_tokens=8, request_id="it-rid-1")
    assert out.request_id == "it-rid-1"
    assert out.text == greedy_text(tiny_lm, 'English:"water"→Français:', 8)
    assert out.finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens == len(tiny_lm.tokenizer('English:"water"→Français:')["input_ids"])
    log_text = worker[0].log.read_text(errors="replace")
    assert "request_id=it-rid-1" in log_text


async def test_concurrent_requests_are_batched_and_match_generate(worker, tiny_lm) -> None:
    _, url = worker
    prompts = [f'English:"{w}"→Deutsch:' for w in ("water", "house", "a longer phrase here", "sun", "moon",
                                                    "bread", "tree", "book")]
    async with GenerationClient(url, concurrency=8) as c:
        outs = await c.complete_many(prompts, max_tokens=6, stop=None, request_id="many")
    assert [o.text for o in outs] == [greedy_text(tiny_lm, p, 6, stop="") for p in prompts]
    metrics = httpx.get(f"{url}/metrics").text
    values = {x.split()[0]: float(x.split()[-1]) for x in metrics.splitlines() if x and not x.startswith("#")}
    count, total = values["bridgex_worker_batch_size_count"], values["bridgex_worker_batch_size_sum"]
    assert total / count > 1.0, "concurrent requests should share batches"


async def test_ready_runs_a_generation(worker) -> None:
    _, url = worker
    r = httpx.get(f"{url}/ready", timeout=30)
    assert r.status_code == 200 and r.json()["generated_tokens"] == 1


@pytest.fixture
def tight_worker(tiny_model_dir: Path, tmp_path: Path) -> Iterator[tuple[Service, str]]:
    svc, url = start_worker(tiny_model_dir, tmp_path, BRIDGEX_DEVICE="cpu", BRIDGEX_MAX_QUEUE="1",
                            BRIDGEX_MAX_BATCH_SIZE="1", BRIDGEX_REQUEST_TIMEOUT_S="0.3")
    yield svc, url
    svc.stop()


async def test_overload_429_timeout_504_and_worker_gone(tight_worker) -> None:
    svc, url = tight_worker
    body = {"prompt": "hello there", "max_tokens": 500, "temperature": 0}
    async with httpx.AsyncClient(base_url=url, timeout=30) as h:
        rs = await asyncio.gather(*(h.post("/v1/completions", json=body) for _ in range(6)))
    codes = sorted(r.status_code for r in rs)
    assert 429 in codes, codes
    busy = next(r for r in rs if r.status_code == 429)
    assert busy.headers["retry-after"] == "1" and "queue full" in busy.json()["error"]["message"]
    assert set(codes) <= {200, 429, 504}
    slow = [r for r in rs if r.status_code == 504]
    assert slow and "did not finish within 0.3s" in slow[0].json()["error"]["message"]

    async with GenerationClient(url, retries=0) as c:
        flood = await asyncio.gather(*(c.complete("hello", max_tokens=500, stop=None) for _ in range(6)),
                                     return_exceptions=True)
    assert any(isinstance(e, GenerationRejected) and e.status == 429 for e in flood)

    svc.kill()
    async with GenerationClient(url, retries=1, backoff=0.05) as c:
        assert await c.health() is False
        with pytest.raises(WorkerUnavailable):
            await c.complete("hello")
