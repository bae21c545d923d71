"""Confidence, alternatives and streaming of /translate (issue 23 items 2 and 5), on the real stack: the
gateway, the vLLM worker (tiny random model: its answers are nonsense but deterministic) and Redis."""

from __future__ import annotations

import json
import re
import time

import httpx
from bridgex.prompts import normalize_word

from tests.api.conftest import Stack, T


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        event = re.search(r"^event: (.+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        assert event and data, block
        out.append((event.group(1), json.loads(data.group(1))))
    return out


def _worker_counts(worker: str) -> tuple[float, float]:
    """(requests running, requests finished by any reason) on the vLLM worker."""
    running = finished = 0.0
    for line in httpx.get(f"{worker}/metrics", timeout=10).text.splitlines():
        if line.startswith("vllm:num_requests_running{"):
            running += float(line.rsplit(" ", 1)[1])
        elif line.startswith("vllm:request_success_total{"):
            finished += float(line.rsplit(" ", 1)[1])
    return running, finished


def test_confidence_and_distinct_alternatives(stack: Stack) -> None:
    body = {"text": "water", "source": "en", "target": "fr", "bridge": "none", "k_shot": 0, "alternatives": 4}
    with stack.client() as c:
        r = c.post("/translate", headers=T, json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["translation"], out  # the tiny model always says something here
        assert 0.0 < out["confidence"] <= 1.0
        alts = out["alternatives"]
        assert 1 <= len(alts) <= 4 and alts[0] == {"translation": out["translation"], "confidence": out["confidence"]}
        keys = [normalize_word(a["translation"]) for a in alts]
        assert len(set(keys)) == len(keys), alts
        assert all(0.0 <= a["confidence"] <= 1.0 for a in alts[1:])
        if len(alts) < 4:
            assert any("distinct answers" in w for w in out["warnings"]), out
        # deterministic, and the plain request gets the same answer and confidence without alternatives
        assert c.post("/translate", headers=T, json=body).json()["alternatives"] == alts
        plain = c.post("/translate", headers=T, json={**body, "alternatives": None}).json()
        assert plain["alternatives"] is None and plain["translation"] == out["translation"]
        assert plain["confidence"] == out["confidence"]
        # a bridged chain: the final step's confidence
        bridged = c.post("/translate", headers=T, json={**body, "bridge": "de", "alternatives": 2}).json()
        assert bridged["bridge"] == "de" and bridged["alternatives"][0]["translation"] == bridged["translation"]
        too_many = c.post("/translate", headers=T, json={**body, "alternatives": 6})
        assert too_many.status_code == 422 and "alternatives" in too_many.text


def test_stream_matches_the_plain_answer(stack: Stack) -> None:
    base = {"source": "en", "target": "fr", "bridge": "de", "task": "text", "k_shot": 0}
    with stack.client() as c:
        for text in ("the water is cold", "a house by the sea", "we eat bread", "the red star", "snow falls"):
            body = {**base, "text": text}
            plain = c.post("/translate", headers=T, json=body).json()
            if plain["translation"] and plain["bridge"] == "de":  # the tiny model says something for most
                break
        else:
            raise AssertionError("the tiny model produced no bridged text answer for any sentence")
        r = c.post("/translate", headers=T, json={**body, "stream": True})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
        events = _events(r.text)
        names = [e for e, _ in events]
        assert names[0] == "bridge" and names[-1] == "done" and set(names) <= {"bridge", "delta", "done"}, names
        assert events[0][1] == {"bridge": plain["bridge"], "bridge_text": plain["bridge_text"]}
        done = events[-1][1]
        assert done["translation"] == plain["translation"] and done["bridge"] == plain["bridge"] == "de"
        streamed = "".join(d["text"] for e, d in events if e == "delta")
        assert done["translation"].startswith(streamed) and streamed, (streamed, done["translation"])
        assert done["timings"]["target_step_ms"] > 0 and done["request_id"]
        # what does not combine is refused before anything is streamed
        word = c.post("/translate", headers=T, json={**body, "task": "word", "text": "water", "stream": True})
        assert word.status_code == 422 and "task=text" in word.json()["message"]
        alts = c.post("/translate", headers=T, json={**body, "stream": True, "alternatives": 2})
        assert alts.status_code == 422 and "alternatives" in alts.json()["message"]
        batch = c.post("/translate/batch", headers=T, json={"items": [{**body, "stream": True}]})
        assert batch.status_code == 422 and "stream" in batch.text


def test_disconnect_cancels_the_generation(stack: Stack) -> None:
    """A client that goes away mid-stream: the worker stops the request (vLLM aborts it: it is no longer
    running, and it never finishes, which a generation left to run to max_tokens would)."""
    body = {
        "text": "All human beings are born free and equal in dignity and rights " * 3,
        "source": "en",
        "target": "fr",
        "bridge": "none",
        "task": "text",
        "k_shot": 0,
        "max_tokens": 512,
    }
    with httpx.Client(base_url=stack.api, timeout=60) as c:
        _, before = _worker_counts(stack.worker)
        plain = c.post("/translate", headers=T, json=body)  # the same generation, left to finish
        assert plain.status_code == 200
        _, after_plain = _worker_counts(stack.worker)
        assert after_plain == before + 1
        with c.stream("POST", "/translate", headers=T, json={**body, "stream": True}) as r:
            assert r.status_code == 200
            assert next(r.iter_lines()) == "event: delta"  # the stream started; now hang up
    deadline = time.monotonic() + 30
    while _worker_counts(stack.worker)[0] > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    running, finished = _worker_counts(stack.worker)
    assert running == 0, "the worker went on generating for a client that left"
    assert finished == after_plain, "the streamed generation ran to its end instead of being aborted"
