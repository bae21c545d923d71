"""Language detection through the real stack (redis-server, Celery analyzer, vLLM worker on the tiny random
model, uvicorn gateway): POST /detect and `source: "auto"` on /translate and /translate/batch. The model's
translations are garbage; these tests assert what the gateway decides, never translation quality."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api.conftest import Stack, T

DE = "Alle Menschen sind frei und gleich an Würde und Rechten geboren."
EN = "All human beings are born free and equal in dignity and rights."
FI = "Kaikki ihmiset syntyvät vapaina ja tasavertaisina arvoltaan ja oikeuksiltaan."
NO_SCOPE = {"Authorization": "Bearer k-jobs-only"}

pytestmark = pytest.mark.integration


def tr(text: str, target: str, *, source: str = "auto", bridge: str = "none", task: str = "text") -> dict[str, Any]:
    return {"text": text, "source": source, "target": target, "bridge": bridge, "task": task, "max_tokens": 8}


def error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code, body
    return body


def test_detect_answers_language_confidence_and_candidates(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post("/detect", json={"text": DE}, headers=T)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["language"] == "de" and out["confidence"] > 0.9 and out["reliable"] is True
        cands = out["candidates"]
        assert 1 <= len(cands) <= 3 and cands[0] == {"language": "de", "confidence": out["confidence"]}
        assert [x["confidence"] for x in cands] == sorted((x["confidence"] for x in cands), reverse=True)
        assert all(0 <= x["confidence"] <= 1 for x in cands) and sum(x["confidence"] for x in cands) <= 1.0001

        # a word shared by es, pt and it: answered, but not reliable enough for source=auto
        out = c.post("/detect", json={"text": "casa"}, headers=T).json()
        assert out["reliable"] is False and {x["language"] for x in out["candidates"]} >= {"es", "pt"}

        body = error(c.post("/detect", json={"text": "12345"}, headers=T), 422, "language_undetermined")
        assert "no language detected" in body["message"]
        error(c.post("/detect", json={"text": " \u200b "}, headers=T), 422, "invalid_request")


def test_detect_needs_the_translate_scope(stack: Stack) -> None:
    with stack.client() as c:
        assert c.post("/detect", json={"text": DE}).status_code == 401
        assert c.post("/detect", json={"text": DE}, headers={"Authorization": "Bearer nope"}).status_code == 401
        r = c.post("/detect", json={"text": DE}, headers=NO_SCOPE)
        assert r.status_code == 403 and "translate" in r.json()["message"]
        assert c.post("/detect", json={"text": DE}, headers={"X-API-Key": "k-analyze"}).status_code == 200
    schema = httpx.get(f"{stack.api}/openapi.json").json()
    assert "/detect" in schema["paths"]


def test_translate_auto_on_a_sentence_and_on_a_word(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post("/translate", json=tr(DE, "fr"), headers=T)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["detected_source"] == "de" and out["detection_confidence"] > 0.9

        r = c.post("/translate", json=tr("Straße", "en", task="word"), headers=T)
        assert r.status_code == 200, r.text
        assert r.json()["detected_source"] == "de" and r.json()["detection_confidence"] >= 0.6

        r = c.post("/translate", json=tr("kiitos", "en", task="word"), headers=T)  # statistical, not a rule
        assert r.status_code == 200, r.text
        assert r.json()["detected_source"] == "fi"

        # an explicit source is not detected
        r = c.post("/translate", json=tr(DE, "fr", source="de"), headers=T)
        assert r.status_code == 200, r.text
        assert r.json()["detected_source"] is None and r.json()["detection_confidence"] is None


def test_ambiguous_input_is_a_422_listing_candidates(stack: Stack) -> None:
    with stack.client() as c:
        for text, expected in (("casa", {"es", "pt"}), ("a", set()), ("学校", {"zh", "ja"})):
            body = error(
                c.post("/translate", json=tr(text, "en", task="word"), headers=T), 422, "language_undetermined"
            )
            cands = body["details"]["candidates"]
            assert cands and all(x["confidence"] < body["details"]["min_confidence"] for x in cands[:1])
            assert expected <= {x["language"] for x in cands}, cands
            for x in cands:  # each candidate with its confidence, in the message too
                assert f"{x['language']} {x['confidence']:.2f}" in body["message"]
            assert "send `source` explicitly" in body["message"]
        body = error(c.post("/translate", json=tr("12345", "en"), headers=T), 422, "language_undetermined")
        assert body["details"]["candidates"] == []


def test_text_already_in_the_target_language(stack: Stack) -> None:
    with stack.client() as c:
        body = error(c.post("/translate", json=tr(DE, "de"), headers=T), 422, "source_is_target")
        assert "already" in body["message"] and body["details"]["candidates"][0]["language"] == "de"


def test_bridge_is_checked_against_the_detected_pair(stack: Stack) -> None:
    with stack.client() as c:
        # bridge auto works on the detected pair (en-fr): the cache or the labelled fallback, never "auto"
        # (use_cache false: a miss would enqueue an en-fr analysis that test_gateway's job lifecycle starts itself)
        r = c.post("/translate", json={**tr(EN, "fr", bridge="auto"), "use_cache": False}, headers=T)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["detected_source"] == "en" and out["bridge_source"] in ("cache", "fallback", "none")
        assert out["bridge"] not in ("en", "fr")
        # an explicit bridge that is the detected source is refused, saying it was detected
        body = error(c.post("/translate", json=tr(DE, "fr", bridge="de"), headers=T), 422, "invalid_request")
        assert "source language" in body["message"] and "detected" in body["message"]
        r = c.post("/translate", json=tr(DE, "fr", bridge="it"), headers=T)
        assert r.status_code == 200, r.text
        assert r.json()["detected_source"] == "de"


def test_batch_items_each_detect_their_own_source(stack: Stack) -> None:
    items = [tr(DE, "fr"), tr(FI, "en"), tr("casa", "en", task="word"), tr(EN, "fr"), tr(EN, "it", source="en")]
    with stack.client() as c:
        r = c.post("/translate/batch", json={"items": items}, headers=T)
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["ok"] for x in res] == [True, True, False, True, True]
        assert [x["result"]["detected_source"] if x["ok"] else None for x in res] == ["de", "fi", None, "en", None]
        assert res[2]["error"]["status"] == 422 and res[2]["error"]["error"] == "language_undetermined"
        assert r.json()["succeeded"] == 4 and r.json()["failed"] == 1


def test_auto_is_refused_where_it_makes_no_sense(stack: Stack) -> None:
    with stack.client() as c:
        body = error(c.post("/translate", json=tr(DE, "auto", source="de"), headers=T), 422, "invalid_request")
        assert "only as the `source`" in body["message"] and body["details"] == {"field": "target"}
        body = error(
            c.post("/translate", json=tr(DE, "fr", bridge="auto", source="auto") | {"target": "AUTO"}, headers=T),
            422,
            "invalid_request",
        )
        assert "target" in body["message"]
        body = error(c.get("/bridges/auto/fr", headers=T), 422, "invalid_request")
        assert "only as the `source`" in body["message"]
        r = c.post("/analyze", json={"source": "auto", "target": "fr"}, headers={"X-API-Key": "k-analyze"})
        assert r.status_code == 422 and "auto" in r.json()["message"]


def test_stream_detects_before_it_opens(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post("/translate", json={**tr(DE, "fr"), "stream": True}, headers=T)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
        blocks = [b for b in r.text.strip().split("\n\n") if b.startswith("event: done")]
        assert len(blocks) == 1, r.text
        done = json.loads(blocks[0].split("data: ", 1)[1])
        assert done["detected_source"] == "de" and done["detection_confidence"] > 0.9
        # undetermined: the 422 comes before any event
        error(c.post("/translate", json={**tr("casa", "en"), "stream": True}, headers=T), 422, "language_undetermined")
