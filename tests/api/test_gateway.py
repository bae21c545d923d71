"""The gateway over HTTP against real parts: uvicorn, redis-server, a Celery worker, the CPU generation worker
(tiny random Llama). Expected translations are recomputed through the worker directly with the same prompts.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import re
import time
from typing import Any

import httpx
import pytest
import redis
from bridgex.generation.client import SyncGenerationClient
from bridgex.prompts import parse_sentence, parse_word, sentence_prompt, word_prompt

from tests.api.conftest import ADMIN, MAX_TEXT, A, Stack, T

pytestmark = pytest.mark.integration


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """Value of one sample in /metrics (0 when absent)."""
    text = client.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pat = re.compile(rf"^{re.escape(name)}(\{{([^}}]*)\}})? ([0-9.e+-]+)$", re.M)
    total = 0.0
    for m in pat.finditer(text):
        if not want or all(p in (m.group(2) or "") for p in want.split(",")):
            total += float(m.group(3))
    return total


def wait_job(c: httpx.Client, job_id: str, timeout: float = 150) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = c.get(f"/jobs/{job_id}", headers=ADMIN).json()  # admin: auto-enqueued jobs are not A's
        if rec["state"] in ("succeeded", "failed", "cancelled"):
            return rec
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not finished in {timeout}s: {rec}")


def expected(
    worker: str, task: str, text: str, s: str, t: str, bridge: str | None, max_tokens: int = 16
) -> tuple[str, str | None]:
    """(translation, bridge_text) computed straight through the worker with the project's prompts."""
    gen = SyncGenerationClient(worker, timeout=30)
    prompt, parse = (word_prompt, parse_word) if task == "word" else (sentence_prompt, parse_sentence)
    kw = "bridge_word" if task == "word" else "bridge_text"
    btext = None
    if bridge is not None:
        btext = parse(gen.complete(prompt(text, s, bridge), max_tokens=max_tokens).text) or None
        if not btext:
            bridge = None
    final = prompt(text, s, t, **({"bridge": bridge, kw: btext} if bridge else {}))
    return parse(gen.complete(final, max_tokens=max_tokens).text), btext


# ------------------------------------------------------------------------------------------- basics
def test_health_ready_docs_metrics(stack: Stack) -> None:
    with stack.client() as c:
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/ready")
        assert ready.status_code == 200, ready.text
        assert all(ch["ok"] for ch in ready.json()["checks"].values())
        assert "swagger" in c.get("/docs").text.lower()
        paths = c.get("/openapi.json").json()["paths"]
        for p in (
            "/translate",
            "/translate/batch",
            "/analyze",
            "/jobs/{job_id}",
            "/jobs/{job_id}/cancel",
            "/jobs",
            "/bridges/{source}/{target}",
            "/bridges",
            "/languages",
            "/health",
            "/ready",
        ):
            assert p in paths, p
        langs = c.get("/languages", headers=T).json()["languages"]
        assert [lang["code"] for lang in langs][:3] == ["en", "de", "fr"] and len(langs) == 15
        assert metric(c, "bridgex_api_requests_total", route="/health", status="200") >= 1


def test_request_id_in_and_out(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post(
            "/translate",
            headers={**T, "X-Request-Id": "req-abc.123"},
            json={"text": "water", "source": "en", "target": "fr", "bridge": "none"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "req-abc.123" and r.json()["request_id"] == "req-abc.123"
        r2 = c.get("/health")
        assert re.fullmatch(r"[0-9a-f]{32}", r2.headers["x-request-id"])
        bad = c.get("/health", headers={"X-Request-Id": "no spaces\tor tabs allowed"})
        assert bad.headers["x-request-id"] != "no spaces\tor tabs allowed"
    # passed on to the generation worker: vLLM takes it as its request id and logs it
    log = stack.worker_svc.log.read_text(errors="replace")
    assert "req-abc.123" in log


def test_auth_failures(stack: Stack) -> None:
    body = {"text": "water", "source": "en", "target": "fr", "bridge": "none"}
    with stack.client() as c:
        r = c.post("/translate", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert "API key" in r.json()["message"]
        assert c.post("/translate", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.post("/translate", json=body, headers={"X-API-Key": "k-translat"}).status_code == 401
        r = c.post("/analyze", json={"source": "en", "target": "fr"}, headers=T)
        assert r.status_code == 403 and "analyze" in r.json()["message"]
        assert c.get("/jobs", headers=T).status_code == 403
        assert c.delete("/bridges/en/fr", headers=A).status_code == 403
        assert c.get("/bridges/en/fr", headers={"X-API-Key": "k-translate"}).status_code in (200, 404)
        assert c.get("/jobs", headers=ADMIN).status_code == 200  # admin implies the other scopes
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200  # probes stay open


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"source": "xx-nope", "target": "fr"}, "Paper languages: en, de, fr"),
        ({"source": "en", "target": "qqq"}, "Paper languages"),
        ({"source": "en", "target": "eng"}, "same language"),
        ({"source": "en", "target": "fr", "text": "a" * (MAX_TEXT + 1)}, f"limit is {MAX_TEXT}"),
        ({"source": "en", "target": "fr", "bridge": "en"}, "is the source language"),
        ({"source": "en", "target": "fr", "bridge": "fra"}, "is the target language"),
        ({"source": "en", "target": "fr", "bridge": "zz-bad"}, "bridge: unknown language"),
        ({"source": "en", "target": "fr", "task": "poem"}, "task"),
        ({"source": "en", "target": "fr", "max_tokens": 100000}, "max_tokens"),
        ({"source": "en", "target": "fr", "text": "   "}, "text is empty"),
        ({"source": "en", "target": "fr", "text": None}, "text"),
    ],
)
def test_bad_input_is_422_with_what_to_fix(stack: Stack, body: dict[str, Any], fragment: str) -> None:
    req = {"text": "water", "bridge": "none", **body}
    if req["text"] is None:
        del req["text"]
    with stack.client() as c:
        r = c.post("/translate", json=req, headers=T)
        assert r.status_code == 422, r.text
        assert fragment in r.json()["message"], r.json()
        items = [{"text": "ok", "source": "en", "target": "de"}, req]
        batch = c.post("/translate/batch", json={"items": items}, headers=T)
        if batch.status_code == 422:  # a schema error makes the whole body invalid
            assert fragment in batch.json()["message"] and "items.1" in batch.json()["message"]
        else:  # a semantic one is that item's error; the good item is translated all the same
            out = batch.json()
            assert batch.status_code == 200 and (out["succeeded"], out["failed"]) == (1, 1), out
            first, second = out["results"]
            assert first["ok"] and first["result"]["translation"] is not None and first["index"] == 0
            assert not second["ok"] and second["error"]["status"] == 422
            assert fragment in second["error"]["message"]
    with stack.client() as c:  # the same checks guard /bridges and /analyze
        if body.get("target") == "eng":
            assert c.get("/bridges/en/eng", headers=T).status_code == 422
            r = c.post("/analyze", json={"source": "en", "target": "eng"}, headers=A)
            assert r.status_code == 422 and "same language" in r.json()["message"]


# ------------------------------------------------------------------------------------------- translate
@pytest.mark.parametrize("task", ["word", "text"])
def test_translate_none_and_explicit(stack: Stack, task: str) -> None:
    text = "water" if task == "word" else "All human beings are born free."
    with stack.client() as c:
        # default budget: 16 tokens for a word (a sentence's 128 would only slow the tiny model down here)
        extra = {} if task == "word" else {"max_tokens": 16}
        r = c.post(
            "/translate",
            headers=T,
            json={"text": text, "source": "en", "target": "fr", "bridge": "none", "task": task, **extra},
        )
        assert r.status_code == 200, r.text
        out = r.json()
        want, _ = expected(stack.worker, task, text, "en", "fr", None, 16)
        assert out["translation"] == want
        assert out["bridge"] is None and out["bridge_source"] == "none" and out["bridge_text"] is None
        assert out["cache_key"] is None and out["model"] == stack.env["BRIDGEX_MODEL"]
        assert out["timings"]["total_ms"] > 0

        r = c.post(
            "/translate",
            headers=T,
            json={"text": text, "source": "en", "target": "fr", "bridge": "deu", "task": task, "max_tokens": 8},
        )
        assert r.status_code == 200, r.text
        out = r.json()
        want, btext = expected(stack.worker, task, text, "en", "fr", "de", 8)
        assert out["bridge_text"] == btext and out["translation"] == want
        if btext:  # the bridge step said something: the chain went through it
            assert out["bridge"] == "de" and out["bridge_source"] == "explicit"
            assert [w for w in out["warnings"] if "no answer" not in w] == []
        else:  # it did not: a direct translation, reported as such
            assert out["bridge"] is None and out["bridge_source"] == "none" and out["warnings"]


def test_translate_k_shot_uses_data_dir(stack: Stack) -> None:
    with stack.client() as c:
        r = c.post(
            "/translate",
            headers=T,
            json={"text": "wateren", "source": "en", "target": "fr", "bridge": "de", "k_shot": 2},
        )
        assert r.status_code == 200, r.text
        out = r.json()
        # no data warning (an empty answer of the random model is flagged, and is no data problem)
        assert [w for w in out["warnings"] if "no answer" not in w] == []
        assert ("no answer" in " ".join(out["warnings"])) == (out["translation"] == "")
        assert out["k_shot"] == 2
        r = c.post(
            "/translate",
            headers=T,
            json={"text": "water", "source": "en", "target": "sw", "bridge": "none", "k_shot": 2},
        )
        assert r.status_code == 422 and "k_shot=0" in r.json()["message"]  # data_auto off: not gathered here


def test_translate_batch(stack: Stack) -> None:
    items = [{"text": w, "source": "en", "target": "fr", "bridge": "none"} for w in ("sun", "moon", "tree")]
    with stack.client() as c:
        r = c.post("/translate/batch", json={"items": items}, headers={**T, "X-Request-Id": "batch-1"})
        assert r.status_code == 200, r.text
        assert (r.json()["succeeded"], r.json()["failed"]) == (3, 0)
        res = [x["result"] for x in r.json()["results"]]
        assert [x["request_id"] for x in res] == ["batch-1-0", "batch-1-1", "batch-1-2"]
        for item, x in zip(items, res, strict=True):
            assert x["translation"] == expected(stack.worker, "word", item["text"], "en", "fr", None)[0]
        assert c.post("/translate/batch", json={"items": []}, headers=T).status_code == 422


def test_auto_single_flight_then_cache(stack: Stack) -> None:
    body = {"text": "water", "source": "en", "target": "fi", "bridge": "auto"}
    with stack.client() as c:
        before = metric(c, "bridgex_api_analysis_enqueued_total")
        submits = metric(c, "bridgex_api_analysis_submits_total")
        with cf.ThreadPoolExecutor(20) as pool:
            resps = list(
                pool.map(lambda _: httpx.post(f"{stack.api}/translate", json=body, headers=T, timeout=60), range(20))
            )
        outs = [r.json() for r in resps]
        assert all(r.status_code == 200 for r in resps), [r.text for r in resps if r.status_code != 200]
        # direct until a measured bridge is published; the tiny model's analysis may land inside the burst, so
        # the last few may already be cache hits (never anything else)
        assert "fallback" in {o["bridge_source"] for o in outs} <= {"fallback", "cache"}
        early = [o for o in outs if o["bridge_source"] == "fallback"]
        assert {o["bridge"] for o in early} == {None} and len({o["translation"] for o in early}) == 1
        assert metric(c, "bridgex_api_analysis_enqueued_total") - before == 1
        assert metric(c, "bridgex_api_analysis_submits_total") - submits == 1  # SET NX let one through
        assert not [
            j
            for j in c.get("/jobs", headers=A).json()["jobs"]  # auto's job is not A's to see
            if j["request"]["source"] == "en" and j["request"]["target"] == "fi"
        ]
        jobs = [
            j
            for j in c.get("/jobs", headers=ADMIN).json()["jobs"]
            if j["request"]["source"] == "en" and j["request"]["target"] == "fi"
        ]
        assert len(jobs) == 1
        job_ids = {o["analysis_job"] for o in outs} - {None}
        assert job_ids <= {jobs[0]["id"]}
        rec = wait_job(c, jobs[0]["id"])
        assert rec["state"] == "succeeded", rec
        assert rec["progress"]["percent"] == 100

        r = c.post("/translate", json=body, headers=T)
        out = r.json()
        assert out["bridge_source"] == "cache", out
        ranking = c.get("/bridges/en/fi", headers=T).json()
        # served: the validated choice (the tiny model translates nothing, so no bridge beats direct)
        assert out["bridge"] == ranking["served_bridge"] is None and out["cache_key"] == ranking["cache_key"]
        assert out["bridge_reason"] == ranking["served_reason"] and "dev words" in out["bridge_reason"]
        scores = ranking["validation"]["scores"]
        assert set(scores) == {"none", "de", "it"} and all(v["n"] == 4 for v in scores.values()), scores
        assert out["cache_key"].startswith("bridgex:bridge:")
        assert {x["code"] for x in ranking["ranked"]} == {"de", "it"}
        assert ranking["provenance"]["source"] == "en" and ranking["ranked"][0]["per_layer"]
        matrix = c.get("/bridges", headers=T).json()
        assert {"source": "en", "target": "fi", "served": None}.items() <= next(
            p for p in matrix["pairs"] if p["target"] == "fi"
        ).items()
        assert metric(c, "bridgex_api_analysis_enqueued_total") - before == 1  # a hit enqueues nothing

        # bypassing the cache serves the fallback and enqueues nothing
        r = c.post("/translate", json={**body, "use_cache": False}, headers=T)
        assert r.json()["bridge_source"] == "fallback" and r.json()["analysis_job"] is None

        # invalidate: admin only; then 404 that says how to start an analysis
        assert c.delete("/bridges/en/fi", headers=T).status_code == 403
        assert c.delete("/bridges/en/fi", headers=ADMIN).status_code == 204
        gone = c.get("/bridges/en/fi", headers=T)
        assert gone.status_code == 404 and "POST /analyze" in gone.json()["message"]
        assert c.delete("/bridges/en/fi", headers=ADMIN).status_code == 404
        # the next auto miss recomputes (the old job succeeded, so it is forced)
        again = c.post("/translate", json=body, headers=T).json()
        assert again["bridge_source"] == "fallback" and again["analysis_job"] == jobs[0]["id"]
        assert wait_job(c, jobs[0]["id"])["state"] == "succeeded"
        assert c.post("/translate", json=body, headers=T).json()["bridge_source"] == "cache"


def test_auto_serves_a_ranking_only_for_the_weights_the_worker_serves(stack: Stack) -> None:
    """A ranking measured on other weights (the model behind the same name was replaced) is not served: auto
    translates directly, says why, and re-analyses the pair; the new ranking, on the served weights, is."""
    body = {"text": "water", "source": "en", "target": "it", "bridge": "auto"}
    with stack.client() as c:
        job = c.post("/analyze", json={"source": "en", "target": "it"}, headers=A).json()
        assert wait_job(c, job["id"])["state"] == "succeeded"
        ranking = c.get("/bridges/en/it", headers=T).json()
        served = ranking["provenance"]["weight_hash"]
        assert ranking["provenance"]["worker_weights"] == "verified" and len(served) == 64
        assert c.post("/translate", json=body, headers=T).json()["bridge_source"] == "cache"

        # the published ranking now claims other weights, as one made before a redeploy would
        old = "0" * 64
        r = redis.Redis.from_url(stack.redis.url)
        stored = json.loads(r.get(ranking["cache_key"]))
        stored["provenance"]["weight_hash"] = old
        r.set(ranking["cache_key"], json.dumps(stored))
        out = c.post("/translate", json=body, headers=T).json()
        assert out["bridge_source"] == "fallback" and out["bridge"] is None, out
        assert "for the weights the worker serves" in out["bridge_reason"]
        assert any(old[:12] in w and served[:12] in w for w in out["warnings"]), out["warnings"]
        assert out["analysis_job"] == job["id"]  # the same request, run again for these weights
        assert wait_job(c, job["id"])["state"] == "succeeded"
        again = c.post("/translate", json=body, headers=T).json()
        assert again["bridge_source"] == "cache" and not again["warnings"], again
        assert c.get("/bridges/en/it", headers=T).json()["provenance"]["weight_hash"] == served
        r.close()


def test_analyze_lifecycle(stack: Stack) -> None:
    body = {"source": "en", "target": "fr"}
    with stack.client() as c:
        r = c.post("/analyze", json=body, headers={**A, "Idempotency-Key": "idem-1", "X-Request-Id": "an-1"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert r.headers["location"] == f"/jobs/{job['id']}" == job["location"]
        assert job["request_id"] == "an-1" and job["request"]["candidates"] == ["de", "it"]
        # the same Idempotency-Key returns the same job; reusing it for another body is refused
        again = c.post("/analyze", json=body, headers={**A, "Idempotency-Key": "idem-1"})
        assert again.json()["id"] == job["id"]
        clash = c.post("/analyze", json={"source": "en", "target": "de"}, headers={**A, "Idempotency-Key": "idem-1"})
        assert clash.status_code == 422 and "Idempotency-Key" in clash.json()["message"]
        # the same request without a key is the same job too (content hash)
        assert c.post("/analyze", json=body, headers=A).json()["id"] == job["id"]

        rec = wait_job(c, job["id"])
        assert rec["state"] == "succeeded" and rec["result"]["best"] in ("de", "it"), rec
        done = c.post("/analyze", json=body, headers=A)
        assert done.status_code == 200 and done.json()["result"]["best"] == rec["result"]["best"]
        assert c.get("/bridges/en/fr", headers=T).json()["best_code"] == rec["result"]["best"]

        # force recomputes; a queued job behind it can be cancelled at once
        forced = c.post("/analyze", json={**body, "force": True}, headers=A)
        assert forced.status_code == 202 and forced.json()["state"] == "queued"
        other = c.post("/analyze", json={"source": "fr", "target": "de"}, headers=A).json()
        cancelled = c.post(f"/jobs/{other['id']}/cancel", headers=A)
        assert cancelled.status_code == 200
        assert wait_job(c, other["id"])["state"] == "cancelled"
        assert wait_job(c, job["id"])["state"] == "succeeded"

        listed = c.get("/jobs", headers=A, params={"limit": 10}).json()["jobs"]
        assert {job["id"], other["id"]} <= {j["id"] for j in listed}
        assert c.get("/jobs", headers=A, params={"state": "cancelled"}).json()["jobs"][0]["id"] == other["id"]
        missing = c.get("/jobs/0123456789abcdef", headers=A)
        assert missing.status_code == 404 and "POST /analyze" in missing.json()["message"]
        assert c.post("/jobs/0123456789abcdef/cancel", headers=A).status_code == 404
        bad = c.post("/analyze", json={"source": "en", "target": "fr", "candidates": ["fr", "en"]}, headers=A)
        assert bad.status_code == 422 and "candidate" in bad.json()["message"]


def test_failed_analysis_is_remembered_with_backoff(stack: Stack) -> None:
    body = {"text": "Wasser", "source": "de", "target": "fi", "bridge": "auto"}  # no de-fi data in this stack
    with stack.client() as c:
        first = c.post("/translate", json=body, headers=T).json()
        assert first["bridge_source"] == "fallback" and first["analysis_job"]
        rec = wait_job(c, first["analysis_job"])
        assert rec["state"] == "failed" and "no de-fi probe dictionary" in rec["error"]
        enqueued = metric(c, "bridgex_api_analysis_enqueued_total")
        submits = metric(c, "bridgex_api_analysis_submits_total")
        for _ in range(3):  # within the backoff: nothing is enqueued again, and the answer says why
            again = c.post("/translate", json=body, headers=T).json()
            assert again["bridge_source"] == "fallback" and again["bridge"] is None
            assert any("failed 1 time(s)" in w and "no de-fi probe dictionary" in w for w in again["warnings"])
        assert metric(c, "bridgex_api_analysis_enqueued_total") == enqueued
        assert metric(c, "bridgex_api_analysis_submits_total") == submits
        gone = c.get("/bridges/de/fi", headers=T)
        assert gone.status_code == 404 and "failed 1 time(s)" in gone.json()["message"]
        failure = gone.json()["details"]["failure"]
        assert failure["attempts"] == 1 and failure["job_id"] == rec["id"] and failure["retry_in_s"] > 0
        # an explicit POST /analyze is not held back by the backoff
        r = c.post("/analyze", json={"source": "de", "target": "fi"}, headers=A)
        assert r.status_code == 202 and r.json()["id"] == rec["id"]
        assert wait_job(c, rec["id"])["state"] == "failed"
        retried = c.get("/bridges/de/fi", headers=T).json()["details"]["failure"]
        assert retried["attempts"] == 2 and retried["retry_in_s"] == 2 * failure["retry_in_s"]


def test_auto_without_any_candidate_translates_directly(stack: Stack) -> None:
    """de->it with candidates de,it: nothing to analyse, so auto translates directly and says why."""
    with stack.client() as c:
        r = c.post("/translate", headers=T, json={"text": "Wasser", "source": "de", "target": "it", "bridge": "auto"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["bridge"] is None and out["analysis_job"] is None
        assert "no analysis is possible" in out["bridge_reason"]
        bad = c.get("/bridges/de/it", headers=T)
        assert bad.status_code == 422 and "no candidate bridge left" in bad.json()["message"]
        assert c.get("/bridges/de/it", headers=T, params={"config": "nothex"}).status_code == 422
