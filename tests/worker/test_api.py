"""The worker app in-process (TestClient runs the lifespan): OpenAI protocol, errors, SSE, metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from bridgex.settings import Settings
from fastapi.testclient import TestClient

from services.worker.main import create_app


@pytest.fixture(scope="module")
def client(tiny_lm, tiny_model_dir) -> Iterator[TestClient]:
    settings = Settings(model=str(tiny_model_dir), served_model_name="tiny", max_tokens_limit=64,
                        max_model_len=128, batch_wait_ms=2)
    with TestClient(create_app(settings, loaded=tiny_lm)) as c:
        yield c


def _error(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_completion_openai_shape_and_usage(client: TestClient, tiny_lm) -> None:
    r = client.post("/v1/completions", json={"model": "tiny", "prompt": "hello", "max_tokens": 5,
                                             "temperature": 0})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "tiny" and body["id"].startswith("cmpl-")
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] in ("length", "stop")
    n_prompt = len(tiny_lm.tokenizer("hello")["input_ids"])
    assert body["usage"]["prompt_tokens"] == n_prompt
    assert body["usage"]["total_tokens"] == n_prompt + body["usage"]["completion_tokens"]
    assert 1 <= body["usage"]["completion_tokens"] <= 5


def test_prompt_list_gives_one_choice_each_in_order(client: TestClient) -> None:
    one = [client.post("/v1/completions", json={"prompt": p, "max_tokens": 4, "temperature": 0}).json()
           for p in ("a", "bcd efg")]
    both = client.post("/v1/completions", json={"prompt": ["a", "bcd efg"], "max_tokens": 4,
                                                "temperature": 0}).json()
    assert [c["index"] for c in both["choices"]] == [0, 1]
    assert [c["text"] for c in both["choices"]] == [o["choices"][0]["text"] for o in one]
    assert both["usage"]["prompt_tokens"] == sum(o["usage"]["prompt_tokens"] for o in one)


def test_request_id_echoed_or_generated(client: TestClient) -> None:
    r = client.get("/health", headers={"X-Request-Id": "req-123"})
    assert r.headers["x-request-id"] == "req-123"
    r2 = client.get("/health")
    assert len(r2.headers["x-request-id"]) >= 16


def test_models_health_ready(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert models["data"][0]["max_model_len"] == 128
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["generated_tokens"] == 1


@pytest.mark.parametrize(("payload", "status", "param", "words"), [
    ({"prompt": ""}, 400, "prompt", "empty"),
    ({"prompt": ["ok", ""]}, 400, "prompt", "prompt[1]"),
    ({"prompt": []}, 400, "prompt", "empty list"),
    ({"prompt": "x", "max_tokens": 0}, 422, "max_tokens", "greater than or equal to 1"),
    ({"prompt": "x", "max_tokens": -3}, 422, "max_tokens", "greater than or equal to 1"),
    ({"prompt": "x", "max_tokens": 65}, 400, "max_tokens", "limit of 64"),
    ({"prompt": "x " * 130, "max_tokens": 4}, 400, "prompt", "maximum context length is 128"),
    ({"prompt": "x", "n": 2}, 400, "n", "n=1"),
    ({"prompt": "x", "logprobs": 1}, 400, "logprobs", "not supported"),
    ({"prompt": "x", "temperature": 3}, 422, "temperature", "less than or equal to 2"),
    ({"max_tokens": 3}, 422, "prompt", "Field required"),
    ({"prompt": "x", "model": "gpt-4"}, 404, "model", "does not exist"),
])
def test_bad_input_answers_openai_errors(client: TestClient, payload: dict, status: int, param: str,
                                         words: str) -> None:
    r = client.post("/v1/completions", json=payload)
    assert r.status_code == status, r.text
    err = _error(r)
    assert err["param"] == param
    assert words in err["message"]


def test_not_json_is_a_clear_422(client: TestClient) -> None:
    r = client.post("/v1/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert "invalid request" in _error(r)["message"]


def _sse(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def test_stream_sse_matches_non_stream(client: TestClient) -> None:
    req = {"prompt": ["hello", "bcd"], "max_tokens": 6, "temperature": 0}
    plain = client.post("/v1/completions", json=req).json()
    with client.stream("POST", "/v1/completions",
                       json={**req, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.read().decode())
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    texts, finishes = {0: "", 1: ""}, {}
    for c in chunks[:-1]:
        (ch,) = c["choices"]
        texts[ch["index"]] += ch["text"]
        if ch["finish_reason"]:
            finishes[ch["index"]] = ch["finish_reason"]
    assert [texts[0], texts[1]] == [c["text"] for c in plain["choices"]]
    assert finishes == {0: plain["choices"][0]["finish_reason"], 1: plain["choices"][1]["finish_reason"]}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


def test_stream_errors_come_before_the_stream(client: TestClient) -> None:
    r = client.post("/v1/completions", json={"prompt": "", "stream": True})
    assert r.status_code == 400 and _error(r)["param"] == "prompt"


def test_stop_string_in_request(client: TestClient) -> None:
    full = client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 12, "temperature": 0}).json()
    text = full["choices"][0]["text"]
    k = next(i for i in range(1, len(text) - 1) if "\ufffd" not in text[i:i + 2])
    r = client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 12, "temperature": 0,
                                             "stop": text[k:k + 2]}).json()
    assert r["choices"][0]["text"] == text[: text.find(text[k:k + 2])]
    assert r["choices"][0]["finish_reason"] == "stop"


def test_metrics_count_requests_tokens_and_batches(client: TestClient) -> None:
    client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 3, "temperature": 0})
    text = client.get("/metrics").text
    for name in ("bridgex_worker_requests_total", "bridgex_worker_prompt_tokens_total",
                 "bridgex_worker_generated_tokens_total", "bridgex_worker_request_latency_seconds_bucket",
                 "bridgex_worker_batch_size_bucket", "bridgex_worker_queue_depth"):
        assert name in text, name
    line = next(x for x in text.splitlines()
                if x.startswith('bridgex_worker_requests_total{endpoint="/v1/completions",status="200"}'))
    assert float(line.split()[-1]) >= 1
    gen = next(x for x in text.splitlines() if x.startswith("bridgex_worker_generated_tokens_total"))
    assert float(gen.split()[-1]) >= 3


def test_two_apps_have_separate_registries(tiny_lm, tiny_model_dir) -> None:
    a = create_app(Settings(model=str(tiny_model_dir)), loaded=tiny_lm)
    b = create_app(Settings(model=str(tiny_model_dir)), loaded=tiny_lm)
    assert a.state.metrics.registry is not b.state.metrics.registry
