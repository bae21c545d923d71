"""Schemathesis against the running stack: the gateway's OpenAPI document (every response must be documented
and conform) and the generation worker's (vLLM's) document on the four operations the gateway uses (no 5xx).

Bounded on purpose: at most `max-examples` generated cases per operation, the coverage cases Schemathesis
derives from the schema (finite and deterministic), no shrinking (Hypothesis phases explicit + generate), no
stateful phase, and a hard timeout per test. Every request sent and every 5xx answer is counted and written to
var/test-artifacts/reliability/fuzz.json:
    {"gateway": {"requests": N, "5xx": M, "operations": K}, "worker": {...}}

A failure here is a real finding (a 5xx, an undocumented status, a body that does not match its schema):
fix the service, not this file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.conftest import ADMIN, WH
from tests.support import Service, Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "var" / "test-artifacts" / "reliability" / "fuzz.json"

GATEWAY_EXAMPLES = 20
ANALYZE_EXAMPLES = 4
WORKER_EXAMPLES = 15
WORKER_OPERATIONS = ["/v1/completions", "/tokenize", "/v1/models", "/health"]
"""What the gateway (completions, tokenize, models) and the probes (/health) use of vLLM's API."""

FUZZ_SETTINGS = settings(
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    operations: set[str] = field(default_factory=set)
    ran: bool = False

    def record(self, label: str, status: int) -> None:
        self.ran = True
        self.requests += 1
        self.operations.add(label)
        if status >= 500:
            self.server_errors += 1

    def as_json(self) -> dict[str, int]:
        return {"requests": self.requests, "5xx": self.server_errors, "operations": len(self.operations)}


@pytest.fixture(scope="module")
def fuzz_tally() -> Iterator[dict[str, Tally]]:
    """Counts per target; written when the module is done. A target this run did not fuzz (-k) keeps the
    figures of the previous run in the file."""
    tally = {"gateway": Tally(), "worker": Tally()}
    yield tally
    try:
        previous = json.loads(ARTIFACT.read_text())
    except (OSError, ValueError):
        previous = {}
    out = {name: t.as_json() if t.ran or name not in previous else previous[name] for name, t in tally.items()}
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(out, indent=1) + "\n")


@pytest.fixture(autouse=True)
def _schemathesis_nodeid_shim(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32.5's lazy `parametrize` reads and renames `request.node._nodeid`, which pytest 9.2
    no longer has (AttributeError before any case runs). Give it the attribute; the operation still names
    each subtest in the report, only the node id is not suffixed with it."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


# --- the gateway -----------------------------------------------------------------------------------------------


def _gateway_state(api: str) -> tuple[dict[str, dict[str, Any]], set[tuple[str, str]]]:
    """(every job by id, every published pair) as the admin key sees them."""
    with httpx.Client(base_url=api, headers=ADMIN, timeout=30) as c:
        jobs = c.get("/jobs", params={"limit": 500})
        bridges = c.get("/bridges")
    assert jobs.status_code == 200 and bridges.status_code == 200, (jobs.text, bridges.text)
    return ({j["id"]: j for j in jobs.json()["jobs"]}, {(p["source"], p["target"]) for p in bridges.json()["pairs"]})


def _undo_analyses(api: str, jobs_before: set[str], pairs_before: set[tuple[str, str]]) -> None:
    """Leave the shared stack as the fuzz found it: cancel the analyses it started (POST /analyze, or a
    translate with bridge=auto on an analysable pair, which enqueues one) so the stack's single Celery worker is
    free for the next test, then drop what they published and their auto locks (DELETE clears the lock even
    when it answers 404). A cancelled job records no failure, so `auto` is not held back for those pairs."""
    jobs, pairs = _gateway_state(api)
    new = [jid for jid in jobs if jid not in jobs_before]
    with httpx.Client(base_url=api, headers=ADMIN, timeout=30) as c:
        for jid in new:
            if jobs[jid]["state"] in ("queued", "running"):
                c.post(f"/jobs/{jid}/cancel")
        deadline = time.monotonic() + 120
        while new and time.monotonic() < deadline:
            jobs = {jid: c.get(f"/jobs/{jid}").json() for jid in new}
            if not any(j.get("state") in ("queued", "running") for j in jobs.values()):
                break
            time.sleep(1)
        targets: set[tuple[str, str, str | None]] = {(s, t, None) for s, t in pairs - pairs_before}
        for jid in new:
            req, result = jobs[jid].get("request") or {}, jobs[jid].get("result") or {}
            if req.get("source") and req.get("target") and (req["source"], req["target"]) not in pairs_before:
                targets |= {(req["source"], req["target"], None), (req["source"], req["target"], result.get("config"))}
        for src, tgt, config in targets:
            c.delete(f"/bridges/{src}/{tgt}", params={"config": config} if config else None)
    still = sorted(jid for jid, j in jobs.items() if jid in new and j.get("state") in ("queued", "running"))
    assert not still, f"analyses started by the fuzz still hold the Celery worker after cancel: {still}"


@pytest.fixture(scope="module")
def gateway_schema(rstack: Stack) -> Iterator[schemathesis.BaseSchema]:
    config = schemathesis.Config.from_dict(
        {
            # the key is sent with every call (admin: every scope); generating security parameters would send
            # random X-API-Key values too, which only exercise the failed-auth lockout shared by this package
            "generation": {"max-examples": GATEWAY_EXAMPLES, "with-security-parameters": False},
            "phases": {"stateful": {"enabled": False}},
            "operations": [
                # POST /analyze: each accepted case is a real analysis on the stack's one Celery worker (tens of
                # seconds each); a few generated cases, no coverage sweep, and _undo_analyses cancels any it starts
                {
                    "include-path": "/analyze",
                    "generation": {"max-examples": ANALYZE_EXAMPLES},
                    "phases": {"coverage": {"enabled": False}},
                },
            ],
        }
    )
    schema = schemathesis.openapi.from_url(f"{rstack.api}/openapi.json", config=config)
    # Nothing is excluded: DELETE /bridges only touches this private stack, POST /jobs/{id}/cancel sees random
    # ids; /metrics and the static /ui are not in the document (include_in_schema=False, a mount).
    jobs_before, pairs_before = _gateway_state(rstack.api)
    yield schema
    _undo_analyses(rstack.api, set(jobs_before), pairs_before)


def no_internal_item_errors(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """A batch answers 200 with per-item results; an item's 5xx is a server error hidden inside a 200."""
    if case.operation.path != "/translate/batch" or response.status_code != 200:
        return
    bad = [r for r in response.json()["results"] if not r["ok"] and r["error"]["status"] >= 500]
    if bad:
        raise AssertionError(f"batch items answered with server errors: {bad}")


GATEWAY_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    no_internal_item_errors,
]


@pytest.mark.timeout(600)
@schemathesis.pytest.from_fixture("gateway_schema").parametrize()
@FUZZ_SETTINGS
def test_gateway_fuzz(case: schemathesis.Case, fuzz_tally: dict[str, Tally]) -> None:
    response = case.call(headers=ADMIN, timeout=60)
    fuzz_tally["gateway"].record(case.operation.label, response.status_code)
    case.validate_response(response, checks=GATEWAY_CHECKS, headers=ADMIN)


def _wait_done(c: httpx.Client, job_id: str, timeout: float = 420) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(1)


@pytest.mark.timeout(600)
def test_gateway_real_resources_match_the_document(
    gateway_schema: schemathesis.BaseSchema, rstack: Stack, fuzz_tally: dict[str, Tally]
) -> None:
    """The fuzz names a real pair or job only by chance (random path values answer 404/422), so the documented
    200 bodies of real rankings and jobs are checked here, with the same checks, on an analysed pair."""
    with httpx.Client(base_url=rstack.api, headers=ADMIN, timeout=60) as c:
        started = c.post("/analyze", json={"source": "en", "target": "fr"})
        assert started.status_code in (200, 202), started.text
        job = _wait_done(c, started.json()["id"])
    assert job["state"] == "succeeded", job
    config = job["result"]["config"]
    s = gateway_schema
    word = {"text": "water", "source": "en", "target": "fr"}
    ok = {200}
    cases = [  # (case, the statuses it may answer: mostly the 200 whose body is the point)
        (s["/analyze"]["POST"].Case(body={"source": "en", "target": "fr"}), ok),  # the result is known
        (s["/jobs"]["GET"].Case(), ok),
        (s["/jobs"]["GET"].Case(query={"state": "succeeded", "limit": 5}), ok),
        (s["/jobs/{job_id}"]["GET"].Case(path_parameters={"job_id": job["id"]}), ok),
        (s["/jobs/{job_id}/cancel"]["POST"].Case(path_parameters={"job_id": job["id"]}), {200, 409}),
        (s["/bridges"]["GET"].Case(), ok),
        (s["/bridges"]["GET"].Case(query={"config": config}), ok),
        (s["/bridges/configs"]["GET"].Case(), ok),
        (s["/bridges/{source}/{target}"]["GET"].Case(path_parameters={"source": "en", "target": "fr"}), ok),
        (
            s["/bridges/{source}/{target}"]["GET"].Case(
                path_parameters={"source": "en", "target": "fr"}, query={"config": config}
            ),
            ok,
        ),
        (s["/bridges/{source}/{target}"]["GET"].Case(path_parameters={"source": "fr", "target": "en"}), {404}),
        (s["/translate"]["POST"].Case(body=word), ok),
        (s["/translate"]["POST"].Case(body={**word, "task": "text", "text": "the water is cold", "bridge": "de"}), ok),
        (
            s["/translate/batch"]["POST"].Case(
                body={"items": [word, {**word, "source": "xx-invalid-"}, {**word, "bridge": "none"}]}
            ),
            ok,
        ),
        (s["/languages"]["GET"].Case(), ok),
        (s["/detect"]["POST"].Case(body={"text": "Alle Menschen sind frei und gleich an Würde"}), ok),
        (s["/ready"]["GET"].Case(), {200, 503}),  # 503 when the one-token probe waits behind a busy worker
    ]
    for case, statuses in cases:
        response = case.call(headers=ADMIN, timeout=120)
        fuzz_tally["gateway"].record(case.operation.label, response.status_code)
        case.validate_response(response, checks=GATEWAY_CHECKS, headers=ADMIN)
        assert response.status_code in statuses, (case.operation.label, response.status_code, response.text)


# --- the generation worker -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker_schema(keyed_worker: tuple[Service, str]) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": WORKER_EXAMPLES, "with-security-parameters": False},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    # the guard protects the document too
    return schemathesis.openapi.from_url(f"{keyed_worker[1]}/openapi.json", config=config, headers=WH)


@pytest.mark.timeout(300)
@schemathesis.pytest.from_fixture("worker_schema").include(path=WORKER_OPERATIONS).parametrize()
@FUZZ_SETTINGS
def test_worker_fuzz(case: schemathesis.Case, fuzz_tally: dict[str, Tally]) -> None:
    # vLLM's document makes `prompt` optional, so most generated completions stop at "prompt must be
    # provided"; give those one, so the rest of the generated body reaches the engine
    if (
        case.operation.path == "/v1/completions"
        and isinstance(case.body, dict)
        and "prompt" not in case.body
        and "prompt_embeds" not in case.body
    ):
        case.body["prompt"] = "water"
    response = case.call(headers=WH, timeout=120)
    fuzz_tally["worker"].record(case.operation.label, response.status_code)
    # vLLM's own document is not ours to make conform: only "no server error"
    case.validate_response(response, checks=[not_a_server_error], headers=WH)
