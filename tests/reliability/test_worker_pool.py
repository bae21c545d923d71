"""Two generation workers behind one gateway (BRIDGEX_WORKER_URLS), real processes: two vLLM workers on the tiny
model, the gateway, Redis. One worker is SIGKILLed under 20 concurrent /translate clients: no request fails but
streams whose tokens had started, the survivor serves everything after, and the worker restarted on its port
rejoins. Two workers with different weights are refused: the gateway will not start, a worker that joins with
other weights is kept out, and the analyzer's weight check fails naming both. The choice logic alone is
tests/core/test_client_pool.py."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import httpx
import pytest

from tests.api.conftest import T, stack_env
from tests.plain_vllm import PlainVllm
from tests.support import PYTHON, ROOT, Service, free_port, start_api, start_worker, wait_until

pytestmark = pytest.mark.integration

WORDS = ["water", "house", "dog", "cat", "tree", "sun", "moon", "book", "hand", "eye"]
WORD = {"source": "en", "target": "fr", "bridge": "none", "k_shot": 0, "task": "word", "max_tokens": 8}
STREAM = {"source": "en", "target": "fr", "bridge": "none", "k_shot": 0, "task": "text", "stream": True}
OTHER_WEIGHTS = "f00d" * 16


def served(url: str) -> float:
    """vLLM's count of finished requests (`vllm:request_success_total`, every finish reason)."""
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("vllm:request_success_total"))


def weight_hash(url: str) -> str:
    return httpx.get(f"{url}/bridgex/identity", timeout=10).json()["weight_hash"]


def pool_state(api: str) -> dict[str, dict]:
    """The gateway's view of each worker (GET /ready's generation_workers)."""
    return {w["url"]: w for w in httpx.get(f"{api}/ready", timeout=15).json()["generation_workers"]}


class OtherWeights(PlainVllm):
    """A stand-in worker that reports other weights on `GET /bridgex/identity`, on a chosen port."""

    def __init__(self, weights: str = OTHER_WEIGHTS, port: int = 0) -> None:
        super().__init__()
        self.weights, self.port = weights, port

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base, outer = super()._handler(), self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:
                if self.path == "/bridgex/identity":
                    outer.paths.append(f"GET {self.path}")
                    self._send(200, {"model_id": "other", "revision": None, "weight_hash": outer.weights})
                else:
                    super().do_GET()

        return Handler

    def start(self) -> OtherWeights:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self._server.serve_forever, name="other-weights", daemon=True).start()
        return self


class Load:
    """Clients sending /translate in a loop until stopped; every answer recorded as (kind, status, detail)."""

    def __init__(self, api: str, words: int = 20, streams: int = 4) -> None:
        self.api, self.words, self.streams = api, words, streams
        self.results: list[tuple[str, int, str]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def ok(self) -> int:
        with self._lock:
            return sum(1 for kind, status, _ in self.results if kind == "word" and status == 200)

    def _record(self, kind: str, status: int, detail: str) -> None:
        with self._lock:
            self.results.append((kind, status, detail))

    def _word(self, i: int) -> None:
        with httpx.Client(base_url=self.api, timeout=60) as c:
            n = 0
            while not self._stop.is_set():
                body = {**WORD, "text": WORDS[(i + n) % len(WORDS)]}
                n += 1
                try:
                    r = c.post("/translate", json=body, headers=T)
                except httpx.HTTPError as e:  # the gateway dropped the connection: a failure, and the client goes on
                    self._record("word", 0, f"{type(e).__name__}: {e}")
                    continue
                self._record("word", r.status_code, "" if r.status_code == 200 else r.text[:300])

    def _stream(self, i: int) -> None:
        with httpx.Client(base_url=self.api, timeout=60) as c:
            while not self._stop.is_set():
                body = {**STREAM, "text": f"the {WORDS[i]} is by the river", "max_tokens": 48}
                try:
                    r = c.post("/translate", json=body, headers=T)
                except httpx.HTTPError as e:
                    self._record("stream", 0, f"{type(e).__name__}: {e}")
                    continue
                events = [line.split(": ", 1)[1] for line in r.text.splitlines() if line.startswith("event: ")]
                outcome = "done" if events[-1:] == ["done"] else "error" if "error" in events else r.text[:300]
                self._record("stream", r.status_code, outcome)

    def start(self) -> Load:
        for i in range(self.words):
            self._threads.append(threading.Thread(target=self._word, args=(i,), daemon=True))
        for i in range(self.streams):
            self._threads.append(threading.Thread(target=self._stream, args=(i,), daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> list[tuple[str, int, str]]:
        self._stop.set()
        for t in self._threads:
            t.join(90)
        return list(self.results)


@pytest.fixture(scope="module")
def pool_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-pool-logs")


@pytest.fixture(scope="module")
def two_workers(tiny_model_dir: Path, pool_logs: Path) -> Iterator[list[tuple[Service, str]]]:
    """Two vLLM workers on the same tiny model folder (started side by side); a test may replace the first."""
    with ThreadPoolExecutor(2) as ex:
        workers = list(ex.map(lambda _: start_worker(tiny_model_dir, pool_logs), range(2)))
    yield workers
    for svc, _ in workers:
        svc.stop()


def test_kill_one_worker_under_load_then_it_rejoins(
    two_workers: list[tuple[Service, str]], tiny_model_dir: Path, pool_logs: Path, redis_url: str, tmp_path: Path
) -> None:
    (w1, u1), (_, u2) = two_workers
    assert weight_hash(u1) == weight_hash(u2)
    env = {**stack_env(tiny_model_dir, redis_url, u1, tmp_path), "BRIDGEX_WORKER_URLS": json.dumps([u1, u2])}
    api_svc, api = start_api(pool_logs, **env)
    load: Load | None = None
    try:
        assert all(w["up"] for w in pool_state(api).values())
        base1, base2 = served(u1), served(u2)
        load = Load(api).start()
        # both serve the load (least outstanding spreads it), then one dies mid-load
        wait_until(lambda: served(u1) >= base1 + 20 and served(u2) >= base2 + 20, 120, 0.2, "both workers serving")
        before_kill = load.ok()
        w1.kill()  # SIGKILL to its process group: API server and engine, connections reset mid-request
        wait_until(lambda: not pool_state(api)[u1]["up"], 15, 0.2, "the killed worker out of the pool")
        assert "cannot reach" in pool_state(api)[u1]["reason"] or "health probe" in pool_state(api)[u1]["reason"]
        # the survivor serves everything after; the dead one is sent nothing (only probed)
        n0, s0, sent0 = load.ok(), served(u2), pool_state(api)[u1]["sent"]
        time.sleep(5)
        n1, s1, sent1 = load.ok(), served(u2), pool_state(api)[u1]["sent"]
        results = load.stop()
        load = None
    finally:
        if load is not None:
            load.stop()
    try:
        words = [r for r in results if r[0] == "word"]
        streams = [r for r in results if r[0] == "stream"]
        failed = [r for r in words if r[1] != 200]
        assert not failed, (failed[:5], api_svc.tail(8000))  # not one non-stream request failed across the kill
        # a stream answers 200 only once its first tokens came; it may end in an error event only after that
        broken = [r for r in streams if r[1] != 200 or r[2] not in ("done", "error")]
        assert not broken, (broken[:5], api_svc.tail(8000))
        assert n0 > before_kill and n1 - n0 >= 20, (before_kill, n0, n1)
        # every request answered in the window was generated by the survivor (less those in flight at its edges)
        assert s1 - s0 >= (n1 - n0) - 24, (s0, s1, n0, n1)
        assert sent1 == sent0, (sent0, sent1)
        print(
            f"\nworker pool under load: {len(words)} word requests all 200 ({before_kill} before the kill), "
            f"{len(streams)} streams ({sum(r[2] == 'error' for r in streams)} broken after their first tokens)"
        )

        # restarted on the same port, it rejoins: requests reach it again
        port = urlparse(u1).port
        w1b, url = start_worker(tiny_model_dir, pool_logs, port=port)
        two_workers[0] = (w1b, url)
        assert url == u1
        wait_until(lambda: pool_state(api)[u1]["up"], 30, 0.2, "the restarted worker back in the pool")
        base1, sent_before = served(u1), pool_state(api)[u1]["sent"]
        with httpx.Client(base_url=api, timeout=60) as c, ThreadPoolExecutor(8) as ex:
            codes = list(
                ex.map(lambda w: c.post("/translate", json={**WORD, "text": w}, headers=T).status_code, WORDS * 4)
            )
        assert codes == [200] * len(codes)
        # its share follows its speed (least outstanding): a cold restarted worker may get few, but not none
        rejoined, sent = served(u1) - base1, pool_state(api)[u1]["sent"] - sent_before
        assert rejoined >= 1 and sent >= 1, (rejoined, sent)
        print(f"restarted worker served {rejoined:.0f} of {len(codes)} requests after rejoining")

        # both answer a prompt alike (greedy): the analyzer's gold-filter client over the pair equals one worker
        from bridgex.generation.client import SyncGenerationClient
        from bridgex.prompts import word_prompt

        prompts = [word_prompt(w, "en", "fr") for w in WORDS * 2]
        # one in flight: the same batch shape on either worker, so greedy decoding is bit-for-bit the same
        both = SyncGenerationClient([u1, u2], model=str(tiny_model_dir), concurrency=1)
        one = SyncGenerationClient(u2, model=str(tiny_model_dir), concurrency=1)
        assert [x.text for x in both.complete_many(prompts, max_tokens=8)] == [
            x.text for x in one.complete_many(prompts, max_tokens=8)
        ]
    finally:
        api_svc.stop()


def test_gateway_refuses_to_start_beside_other_weights(
    two_workers: list[tuple[Service, str]], tiny_model_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    u2 = two_workers[1][1]
    fake = OtherWeights().start()
    fake_url = fake.url
    try:
        env = {**stack_env(tiny_model_dir, redis_url, u2, tmp_path), "BRIDGEX_WORKER_URLS": f"{u2},{fake_url}"}
        proc = subprocess.run(
            [PYTHON, "-m", "services.api", "--host", "127.0.0.1", "--port", str(free_port())],
            env={**os.environ, "OMP_NUM_THREADS": "1", **env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        fake.stop()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "refusing to start" in out and "different weights" in out, out[-3000:]
    assert u2 in out and fake_url in out and weight_hash(u2)[:12] in out and OTHER_WEIGHTS[:12] in out
    assert fake.completions() == 0


def test_a_worker_joining_with_other_weights_is_kept_out(
    two_workers: list[tuple[Service, str]], tiny_model_dir: Path, pool_logs: Path, redis_url: str, tmp_path: Path
) -> None:
    u2 = two_workers[1][1]
    port = free_port()
    late = f"http://127.0.0.1:{port}"  # nothing there yet: the gateway starts, the worker joins later
    env = {**stack_env(tiny_model_dir, redis_url, u2, tmp_path), "BRIDGEX_WORKER_URLS": json.dumps([u2, late])}
    api_svc, api = start_api(pool_logs, **env)
    fake = OtherWeights(port=port)
    try:
        wait_until(lambda: not pool_state(api)[late]["up"], 15, 0.2, "the absent worker out")
        fake.start()
        wait_until(lambda: "different weights" in pool_state(api)[late]["reason"], 15, 0.2, "the join refused")
        reason = pool_state(api)[late]["reason"]
        assert late in reason and u2 in reason and OTHER_WEIGHTS[:12] in reason and weight_hash(u2)[:12] in reason
        with httpx.Client(base_url=api, timeout=60) as c:
            assert all(c.post("/translate", json={**WORD, "text": w}, headers=T).status_code == 200 for w in WORDS)
        assert fake.completions() == 0 and not pool_state(api)[late]["up"]
        # the control: the same worker reporting the right weights is taken in (the check is what kept it out)
        fake.weights = weight_hash(u2)
        wait_until(lambda: pool_state(api)[late]["up"], 15, 0.2, "the worker with the right weights in")
        with httpx.Client(base_url=api, timeout=60) as c:
            for w in WORDS:
                c.post("/translate", json={**WORD, "text": w}, headers=T)
        assert fake.completions() > 0
    finally:
        fake.stop()
        api_svc.stop()


def test_analyzer_weight_check_names_both_workers(two_workers: list[tuple[Service, str]], tiny_model_dir: Path) -> None:
    from services.analyzer.config import AnalyzerSettings
    from services.analyzer.stages.context import AnalysisFailed
    from services.analyzer.stages.probes import check_worker_weights

    u2 = two_workers[1][1]
    ours = weight_hash(u2)
    lm = SimpleNamespace(weight_hash=ours, model_id=str(tiny_model_dir), revision=None)
    fake = OtherWeights().start()
    try:
        settings = AnalyzerSettings(_env_file=None, model=str(tiny_model_dir), worker_urls=(u2, fake.url))
        with pytest.raises(AnalysisFailed) as ei:
            check_worker_weights(settings, lm, "gold filter")  # type: ignore[arg-type]
        msg = str(ei.value)
        assert "gold filter" in msg and u2 in msg and fake.url in msg
        assert ours[:12] in msg and OTHER_WEIGHTS[:12] in msg
        fake.weights = ours  # the control: the same weights on both pass
        assert check_worker_weights(settings, lm, "gold filter") == "verified"  # type: ignore[arg-type]
    finally:
        fake.stop()
