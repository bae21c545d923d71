"""Two analyzers on one queue (issue 24 item 1): two real Celery worker processes (solo pool, the same `analyze`
queue) behind two gateways. Every job is analysed once and published once, counted from the job records
(`attempts`, state), the analyzers' logs (which process finished which run), the bridge cache's publish counter
(BridgeStore.publish_counts) and the ranking artifacts on disk; a killed analyzer's job is finished by the other
(acks_late + the lease), a terminated one hands its job back at once (its record's way back to `queued`:
tests/analyzer/test_hand_back.py)."""

from __future__ import annotations

import time

import httpx
import pytest

from services.common.jobs import JobRecord, JobState
from tests.replicas.conftest import KEYS, OTHER, SLOW, TEN, VISIBILITY_S, Replicas, auth, poll, post_all

pytestmark = pytest.mark.integration

assert {"k-ten", "k-same-1", "k-same-2", "k-kill"} <= set(KEYS)


def _pair_jobs(replicas: Replicas, source: str, target: str) -> list[JobRecord]:
    return [
        j
        for j in replicas.jobs.list(limit=500)
        if j.request.get("source") == source and j.request.get("target") == target
    ]


def _published_once(replicas: Replicas, rec: JobRecord) -> None:
    s, t = rec.request["source"], rec.request["target"]
    assert replicas.publishes(rec) == 1, (s, t)
    latest = replicas.bridges.latest(rec.request["model"], rec.request.get("revision"), rec.result["config"], s, t)
    assert latest is not None and latest["cache_key"] == rec.result["cache_key"]
    assert latest["provenance"]["job_id"] == rec.id
    # the artifact store: one ranking file for the job's request (ranking-<probe hash>-<request hash>.json)
    name = rec.result["artifacts"]["ranking"].rsplit("/", 1)[1]
    request_hash = name.rsplit("-", 1)[1]
    assert [p.name for p in replicas.ranking_files(s, t) if p.name.endswith(f"-{request_hash}")] == [name]


def test_ten_pairs_at_once_are_each_analysed_and_published_once(replicas: Replicas) -> None:
    bodies = [{"source": s, "target": t} for s, t in TEN]
    sent = post_all([("POST", f"{replicas.api(i)}/analyze", body, auth("k-ten")) for i, body in enumerate(bodies)])
    assert [r.status_code for r in sent] == [202] * len(TEN), [r.text for r in sent if r.status_code != 202]
    ids = [r.json()["id"] for r in sent]
    assert len(set(ids)) == len(TEN)
    recs = [replicas.wait(i, 240) for i in ids]
    for (s, t), rec in zip(TEN, recs, strict=True):
        assert rec.state == JobState.succeeded, rec.error
        assert rec.attempts == 1, rec
        assert [j.id for j in _pair_jobs(replicas, s, t)] == [rec.id]
        assert len(replicas.runs(rec.id)) == 1, replicas.runs(rec.id)
        _published_once(replicas, rec)
    ran = [replicas.runs(i)[0] for i in ids]
    assert set(ran) == {0, 1}, f"one analyzer ran every job: {ran}"  # both consumed the one queue

    # nothing left behind, and nothing runs again: after a visibility timeout more, no run or publish was added
    # (a message the broker handed to the other analyzer while its job ran found the lease taken, or the
    # record finished)
    poll(lambda: replicas.r.llen("analyze") == 0 and replicas.r.hlen("unacked") == 0, 60, "queue drained")
    time.sleep(VISIBILITY_S + 2)
    for rec in recs:
        again = replicas.jobs.get(rec.id)
        assert again is not None and again.attempts == 1 and again.finished_at == rec.finished_at
        assert len(replicas.runs(rec.id)) == 1 and replicas.publishes(rec) == 1


def test_same_pair_twenty_times_across_both_gateways_is_one_job(replicas: Replicas) -> None:
    s, t = OTHER[0]
    keys = ("k-same-1", "k-same-2")
    sent = post_all(
        [("POST", f"{replicas.api(i)}/analyze", {"source": s, "target": t}, auth(keys[i // 2 % 2])) for i in range(20)]
    )
    assert {r.status_code for r in sent} <= {200, 202}, [r.text for r in sent if r.status_code not in (200, 202)]
    ids = {r.json()["id"] for r in sent}
    assert len(ids) == 1, ids
    (job_id,) = ids
    assert [j.id for j in _pair_jobs(replicas, s, t)] == [job_id]
    rec = replicas.wait(job_id)
    assert rec.state == JobState.succeeded and rec.attempts == 1, rec
    assert len(rec.owners) == 2  # both keys submitted it; each sees it through either gateway
    for i, key in enumerate(keys):
        got = httpx.get(f"{replicas.api(i + 1)}/jobs/{job_id}", headers=auth(key), timeout=10)
        assert got.status_code == 200 and got.json()["state"] == "succeeded"
    assert len(replicas.runs(job_id)) == 1
    _published_once(replicas, rec)


def _running_on(replicas: Replicas, job_id: str, stage: str, timeout: float = 120.0) -> int:
    """Wait until the job runs `stage`; the index of the analyzer holding its lease."""
    found: list[int] = []

    def check() -> bool:
        rec = replicas.jobs.get(job_id)
        assert rec is not None and not rec.state.terminal, f"the job finished before it could be stopped: {rec}"
        holder = replicas.analyzer_of_lease(job_id)
        if rec.state == JobState.running and rec.progress.stage == stage and holder is not None:
            found.append(holder)
            return True
        return False

    poll(check, timeout, f"job {job_id} in stage {stage}")
    return found[0]


def _submit_slow(replicas: Replicas, pair: tuple[str, str]) -> str:
    s, t = pair
    body = {"source": s, "target": t, "dev_size": 40}
    (resp,) = post_all([("POST", f"{replicas.api(0)}/analyze", body, auth("k-kill"))])
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def test_sigkill_mid_job_the_other_analyzer_finishes_it_once(replicas: Replicas) -> None:
    job_id = _submit_slow(replicas, SLOW[0])
    victim = _running_on(replicas, job_id, "validate")
    other = 1 - victim
    replicas.analyzers[victim].kill()  # SIGKILL: no shutdown, no ack, the lease is not released
    killed = replicas.jobs.get(job_id)
    assert killed is not None and killed.state == JobState.running and killed.attempts == 1
    try:
        rec = replicas.wait(job_id, 180)
        assert rec.state == JobState.succeeded, rec.error
        assert rec.attempts == 2, rec  # the record shows the second attempt
        assert replicas.runs(job_id) == [other]
        assert f"job {job_id}: attempt 2 (resuming" in replicas.analyzers[other].log.read_text(errors="replace")
        _published_once(replicas, rec)
    finally:
        replicas.replace_analyzer(victim)


def test_sigterm_mid_job_hands_the_job_back_at_once(replicas: Replicas) -> None:
    job_id = _submit_slow(replicas, SLOW[1])
    victim = _running_on(replicas, job_id, "validate")
    other = 1 - victim
    svc = replicas.analyzers[victim]
    exited_after = replicas.terminate(victim)
    try:
        log = svc.log.read_text(errors="replace")
        assert f"job {job_id} handed back" in log, log[-3000:]
        # it stopped at its next check instead of finishing the job (Celery's warm shutdown alone would)
        assert f"job {job_id}: done (" not in log
        assert exited_after < 30, exited_after
        rec = replicas.wait(job_id, 180)
        assert rec.state == JobState.succeeded, rec.error
        assert rec.attempts == 2, rec
        assert replicas.runs(job_id) == [other]
        _published_once(replicas, rec)
    finally:
        replicas.replace_analyzer(victim)
