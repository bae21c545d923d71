"""bridgex.generation.client unit tests on recorded vLLM-style answers and error paths hard to cause on a real server
(respx). The client against the real CPU worker is in tests/worker/test_server.py."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import respx
from bridgex.generation.client import (
    GenerationClient,
    GenerationFailed,
    GenerationRejected,
    SyncGenerationClient,
    WorkerUnavailable,
)

URL = "http://vllm.test:8000"

# Recorded shapes of vLLM's OpenAI server (0.8+): extra fields, stop_reason, usage details, empty /health.
VLLM_COMPLETION = {
    "id": "cmpl-8d6b1f0c2c6e4c5f9c3f0c1d2e3f4a5b",
    "object": "text_completion",
    "created": 1733000000,
    "model": "gemma-3-270m",
    "choices": [
        {
            "index": 0,
            "text": ' "chien"',
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": "\n",
            "prompt_logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 9, "total_tokens": 12, "completion_tokens": 3, "prompt_tokens_details": None},
    "service_tier": None,
    "system_fingerprint": None,
    "kv_transfer_params": None,
}
VLLM_MODELS = {
    "object": "list",
    "data": [
        {
            "id": "gemma-3-270m",
            "object": "model",
            "created": 1733000000,
            "owned_by": "vllm",
            "root": "google/gemma-3-270m",
            "parent": None,
            "max_model_len": 32768,
            "permission": [{"id": "modelperm-1", "object": "model_permission", "allow_sampling": True}],
        }
    ],
}
VLLM_ERROR_NEW = {
    "error": {
        "message": "This model's maximum context length is 32768 tokens.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
}
VLLM_ERROR_OLD = {
    "object": "error",
    "message": "The model `x` does not exist.",
    "type": "NotFoundError",
    "param": None,
    "code": 404,
}


@respx.mock(base_url=URL, assert_all_called=False)
async def test_vllm_completion_shape_and_request_body(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v1/models").respond(200, json=VLLM_MODELS)
    route = respx_mock.post("/v1/completions").respond(200, json=VLLM_COMPLETION)
    async with GenerationClient(URL) as c:
        out = await c.complete('English:"dog"→Français:', request_id="rid-1")
    assert out.text == ' "chien"' and out.finish_reason == "stop" and out.stop_reason == "\n"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (9, 3, 12)
    sent = route.calls.last.request
    assert sent.headers["x-request-id"] == "rid-1"
    body = json.loads(sent.content)
    assert body["model"] == "gemma-3-270m"  # resolved from /v1/models when not given
    assert body["temperature"] == 0.0 and body["stop"] == ["\n"]
    assert body["n"] == 1 and body["max_tokens"] == 16


@respx.mock(base_url=URL)
async def test_vllm_health_empty_body_and_models(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/health").respond(200, content=b"")
    respx_mock.get("/v1/models").respond(200, json=VLLM_MODELS)
    async with GenerationClient(URL, model="m") as c:
        assert await c.health() is True
        assert await c.models() == ["gemma-3-270m"]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, VLLM_ERROR_NEW, "maximum context length"),
        (404, VLLM_ERROR_OLD, "does not exist"),
        (422, {"detail": [{"msg": "field required"}]}, "field required"),
    ],
)
async def test_4xx_rejected_at_once_with_message(status: int, body: dict, message: str) -> None:
    with respx.mock(base_url=URL) as m:
        route = m.post("/v1/completions").respond(status, json=body)
        async with GenerationClient(URL, model="m", backoff=0.01) as c:
            with pytest.raises(GenerationRejected) as ei:
                await c.complete("x")
    assert ei.value.status == status and message in ei.value.message
    assert route.call_count == 1  # no retry on the caller's mistakes


async def test_503_retried_then_succeeds() -> None:
    with respx.mock(base_url=URL) as m:
        route = m.post("/v1/completions")
        route.side_effect = [
            httpx.Response(503, json={"error": {"message": "loading"}}),
            httpx.Response(200, json=VLLM_COMPLETION),
        ]
        async with GenerationClient(URL, model="m", retries=2, backoff=0.01) as c:
            assert (await c.complete("x")).text == ' "chien"'
    assert route.call_count == 2


async def test_503_exhausts_retries_as_unavailable() -> None:
    with respx.mock(base_url=URL) as m:
        route = m.post("/v1/completions").respond(503, json={"error": {"message": "engine dead"}})
        async with GenerationClient(URL, model="m", retries=2, backoff=0.01) as c:
            with pytest.raises(WorkerUnavailable, match=r"engine dead.*3 attempts"):
                await c.complete("x")
    assert route.call_count == 3


async def test_429_honours_retry_after() -> None:
    with respx.mock(base_url=URL) as m:
        route = m.post("/v1/completions")
        busy = httpx.Response(429, headers={"Retry-After": "0.3"}, json={"error": {"message": "busy"}})
        route.side_effect = [busy, httpx.Response(200, json=VLLM_COMPLETION)]
        async with GenerationClient(URL, model="m", retries=2, backoff=0.01) as c:
            t0 = time.perf_counter()
            await c.complete("x")
            assert time.perf_counter() - t0 >= 0.3
    assert route.call_count == 2


async def test_429_with_unreasonable_retry_after_is_rejected() -> None:
    with respx.mock(base_url=URL) as m:
        route = m.post("/v1/completions").respond(
            429, headers={"Retry-After": "3600"}, json={"error": {"message": "queue full"}}
        )
        async with GenerationClient(URL, model="m", retries=2, backoff=0.01) as c:
            with pytest.raises(GenerationRejected) as ei:
                await c.complete("x")
    assert ei.value.status == 429 and route.call_count == 1


@pytest.mark.parametrize("status", [500, 424, 504])
async def test_5xx_and_424_are_generation_failed(status: int) -> None:
    with respx.mock(base_url=URL) as m:
        m.post("/v1/completions").respond(status, json={"error": {"message": "boom"}})
        async with GenerationClient(URL, model="m", backoff=0.01) as c:
            with pytest.raises(GenerationFailed, match="boom"):
                await c.complete("x")


async def test_read_timeout_is_failed_not_retried() -> None:
    with respx.mock(base_url=URL) as m:
        route = m.post("/v1/completions").mock(side_effect=httpx.ReadTimeout("slow"))
        async with GenerationClient(URL, model="m", timeout=1, backoff=0.01) as c:
            with pytest.raises(GenerationFailed, match="timed out"):
                await c.complete("x")
    assert route.call_count == 1


async def test_malformed_answer_is_failed() -> None:
    with respx.mock(base_url=URL) as m:
        m.post("/v1/completions").respond(200, json={"choices": []})
        async with GenerationClient(URL, model="m") as c:
            with pytest.raises(GenerationFailed, match="malformed"):
                await c.complete("x")


async def test_connection_refused_is_unavailable_after_retries() -> None:
    from tests.support import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with GenerationClient(url, model="m", retries=1, backoff=0.01) as c:
        assert await c.health() is False
        with pytest.raises(WorkerUnavailable, match="cannot reach"):
            await c.complete("x")


async def test_complete_many_keeps_order_and_request_ids() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["x-request-id"])
        prompt = json.loads(request.content)["prompt"]
        return httpx.Response(
            200, json={**VLLM_COMPLETION, "choices": [{**VLLM_COMPLETION["choices"][0], "text": prompt.upper()}]}
        )

    with respx.mock(base_url=URL) as m:
        m.post("/v1/completions").mock(side_effect=answer)
        async with GenerationClient(URL, model="m", concurrency=3) as c:
            outs = await c.complete_many([f"p{i}" for i in range(7)], request_id="job")
    assert [o.text for o in outs] == [f"P{i}" for i in range(7)]
    assert sorted(seen) == sorted(f"job-{i}" for i in range(7))


def test_sync_wrapper() -> None:
    with respx.mock(base_url=URL) as m:
        m.post("/v1/completions").respond(200, json=VLLM_COMPLETION)
        out = SyncGenerationClient(URL, model="m").complete("x", max_tokens=3)
    assert out.text == ' "chien"'
