"""The gateway and the analyzer say when they serve different method configurations (issue 22 item 2).

Real parts: the package's stack (redis-server, the Celery analyzer, the gateway, the vLLM worker). The analyzer
publishes its configuration when its worker starts; here the test then replaces it with one whose k_shot and
serve_alpha differ, as an analyzer started with other BRIDGEX_* settings would.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from services.api.services.config_check import CHECK_TTL_S
from services.common import served
from services.common.config import ServiceSettings
from tests.api.conftest import Stack, T


def _settings(stack: Stack, monkeypatch: pytest.MonkeyPatch, **over: object) -> ServiceSettings:
    """The settings the stack's processes read from their environment, with `over` changed."""
    for k, v in stack.env.items():
        monkeypatch.setenv(k, v)
    return ServiceSettings(**over)


def test_ready_and_bridges_report_configuration_mismatch(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    r = redis.Redis.from_url(stack.redis.url)
    key = served.key(_settings(stack, monkeypatch), "analyzer")
    published = r.get(key)
    assert published, "the analyzer publishes its configuration when its Celery worker starts"
    theirs = json.loads(published)
    assert theirs["role"] == "analyzer" and theirs["params"]["k_shot"] == int(stack.env["BRIDGEX_K_SHOT"])
    with stack.client() as c:
        ready = c.get("/ready").json()["configuration"]
        assert ready["agree"] is True and ready["gateway"] == ready["analyzer"] == theirs["fingerprint"], ready
        try:
            other = served.announcement(
                _settings(stack, monkeypatch, k_shot=5, serve_alpha=0.01), "analyzer", "other-host"
            )
            r.set(key, json.dumps(other))
            time.sleep(CHECK_TTL_S + 0.2)  # the gateway re-reads at most every CHECK_TTL_S
            ready = c.get("/ready").json()["configuration"]
            assert ready["agree"] is False and ready["analyzer"] == other["fingerprint"] != ready["gateway"]
            assert set(ready["differ"]) == {"k_shot", "serve_alpha"}
            assert ready["differ"]["k_shot"] == {"gateway": 0, "analyzer": 5}
            assert "other-host" in ready["detail"] and "k_shot" in ready["detail"]
            matrix = c.get("/bridges", headers=T).json()
            assert matrix["configuration"]["agree"] is False
            # an auto miss says why the analysis it enqueues may never be found
            out = c.post(
                "/translate", headers=T, json={"text": "vesi", "source": "fi", "target": "it", "bridge": "auto"}
            ).json()
            assert out["bridge_source"] == "fallback", out  # fi-it is never analysed in this stack
            assert any("different method configurations" in w for w in out["warnings"]), out
            # nothing published (an older analyzer): unknown, not a mismatch
            r.delete(key)
            time.sleep(CHECK_TTL_S + 0.2)
            ready = c.get("/ready").json()["configuration"]
            assert ready["agree"] is None and ready["analyzer"] is None
        finally:
            r.set(key, published)
