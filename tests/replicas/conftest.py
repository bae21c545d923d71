"""Two of each on one Redis (issue 24 items 1 and 3): two real Celery analyzer processes (solo pool, the same
`analyze` queue), two real gateways (`python -m services.api`), one vLLM generation worker on the tiny model
(the session's `gen_worker`). One stack for every test of this package: started once, ~20 s.

Settings: the small analysis of tests/api/conftest.py's `stack_env` (an analysis of the tiny model takes
seconds), a short broker visibility timeout and job lease (a killed analyzer's job comes back in seconds), a
rate limit and failed-auth lockout low enough to reach, and 127.0.0.1 as a trusted proxy, so a test can act as
another client through X-Forwarded-For (a lockout then locks out only that client, not the whole module).
Each test uses its own API keys (the rate limit counts per key and minute) and reads job records from Redis
rather than polling the gateways with a key.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from services.common.bridges import BridgeStore
from services.common.jobs import JobRecord, JobStore
from tests.api.conftest import stack_env, write_data_dir
from tests.support import RedisServer, Service, start_api, start_celery, wait_until

LANGS = ("en", "fr", "de", "it", "fi", "es", "pt")
# ten distinct pairs (item 1); candidates de, it (stack_env)
TEN = (
    ("en", "es"),
    ("en", "pt"),
    ("fr", "fi"),
    ("fr", "es"),
    ("fr", "pt"),
    ("fi", "es"),
    ("fi", "pt"),
    ("es", "pt"),
    ("es", "fr"),
    ("pt", "fi"),
)
# one pair per other test, so that no test finds another's job or ranking
OTHER = (("en", "fr"), ("en", "fi"), ("fi", "fr"), ("pt", "es"), ("es", "fi"), ("pt", "en"), ("es", "en"))
# pairs with a long dev validation (a big dictionary; the tests ask for 40 dev words a look): stopped mid-job, one
# each (the analyzers remember completions, so a second job of a pair would validate from memory)
SLOW = (("fi", "en"), ("de", "en"))

RATE_LIMIT = 40
AUTH_FAIL_LIMIT = 5
LEASE_S = 4
VISIBILITY_S = 8

SCOPES = ["translate", "analyze"]
KEYS = {
    "k-ten": SCOPES,
    "k-same-1": SCOPES,
    "k-same-2": SCOPES,
    "k-kill": SCOPES,
    "k-rate": SCOPES,
    "k-lock": SCOPES,
    "k-scope-a": SCOPES,
    "k-scope-b": SCOPES,
    "k-idem": SCOPES,
    "k-auto": ["translate"],
    "k-admin": ["admin"],
}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _big_dictionary(data: Path, source: str, target: str, n: int = 1500) -> None:
    """A pair with hundreds of dev words (they come from probe.tsv): its dev validation sends hundreds of
    generations (seconds)."""
    rows = [f"w{i}{source}\tw{i}{target}\ttest" for i in range(n)]
    d = data / "dict" / f"{source}-{target}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "all.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (d / "probe.tsv").write_text("\n".join(rows[:1300]) + "\n", encoding="utf-8")
    (d / "eval.tsv").write_text("\n".join(rows[1300:]) + "\n", encoding="utf-8")


@dataclass
class Replicas:
    """The running stack: `apis` (base URLs), `analyzers` (Celery services), one Redis."""

    redis_server: RedisServer
    env: dict[str, str]
    log_dir: Path
    home: Path
    worker: str
    analyzers: list[Service]
    api_svcs: list[Service]
    apis: list[str]
    r: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.r = redis.Redis.from_url(self.redis_server.url)
        self.jobs = JobStore(self.r)
        self.bridges = BridgeStore(self.r)

    def api(self, i: int) -> str:
        """The i-th request's gateway: alternating between the two."""
        return self.apis[i % len(self.apis)]

    def wait(self, job_id: str, timeout: float = 150.0) -> JobRecord:
        """The job record once it is terminal (read from Redis, so no key's rate limit is spent)."""
        rec: JobRecord | None = None

        def done() -> bool:
            nonlocal rec
            rec = self.jobs.get(job_id)
            return rec is not None and rec.state.terminal

        try:
            wait_until(done, timeout, 0.1, what=f"job {job_id}")
        except TimeoutError as e:
            raise AssertionError(f"{e}: {rec}\n{self.analyzer_logs()[-3000:]}") from e
        assert rec is not None
        return rec

    def analyzer_logs(self) -> str:
        return "\n".join(a.log.read_text(errors="replace") for a in self.analyzers)

    def runs(self, job_id: str, timeout: float = 10.0) -> list[int]:
        """Index of the analyzer that finished each run of the job ("job <id>: done (...)" in its log). The task
        logs that line just after it updates the record: wait (up to `timeout`) until there is one."""
        pattern = re.compile(rf"job {job_id}: done \(")
        deadline = time.monotonic() + timeout
        while True:
            found = [
                i for i, a in enumerate(self.analyzers) for _ in pattern.finditer(a.log.read_text(errors="replace"))
            ]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def publishes(self, rec: JobRecord) -> int:
        """How many rankings of the job's pair were published in its configuration (BridgeStore's counter)."""
        req = rec.request
        counts = self.bridges.publish_counts(req["model"], req.get("revision"), rec.result["config"])
        return counts.get(f"{req['source']}:{req['target']}", 0)

    def ranking_files(self, source: str, target: str) -> list[Path]:
        """The ranking artifacts written for a pair (one per finished analysis of it)."""
        return sorted((self.home / "artifacts").glob(f"*/rankings/{source}-{target}/ranking-*.json"))

    def analyzer_of_lease(self, job_id: str) -> int | None:
        """Which analyzer holds the job's lease (its token starts with the holder's pid)."""
        raw = self.r.get(f"bridgex:job-lease:{job_id}")
        if raw is None:
            return None
        pid = int(raw.decode().split(":")[0])
        found = [i for i, a in enumerate(self.analyzers) if a.proc is not None and a.proc.pid == pid]
        return found[0] if found else None

    def replace_analyzer(self, i: int) -> None:
        """A new analyzer in place of the i-th (after a test stopped it)."""
        self.analyzers[i].stop()
        self.analyzers[i] = start_celery(self.log_dir, self.redis_server.url, **self.env)

    def terminate(self, i: int, timeout: float = 90.0) -> float:
        """SIGTERM to the i-th analyzer (what Kubernetes and compose send first); seconds until it exited. A
        running job stops at its next check: between dev-validation looks, which take seconds here."""
        proc = self.analyzers[i].proc
        assert proc is not None
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
        return time.monotonic() - t0

    def metric(self, name: str) -> float:
        """A counter summed over both gateways' /metrics."""
        total = 0.0
        for api in self.apis:
            for line in httpx.get(f"{api}/metrics", timeout=10).text.splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="package")
def replicas(
    tiny_model_dir: Path, gen_worker: tuple[Service, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    home = tmp_path_factory.mktemp("replicas-home")
    log_dir = tmp_path_factory.mktemp("replicas-logs")
    server = RedisServer().start()
    env = stack_env(tiny_model_dir, server.url, gen_worker[1], home)
    data = Path(env["BRIDGEX_DATA_DIR"])
    write_data_dir(data, langs=LANGS, pairs=(*TEN, *OTHER))
    for pair in SLOW:
        _big_dictionary(data, *pair)
    env |= {
        "BRIDGEX_API_KEYS": json.dumps(KEYS),
        "BRIDGEX_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
        "BRIDGEX_AUTH_FAIL_LIMIT": str(AUTH_FAIL_LIMIT),
        "BRIDGEX_AUTH_LOCKOUT_S": "120",
        "BRIDGEX_TRUSTED_PROXIES": "127.0.0.1",
        "BRIDGEX_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
        "BRIDGEX_JOB_LEASE_S": str(LEASE_S),
        # the tests stop an analyzer mid-validation: through the worker the tiny model's validation lasts long
        # enough to be caught (the analyzer's own engine would finish it in a fraction of a second)
        "BRIDGEX_MEASURE_ENGINE": "worker",
    }
    started: list[Service] = []
    lock = threading.Lock()

    def celery() -> Service:
        svc = start_celery(log_dir, server.url, **env)
        with lock:
            started.append(svc)
        return svc

    def api() -> tuple[Service, str]:
        svc, url = start_api(log_dir, **env)
        with lock:
            started.append(svc)
        return svc, url

    stack: Replicas | None = None
    try:
        with ThreadPoolExecutor(4) as pool:  # the four start at once: ~15 s instead of ~40 s
            analyzers = [pool.submit(celery) for _ in range(2)]
            gateways = [pool.submit(api) for _ in range(2)]
            analyzer_svcs = [f.result() for f in analyzers]
            api_pairs = [f.result() for f in gateways]
        stack = Replicas(
            server,
            env,
            log_dir,
            home,
            gen_worker[1],
            analyzer_svcs,
            [s for s, _ in api_pairs],
            [u for _, u in api_pairs],
        )
        yield stack
    finally:
        for svc in [*started, *(stack.analyzers if stack is not None else [])]:  # + replacements tests started
            svc.stop()
        if stack is not None:
            stack.r.close()
        server.stop()


def post_all(requests: list[tuple[str, str, dict, dict]], workers: int = 20) -> list[httpx.Response]:
    """(method, url, json, headers) requests sent at once, each from its own thread (a concurrent burst)."""
    barrier = threading.Barrier(len(requests))

    def send(req: tuple[str, str, dict, dict]) -> httpx.Response:
        method, url, body, headers = req
        with httpx.Client(timeout=60) as c:
            barrier.wait(30)
            return c.request(method, url, json=body, headers=headers)

    with ThreadPoolExecutor(max(workers, len(requests))) as pool:
        return list(pool.map(send, requests))


def poll(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s: {what}")
