"""Faults with real processes: Redis killed (SIGKILL) and restarted under load, the generation worker killed in
the middle of a batch. Nothing is lost (rankings, job records, finished batch items) and nothing hangs past
its timeout. (The analyzer killed mid-job is tests/analyzer/test_recovery.py.)"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import ADMIN, WORKER_KEY, A, T, reliability_env
from tests.support import RedisServer, Stack, running_stack, start_worker, wait_until

CLIENT_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def fault_stack(tiny_model_dir: Path, rlog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Its own worker (this module kills it), a persistent Redis (it is restarted), Celery and a gateway."""
    worker, wurl = start_worker(tiny_model_dir, rlog_dir, BRIDGEX_WORKER_API_KEY=WORKER_KEY)
    server = RedisServer(persist=True).start()
    env = reliability_env(
        tiny_model_dir,
        server.url,
        wurl,
        tmp_path_factory.mktemp("faults"),
        BRIDGEX_WORKER_TIMEOUT_S="5",
        BRIDGEX_WORKER_RETRIES="1",
    )
    try:
        with running_stack(server, env, rlog_dir, (worker, wurl), timeout=CLIENT_TIMEOUT_S) as s:
            yield s
    finally:
        worker.stop()


def _wait_job(c: httpx.Client, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = c.get(f"/jobs/{job_id}", headers=ADMIN).json()
        if rec["state"] in ("succeeded", "failed", "cancelled"):
            return rec
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {rec}")


def test_redis_killed_and_restarted_under_load(fault_stack: Stack) -> None:
    api, server = fault_stack.api, fault_stack.redis
    auto = {"text": "water", "source": "en", "target": "fr", "bridge": "auto"}
    with httpx.Client(base_url=api, timeout=CLIENT_TIMEOUT_S) as c:
        job = c.post("/analyze", headers=A, json={"source": "en", "target": "fr"}).json()
        rec = _wait_job(c, job["id"])
        assert rec["state"] == "succeeded", rec
        ranking = c.get("/bridges/en/fr", headers=T).json()
        assert c.post("/translate", headers=T, json=auto).json()["bridge_source"] == "cache"

    results: list[tuple[str, int, float]] = []
    stop = threading.Event()

    def client(path: str, method: str, body: dict | None) -> None:
        with httpx.Client(base_url=api, timeout=CLIENT_TIMEOUT_S) as c:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = c.request(method, path, headers=T, json=body)
                    code = r.status_code
                except httpx.TimeoutException:
                    code = -1
                results.append((path, code, time.monotonic() - t0))

    threads = [
        threading.Thread(target=client, args=("/translate", "POST", auto)),
        threading.Thread(target=client, args=("/translate", "POST", {**auto, "bridge": "none"})),
        threading.Thread(target=client, args=("/bridges/en/fr", "GET", None)),
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    server.kill()  # SIGKILL mid-request
    time.sleep(3.0)
    during = len(results)
    server.start()  # same port, same append-only file
    with httpx.Client(base_url=api, timeout=CLIENT_TIMEOUT_S) as c:
        wait_until(lambda: c.get("/bridges/en/fr", headers=T).status_code == 200, 30, 0.5, what="recovery")
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(CLIENT_TIMEOUT_S)

    assert len(results) > during > 0
    assert all(code != -1 for _, code, _ in results), "a request hung until the client's timeout"
    assert all(code < 500 or code == 503 for _, code, _ in results), {c for _, c, _ in results}
    translate_codes = {code for path, code, _ in results if path == "/translate"}
    assert translate_codes == {200}, translate_codes  # translation never stopped (fallback while Redis was down)
    assert 503 in {code for path, code, _ in results if path == "/bridges/en/fr"}  # the outage was seen
    assert max(dt for _, _, dt in results) < 15
    with httpx.Client(base_url=api, timeout=CLIENT_TIMEOUT_S) as c:  # nothing was lost
        assert c.get("/bridges/en/fr", headers=T).json() == ranking
        after = c.get(f"/jobs/{job['id']}", headers=ADMIN).json()
        assert after["state"] == "succeeded" and after["result"] == rec["result"]
        wait_until(
            lambda: c.post("/translate", headers=T, json=auto).json()["bridge_source"] == "cache",
            30,
            0.5,
            what="auto served from the cache again",
        )


def _completed(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(m.group(1)) for m in re.finditer(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


def test_worker_killed_mid_batch_keeps_finished_items(fault_stack: Stack) -> None:
    api, wurl, worker = fault_stack.api, fault_stack.worker, fault_stack.worker_svc
    items = [
        {
            "text": f"All human beings are born free, number {i}.",
            "source": "en",
            "target": "fr",
            "bridge": "none",
            "task": "text",
            "max_tokens": 48,
        }
        for i in range(48)
    ]
    out: dict[str, Any] = {}

    def batch() -> None:
        t0 = time.monotonic()
        with httpx.Client(base_url=api, timeout=CLIENT_TIMEOUT_S) as c:
            r = c.post("/translate/batch", headers=T, json={"items": items})
        out.update(status=r.status_code, body=r.json(), dt=time.monotonic() - t0)

    base = _completed(wurl)
    th = threading.Thread(target=batch)
    th.start()
    wait_until(lambda: _completed(wurl) - base >= 4, 60, 0.05, what="some items finished")
    worker.kill()  # SIGKILL of the whole vLLM process group, mid-batch
    th.join(CLIENT_TIMEOUT_S)
    assert not th.is_alive(), "the batch hung after the worker died"
    assert out["status"] == 200, out
    body = out["body"]
    assert body["succeeded"] + body["failed"] == len(items)
    assert body["succeeded"] >= 4 and body["failed"] >= 1, (body["succeeded"], body["failed"])
    for item in body["results"]:
        if item["ok"]:
            assert item["result"]["translation"] is not None
        else:
            # 424 when vLLM failed the in-flight request as its engine died, 503 once it was gone
            assert item["error"]["status"] in (424, 503) and "generation" in item["error"]["message"], item
    with httpx.Client(base_url=api, timeout=CLIENT_TIMEOUT_S) as c:  # fast 503 now, not a hang
        t0 = time.monotonic()
        r = c.post("/translate", headers=T, json=items[0])
        assert r.status_code == 503 and time.monotonic() - t0 < 15
        assert c.get("/ready").status_code == 503
