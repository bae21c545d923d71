"""Dependencies failing under a live gateway: rate limit, Redis stopped mid-test, the worker stopped."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import A, T, stack_env
from tests.support import RedisServer, Service, start_api, start_worker

pytestmark = pytest.mark.integration

WORD = {"text": "water", "source": "en", "target": "fr"}


def timed(fn, *a, **kw) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    r = fn(*a, **kw)
    return r, time.perf_counter() - t0


def test_rate_limit_then_redis_stopped(
    own_redis: RedisServer, gen_worker: tuple[Service, str], tiny_model_dir: Path, log_dir: Path, tmp_path: Path
) -> None:
    env = {**stack_env(tiny_model_dir, own_redis.url, gen_worker[1], tmp_path), "BRIDGEX_RATE_LIMIT_PER_MINUTE": "5"}
    svc, api = start_api(log_dir, **env)
    try:
        with httpx.Client(base_url=api, timeout=30) as c:
            # per-key fixed window; another key has its own budget
            codes = [c.get("/languages", headers=T).status_code for _ in range(6)]
            if codes[-1] == 200:  # crossed a minute boundary mid-loop: one more window
                codes = [c.get("/languages", headers=T).status_code for _ in range(6)]
            assert codes[-1] == 429 and codes.count(200) >= 4, codes
            r = c.get("/languages", headers=T)
            assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 61
            assert "rate limit" in r.json()["message"]
            assert c.get("/languages", headers=A).status_code == 200

            own_redis.stop()  # Redis goes away mid-test

            r, dt = timed(c.post, "/translate", json={**WORD, "bridge": "none"}, headers=A)
            assert r.status_code == 200 and r.json()["bridge_source"] == "none" and dt < 5, (r.text, dt)
            r, dt = timed(c.post, "/translate", json={**WORD, "bridge": "de"}, headers=A)
            assert r.status_code == 200 and r.json()["bridge_source"] == "explicit" and dt < 5
            r, dt = timed(c.post, "/translate", json={**WORD, "bridge": "auto"}, headers=A)
            out = r.json()
            assert r.status_code == 200 and out["bridge_source"] == "fallback" and dt < 5, out
            # the default fallback translates directly: an unmeasured bridge could be worse than none
            assert out["bridge"] is None and out["analysis_job"] is None and "not analysed" in out["bridge_reason"]
            assert any("Redis" in w for w in out["warnings"]), out

            r, dt = timed(c.post, "/analyze", json={"source": "en", "target": "fr"}, headers=A)
            assert r.status_code == 503 and "unavailable" in r.json()["message"] and dt < 3, r.text
            assert r.headers.get("retry-after")
            assert c.get("/jobs/abc", headers=A).status_code == 503
            assert c.get("/bridges/en/fr", headers=A).status_code == 503
            ready = c.get("/ready")
            assert ready.status_code == 503 and not ready.json()["checks"]["redis"]["ok"]
            assert ready.json()["checks"]["generation_worker"]["ok"]
            # the rate limiter fails open: T was over its limit, but is served while Redis is down
            assert c.get("/languages", headers=T).status_code == 200
            assert c.get("/health").status_code == 200
    finally:
        svc.stop()


def test_worker_stopped_and_generation_failed(
    tiny_model_dir: Path, log_dir: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    wsvc, wurl = start_worker(tiny_model_dir, log_dir, BRIDGEX_MAX_MODEL_LEN="96")
    env = {
        **stack_env(tiny_model_dir, redis_server.url, wurl, tmp_path),
        "BRIDGEX_WORKER_TIMEOUT_S": "2",
        "BRIDGEX_WORKER_RETRIES": "1",
    }
    svc, api = start_api(log_dir, **env)
    try:
        with httpx.Client(base_url=api, timeout=30) as c:
            ok = c.post("/translate", json={**WORD, "bridge": "none", "max_tokens": 4}, headers=T)
            assert ok.status_code == 200, ok.text
            # the worker refuses (max_tokens over ITS context): generation failed -> 424 with vLLM's reason
            r = c.post("/translate", json={**WORD, "bridge": "none", "max_tokens": 200}, headers=T)
            assert r.status_code == 424 and "max_tokens" in r.json()["message"], r.text

            os.killpg(wsvc.proc.pid, signal.SIGSTOP)  # alive but not answering: must not hang
            try:
                r, dt = timed(c.post, "/translate", json={**WORD, "bridge": "none", "max_tokens": 4}, headers=T)
                assert r.status_code in (424, 503) and dt < 8, (r.status_code, dt, r.text)
                ready, dt = timed(c.get, "/ready")
                assert ready.status_code == 503 and dt < 6
                assert not ready.json()["checks"]["generation_worker"]["ok"]
            finally:
                os.killpg(wsvc.proc.pid, signal.SIGCONT)
            wsvc.stop()  # now gone
            r, dt = timed(c.post, "/translate", json={**WORD, "bridge": "de", "max_tokens": 4}, headers=T)
            assert r.status_code == 503 and dt < 5, (r.text, dt)
            assert wurl in r.json()["message"] and r.json()["error"] == "generation_worker_unavailable"
            assert c.get("/health").status_code == 200
    finally:
        svc.stop()
        wsvc.stop()
