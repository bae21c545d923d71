"""Two gateways on one Redis (issue 24 item 3): the rate limit, the failed-auth lockout, job scoping, idempotency
keys and the single-flight of `auto` misses hold across both, each tested with requests alternating between
them (a gateway that kept any of these in its own memory would let twice as much through)."""

from __future__ import annotations

import time

import httpx
import pytest

from services.common.jobs import JobState
from tests.replicas.conftest import AUTH_FAIL_LIMIT, OTHER, RATE_LIMIT, Replicas, auth, post_all

pytestmark = pytest.mark.integration


def _same_minute(margin: float = 15.0) -> None:
    """Start a burst early enough in a minute that it ends in it (the limits count in fixed one-minute windows)."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.2)


def test_rate_limit_is_one_window_across_both_gateways(replicas: Replicas) -> None:
    _same_minute()
    codes = []
    for i in range(RATE_LIMIT + 4):
        r = httpx.get(f"{replicas.api(i)}/usage", headers=auth("k-rate"), timeout=30)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["error"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    # each gateway saw half of the requests: separate counters would have let all of them through
    assert codes == [200] * RATE_LIMIT + [429] * 4, codes
    # another key is not affected, on either gateway
    assert [httpx.get(f"{api}/usage", headers=auth("k-scope-a"), timeout=30).status_code for api in replicas.apis] == [
        200,
        200,
    ]


def test_lockout_is_shared_by_both_gateways(replicas: Replicas) -> None:
    # 127.0.0.1 is a trusted proxy in this stack: X-Forwarded-For names the client, so only this one is locked
    guesser, bystander = {"X-Forwarded-For": "10.24.0.7"}, {"X-Forwarded-For": "10.24.0.8"}
    body = {"text": "water", "source": "en", "target": "fr", "bridge": "none"}
    _same_minute()
    codes = [
        httpx.post(
            f"{replicas.api(i)}/translate", json=body, headers={**guesser, **auth(f"wrong-{i}")}, timeout=30
        ).status_code
        for i in range(AUTH_FAIL_LIMIT)
    ]
    # the limit is reached on the fifth wrong key, whichever gateway saw the others
    assert codes == [401] * (AUTH_FAIL_LIMIT - 1) + [429], codes
    for api in replicas.apis:  # locked out on both, even with a valid key
        r = httpx.post(f"{api}/translate", json=body, headers={**guesser, **auth("k-lock")}, timeout=30)
        assert r.status_code == 429 and r.json()["error"] == "locked_out", r.text
        ok = httpx.post(f"{api}/translate", json=body, headers={**bystander, **auth("k-lock")}, timeout=60)
        assert ok.status_code == 200, ok.text


def test_jobs_are_scoped_to_their_key_on_both_gateways(replicas: Replicas) -> None:
    s, t = OTHER[1]
    a, b = auth("k-scope-a"), auth("k-scope-b")
    created = httpx.post(f"{replicas.api(0)}/analyze", json={"source": s, "target": t}, headers=a, timeout=30)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    for api in replicas.apis:
        assert httpx.get(f"{api}/jobs/{job_id}", headers=a, timeout=30).status_code == 200
        assert job_id in {j["id"] for j in httpx.get(f"{api}/jobs", headers=a, timeout=30).json()["jobs"]}
        other = httpx.get(f"{api}/jobs/{job_id}", headers=b, timeout=30)
        assert other.status_code == 404 and other.json()["error"] == "job_not_found"
        assert job_id not in {j["id"] for j in httpx.get(f"{api}/jobs", headers=b, timeout=30).json()["jobs"]}
        assert httpx.post(f"{api}/jobs/{job_id}/cancel", headers=b, timeout=30).status_code == 404
        assert httpx.get(f"{api}/jobs/{job_id}", headers=auth("k-admin"), timeout=30).status_code == 200
    assert replicas.wait(job_id).state == JobState.succeeded


def test_idempotency_key_holds_across_both_gateways(replicas: Replicas) -> None:
    key = auth("k-idem")
    # the same key and body, at once through both gateways: one job
    s, t = OTHER[2]
    sent = post_all(
        [
            ("POST", f"{replicas.api(i)}/analyze", {"source": s, "target": t}, {**key, "Idempotency-Key": "idem-a"})
            for i in range(10)
        ]
    )
    assert {r.status_code for r in sent} <= {200, 202}, [r.text for r in sent]
    assert len({r.json()["id"] for r in sent}) == 1

    # the same key with two different bodies, at once through both gateways: one is accepted, the rest are told
    # that the key was used for another request; the other body gets no job
    (s1, t1), (s2, t2) = OTHER[3], OTHER[4]
    bodies = [{"source": s1, "target": t1}, {"source": s2, "target": t2}]
    which = [i // 2 % 2 for i in range(12)]
    sent = post_all(
        [
            ("POST", f"{replicas.api(i)}/analyze", bodies[w], {**key, "Idempotency-Key": "idem-b"})
            for i, w in enumerate(which)
        ]
    )
    ok = [(w, r) for w, r in zip(which, sent, strict=True) if r.status_code in (200, 202)]
    refused = [(w, r) for w, r in zip(which, sent, strict=True) if r.status_code == 422]
    assert len(ok) + len(refused) == len(sent), [r.text for r in sent]
    assert all(r.json()["error"] == "idempotency_key_reused" for _, r in refused)
    assert len({r.json()["id"] for _, r in ok}) == 1, [r.json()["request"] for _, r in ok]
    # every request with the accepted body got its job, every one with the other body was refused
    winner = ok[0][0]
    assert {w for w, _ in ok} == {winner} and {w for w, _ in refused} == {1 - winner}
    loser = bodies[1 - winner]
    assert not [
        j
        for j in replicas.jobs.list(limit=500)
        if j.request.get("source") == loser["source"] and j.request.get("target") == loser["target"]
    ]

    # one after the other, alternating: a replay is the same job, another body is refused
    first = httpx.post(
        f"{replicas.api(0)}/analyze", json=bodies[0], headers={**key, "Idempotency-Key": "idem-c"}, timeout=30
    )
    replay = httpx.post(
        f"{replicas.api(1)}/analyze", json=bodies[0], headers={**key, "Idempotency-Key": "idem-c"}, timeout=30
    )
    clash = httpx.post(
        f"{replicas.api(1)}/analyze", json=bodies[1], headers={**key, "Idempotency-Key": "idem-c"}, timeout=30
    )
    assert first.status_code in (200, 202) and replay.json()["id"] == first.json()["id"]
    assert clash.status_code == 422 and clash.json()["error"] == "idempotency_key_reused"


def test_auto_misses_enqueue_one_analysis_across_both_gateways(replicas: Replicas) -> None:
    s, t = OTHER[5]
    body = {"text": "water", "source": s, "target": t, "bridge": "auto"}
    enqueued = replicas.metric("bridgex_api_analysis_enqueued_total")
    submits = replicas.metric("bridgex_api_analysis_submits_total")
    sent = post_all([("POST", f"{replicas.api(i)}/translate", body, auth("k-auto")) for i in range(20)])
    assert [r.status_code for r in sent] == [200] * 20, [r.text for r in sent if r.status_code != 200]
    assert {r.json()["bridge_source"] for r in sent} <= {"fallback", "cache"}
    # one SET NX in the shared Redis let exactly one of the twenty through, whichever gateway it reached
    assert replicas.metric("bridgex_api_analysis_submits_total") - submits == 1
    assert replicas.metric("bridgex_api_analysis_enqueued_total") - enqueued == 1
    jobs = [j for j in replicas.jobs.list(limit=500) if (j.request.get("source"), j.request.get("target")) == (s, t)]
    assert len(jobs) == 1
    assert {r.json()["analysis_job"] for r in sent} - {None} <= {jobs[0].id}
    rec = replicas.wait(jobs[0].id)
    assert rec.state == JobState.succeeded and rec.attempts == 1 and replicas.publishes(rec) == 1
    for api in replicas.apis:  # both serve the published ranking now
        hit = httpx.post(f"{api}/translate", json=body, headers=auth("k-auto"), timeout=60).json()
        assert hit["bridge_source"] == "cache" and hit["cache_key"] == rec.result["cache_key"], hit
