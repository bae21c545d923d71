"""Misbehaving clients against the real generation worker (vLLM behind services.worker.guard, key required).

Each attack is sent together with ordinary requests from other clients (asyncio.gather over one
httpx.AsyncClient): the attack gets its exact refusal, and the others are still answered normally, so one bad
caller can neither fail nor stall the rest. The only timing bound is the liveness one: /health stays under the
k8s probe timeout (5 s) while oversized bodies are being refused.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import WH
from tests.support import Service

pytestmark = pytest.mark.integration

MAX_SEQUENCES = 8  # services.worker.guard.DEFAULT_MAX_PROMPTS (the launcher's default)
LIVENESS_TIMEOUT_S = 5.0  # deploy/base/worker.yaml livenessProbe timeoutSeconds
TRACE_MARKERS = ("Traceback", 'File "', "site-packages")


@pytest.fixture(scope="module")
def worker(keyed_worker: tuple[Service, str]) -> tuple[str, str]:
    """(base url, served model id) of the keyed worker."""
    url = keyed_worker[1]
    r = httpx.get(f"{url}/v1/models", headers=WH, timeout=30)
    assert r.status_code == 200, r.text
    return url, r.json()["data"][0]["id"]


@pytest.fixture
async def client(worker: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=worker[0], timeout=120) as c:
        yield c


def completion(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "prompt": "water", "max_tokens": 4, "temperature": 0, **extra}


async def normal(c: httpx.AsyncClient, model: str) -> httpx.Response:
    """What a well-behaved client sends: one short prompt, with the key."""
    return await c.post("/v1/completions", headers=WH, json=completion(model))


def assert_normal(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    choices = r.json()["choices"]
    assert len(choices) == 1 and isinstance(choices[0]["text"], str)


def assert_json_error(r: httpx.Response, status: int) -> dict[str, Any]:
    """`status` with vLLM's/the guard's OpenAI error shape, and nothing of the server's internals."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    for marker in TRACE_MARKERS:
        assert marker not in r.text, r.text
    return err


# --- the key -------------------------------------------------------------------------------------------------

PROTECTED = [("POST", "/v1/completions"), ("POST", "/tokenize"), ("GET", "/v1/models")]
BAD_AUTH = {
    "no key": {},
    "wrong key": {"Authorization": "Bearer not-the-worker-key"},
    "bearer without token": {"Authorization": "Bearer"},
    "key under another scheme": {"Authorization": "Basic worker-test-key"},
    "key as x-api-key": {"X-API-Key": "worker-test-key"},
}


@pytest.mark.parametrize("auth", list(BAD_AUTH), ids=list(BAD_AUTH))
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
async def test_protected_path_needs_the_key(
    client: httpx.AsyncClient, worker: tuple[str, str], method: str, path: str, auth: str
) -> None:
    model = worker[1]
    body = completion(model) if path == "/v1/completions" else {"model": model, "prompt": "water"}
    kw: dict[str, Any] = {"json": body} if method == "POST" else {}
    refused, *others = await asyncio.gather(
        client.request(method, path, headers=BAD_AUTH[auth], **kw), normal(client, model), normal(client, model)
    )
    err = assert_json_error(refused, 401)
    assert err["type"] == "AuthenticationError"
    assert refused.headers.get("www-authenticate") == "Bearer"
    for r in others:
        assert_normal(r)


@pytest.mark.parametrize("path", ["/health", "/ping", "/version", "/metrics"])
async def test_probes_answer_without_a_key(client: httpx.AsyncClient, worker: tuple[str, str], path: str) -> None:
    probe, other = await asyncio.gather(client.get(path), normal(client, worker[1]))
    assert probe.status_code == 200, probe.text
    assert_normal(other)


# --- values the engine cannot take ---------------------------------------------------------------------------


async def test_seed_beyond_64_bits_is_400_and_others_are_served(
    client: httpx.AsyncClient, worker: tuple[str, str]
) -> None:
    model = worker[1]
    bad, *others = await asyncio.gather(
        client.post("/v1/completions", headers=WH, json=completion(model, seed=2**64)),
        *(normal(client, model) for _ in range(4)),
    )
    err = assert_json_error(bad, 400)
    assert "seed" in json.dumps(err), err
    for r in others:
        assert_normal(r)


@pytest.mark.parametrize("value", [True, 1, "json"], ids=["bool", "int", "str"])
async def test_non_object_structured_outputs_is_a_json_400(
    client: httpx.AsyncClient, worker: tuple[str, str], value: Any
) -> None:
    """Found by test_fuzz: vLLM's completion validator calls `.get` on `structured_outputs` before pydantic
    checks its type, so a non-object answered 500 ("'bool' object has no attribute 'get'")."""
    model = worker[1]
    bad, other = await asyncio.gather(
        client.post("/v1/completions", headers=WH, json=completion(model, structured_outputs=value)),
        normal(client, model),
    )
    assert_json_error(bad, 400)
    assert_normal(other)


@pytest.mark.parametrize("penalty", [-6.5e16, 1e300], ids=["huge negative", "huge positive"])
async def test_beam_search_with_an_extreme_length_penalty_is_a_json_400(
    client: httpx.AsyncClient, worker: tuple[str, str], penalty: float
) -> None:
    """Found by test_fuzz: beam search divides by seq_len ** length_penalty, which underflows to 0 (or overflows)
    for such values, and the engine answered 500 ("float division by zero"). A usual value is still served."""
    model = worker[1]
    beam = {"use_beam_search": True, "n": 2, "max_tokens": 3}
    bad, ok, other = await asyncio.gather(
        client.post("/v1/completions", headers=WH, json=completion(model, length_penalty=penalty, **beam)),
        client.post("/v1/completions", headers=WH, json=completion(model, length_penalty=1.5, **beam)),
        normal(client, model),
    )
    err = assert_json_error(bad, 400)
    assert "length_penalty" in json.dumps(err), err
    assert ok.status_code == 200, ok.text
    assert_normal(other)


REFUSED_BODIES = {
    "seed 2**64": lambda m: json.dumps(completion(m, seed=2**64)).encode(),
    "200 prompts": lambda m: json.dumps(completion(m, prompt=["w"] * 200)).encode(),
    "lone surrogate": lambda m: b'{"model": %s, "prompt": "\\ud800"}' % json.dumps(m).encode(),
    "malformed json": lambda m: b'{"model": %s, "prompt": ' % json.dumps(m).encode(),
    "structured_outputs true": lambda m: json.dumps(completion(m, structured_outputs=True)).encode(),
}


@pytest.mark.parametrize("attack", list(REFUSED_BODIES))
async def test_a_refused_request_leaves_its_connection_usable(worker: tuple[str, str], attack: str) -> None:
    """One keep-alive connection: the refusal, then an ordinary request on the same connection is served
    (a server that answers and then drops the connection breaks the client's next, unrelated request)."""
    url, model = worker
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=1)) as one:
        bad = await one.post(
            "/v1/completions", headers={**WH, "Content-Type": "application/json"}, content=REFUSED_BODIES[attack](model)
        )
        try:
            after = await normal(one, model)
        except httpx.TransportError as exc:
            pytest.fail(f"after answering {bad.status_code} the worker dropped the connection: {exc!r}")
    assert_json_error(bad, 400)
    assert_normal(after)


# --- sequences per request (the fairness cap) ---------------------------------------------------------------


async def test_200_prompts_are_refused_and_a_concurrent_request_is_served(
    client: httpx.AsyncClient, worker: tuple[str, str]
) -> None:
    model = worker[1]
    body = completion(model, prompt=[f"word {i}" for i in range(200)])
    bad, other = await asyncio.gather(client.post("/v1/completions", headers=WH, json=body), normal(client, model))
    err = assert_json_error(bad, 400)
    assert f"at most {MAX_SEQUENCES} per request" in err["message"], err
    assert "200 sequences" in err["message"], err
    assert_normal(other)


async def test_n_500_is_refused_and_a_concurrent_request_is_served(
    client: httpx.AsyncClient, worker: tuple[str, str]
) -> None:
    model = worker[1]
    bad, other = await asyncio.gather(
        client.post("/v1/completions", headers=WH, json=completion(model, n=500)), normal(client, model)
    )
    err = assert_json_error(bad, 400)
    assert f"at most {MAX_SEQUENCES} per request" in err["message"], err
    assert "500 sequences" in err["message"], err
    assert_normal(other)


async def test_the_limit_itself_is_allowed(client: httpx.AsyncClient, worker: tuple[str, str]) -> None:
    model = worker[1]
    body = completion(model, prompt=[f"word {i}" for i in range(MAX_SEQUENCES)])
    full, other = await asyncio.gather(client.post("/v1/completions", headers=WH, json=body), normal(client, model))
    assert full.status_code == 200, full.text
    choices = full.json()["choices"]
    assert sorted(c["index"] for c in choices) == list(range(MAX_SEQUENCES))
    assert all(isinstance(c["text"], str) for c in choices)
    assert_normal(other)


# --- oversized bodies, while the liveness probe keeps polling ------------------------------------------------


async def _poll_health(c: httpx.AsyncClient, done: asyncio.Event, answers: list[tuple[int, float]]) -> None:
    """GET /health (no key, like the kubelet) until `done`, and at least 5 times."""
    while not done.is_set() or len(answers) < 5:
        t0 = time.perf_counter()
        r = await c.get("/health", timeout=30)
        answers.append((r.status_code, time.perf_counter() - t0))
        await asyncio.sleep(0.05)


async def _with_liveness(c: httpx.AsyncClient, work: Any) -> tuple[list[Any], list[tuple[int, float]]]:
    done = asyncio.Event()
    answers: list[tuple[int, float]] = []
    poller = asyncio.create_task(_poll_health(c, done, answers))
    try:
        results = await work
    finally:
        done.set()
        await poller
    return results, answers


def assert_alive(answers: list[tuple[int, float]]) -> None:
    assert answers and all(status == 200 for status, _ in answers), answers
    slowest = max(t for _, t in answers)
    assert slowest < LIVENESS_TIMEOUT_S, f"slowest /health {slowest:.2f}s of {len(answers)}"


async def test_2mb_prompts_are_413_while_health_stays_live(client: httpx.AsyncClient, worker: tuple[str, str]) -> None:
    model = worker[1]
    big = completion(model, prompt="water " * (2 * 1024 * 1024 // 6))
    assert len(json.dumps(big)) > 2 * 1024 * 1024 - 1024
    async with httpx.AsyncClient(base_url=worker[0], timeout=120) as probe_client:
        results, answers = await _with_liveness(
            probe_client,
            asyncio.gather(
                *(client.post("/v1/completions", headers=WH, json=big) for _ in range(3)), normal(client, model)
            ),
        )
    *refused, other = results
    for r in refused:
        err = assert_json_error(r, 413)
        assert "262144" in err["message"], err
    assert_normal(other)
    assert_alive(answers)


async def test_2mb_chunked_body_without_length_is_413(client: httpx.AsyncClient, worker: tuple[str, str]) -> None:
    """No Content-Length to refuse up front: the guard counts the streamed body and stops at the cap."""
    model = worker[1]

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": %s, "max_tokens": 4, "prompt": "' % json.dumps(model).encode()
        for _ in range(32):
            yield b"water " * 10923  # 64 KiB
        yield b'"}'

    async with httpx.AsyncClient(base_url=worker[0], timeout=120) as probe_client:
        (refused, other), answers = await _with_liveness(
            probe_client,
            asyncio.gather(
                client.post("/v1/completions", headers={**WH, "Content-Type": "application/json"}, content=chunks()),
                normal(client, model),
            ),
        )
    assert "content-length" not in refused.request.headers
    assert_json_error(refused, 413)
    assert_normal(other)
    assert_alive(answers)


# --- bodies that are not valid JSON text ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/completions", "/tokenize"])
async def test_lone_surrogate_prompt_is_a_json_4xx(
    client: httpx.AsyncClient, worker: tuple[str, str], path: str
) -> None:
    """`\\ud800` is valid JSON syntax but no Unicode text: refused as bad input, not a plain-text 500."""
    model = worker[1]
    raw = b'{"model": %s, "prompt": "\\ud800", "max_tokens": 4}' % json.dumps(model).encode()
    bad, other = await asyncio.gather(
        client.post(path, headers={**WH, "Content-Type": "application/json"}, content=raw), normal(client, model)
    )
    assert_json_error(bad, 400)
    assert_normal(other)


@pytest.mark.parametrize(
    "raw",
    [b'{"model": "m", "prompt": ', b"not json", b'{"prompt": "a",}'],
    ids=["truncated", "not-json", "trailing-comma"],
)
@pytest.mark.parametrize("path", ["/v1/completions", "/tokenize"])
async def test_malformed_json_is_a_json_400(
    client: httpx.AsyncClient, worker: tuple[str, str], path: str, raw: bytes
) -> None:
    bad, other = await asyncio.gather(
        client.post(path, headers={**WH, "Content-Type": "application/json"}, content=raw), normal(client, worker[1])
    )
    assert_json_error(bad, 400)
    assert_normal(other)
