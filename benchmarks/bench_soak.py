"""Soak (issue 24 item 4): BENCH_SOAK_MINUTES (default 30) of mixed load on the whole stack, the RSS of every
process sampled each minute, and the goals checked at the end. Not part of `make test`, and `python -m
benchmarks` skips it: it runs only when named (`python -m benchmarks soak`) or with BENCH_SOAK=1.

    python -m benchmarks soak                               # its own stack, default model, 30 minutes
    BENCH_SOAK_MINUTES=3 BENCH_SOAK_MODEL=tiny python -m benchmarks soak           # a plumbing check
    python -m benchmarks soak --api http://127.0.0.1:8000   # attach to a running stack (or BENCH_SOAK_API)
    python -m benchmarks.bench_soak --help                  # every option and its environment variable

Own stack: `scripts/run-local.sh --detach` with the model of BENCH_SOAK_MODEL (else BRIDGEX_MODEL, else the
default; `tiny`: the tiny random Llama), a private redis-server (tests.support.RedisServer), free ports
(BRIDGEX_API_PORT, BRIDGEX_WORKER_PORT), its own BRIDGEX_RUN_DIR (logs, pid files), BRIDGEX_ARTIFACTS_DIR and
BRIDGEX_DATA_DIR (a copy of the data directory the settings name, so nothing is gathered over the network for the
pairs it uses), one key with every scope, no rate limit in the way, and an en->fr ranking published as a fixture
(benchmarks.fixtures.publish_fixture) so that cached reads are measured from the first minute. Stopped with
`run-local.sh stop` at the end; its logs stay (the path is printed). The default model's stack takes about 8 GB.

Attached (`--api URL`): the processes are found through the pid files of BRIDGEX_RUN_DIR (default ./var, as
run-local.sh writes them: run/{worker,analyzer,api}.pid) and their children; the key is BENCH_SOAK_KEY (none in
open auth mode; an admin key also sees the analyses `auto` enqueues).

Load: BENCH_SOAK_CLIENTS (4) closed-loop clients, each picking its next request by weight: POST /translate with
bridge auto and bridge none on BENCH_SOAK_PAIRS (en-fr,en-de; words from the data directory's eval split), GET
/bridges, GET /bridges/{s}/{t} of published pairs (the cached reads), GET /health (the baseline). Beside them a
poller (GET /jobs/{id} of every open job every 5 s, GET /jobs every 30 s) and, every BENCH_SOAK_ANALYZE_EVERY_S
(240), POST /analyze of a pair of the 15 languages that is not analysed yet (nor queued; pairs whose data the
data directory holds first), deferred while one it submitted is still queued.

RSS: every BENCH_SOAK_SAMPLE_S (60) of every process of the stack (gateway; Celery analyzer and its children;
vLLM API server, EngineCore and its workers), start / end / peak (sampled, and the kernel's VmHWM) per process,
and the growth after warm-up, from minute BENCH_SOAK_WARMUP_MINUTES (5) to the end of the load.

Growth is judged between samples taken while no analysis runs (the first one from the warm-up on, and the last
one, taken after the grace once every job has finished) when a process has two: a running analysis holds its
batches' activations, so a sample during one is not comparable with one between jobs; otherwise, and always shown,
the end against the warm-up minute.

Goals: no process grows more than 10% after warm-up (processes under BENCH_SOAK_MIN_RSS_MB, 50, are shown but
not judged); 0 x 5xx (and no request without an answer: timeouts, transport errors); 0 lost jobs (a job is lost
when, BENCH_SOAK_GRACE_S (600) after the load, or once no job is queued, it is neither terminal nor running, or
its record is gone); p99 of cached reads (GET /bridges/{s}/{t}, 200s) within 2x of GET /health's p99. Prints a
table and writes JSON to BENCH_SOAK_OUT (default var/soak.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import permutations
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.fixtures import pct

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-soak-key"
SERVICES = ("api", "analyzer", "worker")
TERMINAL = {"succeeded", "failed", "cancelled"}
GROWTH_GOAL_PCT = 10.0
RATIO_GOAL = 2.0
TOL_MIN = 0.05  # minutes: a sample this close to the warm-up minute (or the end) counts as taken there
FALLBACK_WORDS = ("water", "house", "dog", "tree", "sun", "moon", "book", "hand", "river", "stone", "bread", "fire")
# Relative weights of what each load client sends next.
MIX = (("translate_auto", 2), ("translate_none", 2), ("bridges_pair", 2), ("health", 2), ("bridges_list", 1))
ENDPOINTS = {
    "translate_auto": "POST /translate auto",
    "translate_none": "POST /translate none",
    "bridges_pair": "GET /bridges/{s}/{t}",
    "bridges_list": "GET /bridges",
    "health": "GET /health",
    "job": "GET /jobs/{id}",
    "jobs_list": "GET /jobs",
    "analyze": "POST /analyze",
}


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


# --------------------------------------------------------------------------------------------- options


@dataclass
class Options:
    api: str | None
    key: str | None
    minutes: float
    warmup_minutes: float
    clients: int
    pairs: list[tuple[str, str]]
    analyze_every_s: float
    sample_s: float
    grace_s: float
    timeout_s: float
    min_rss_mb: float
    model: str
    run_dir: Path
    out: Path
    keep: bool


NUMBERS: tuple[tuple[str, str, type, str, str], ...] = (
    ("--minutes", "BENCH_SOAK_MINUTES", float, "30", "load duration"),
    ("--warmup-minutes", "BENCH_SOAK_WARMUP_MINUTES", float, "5", "RSS growth is measured from this minute"),
    ("--clients", "BENCH_SOAK_CLIENTS", int, "4", "closed-loop load clients"),
    ("--analyze-every-s", "BENCH_SOAK_ANALYZE_EVERY_S", float, "240", "a new pair is analysed this often"),
    ("--sample-s", "BENCH_SOAK_SAMPLE_S", float, "60", "RSS sampling period"),
    ("--grace-s", "BENCH_SOAK_GRACE_S", float, "600", "after the load, the longest wait for queued jobs"),
    ("--timeout-s", "BENCH_SOAK_TIMEOUT_S", float, "120", "client timeout per request"),
    ("--min-rss-mb", "BENCH_SOAK_MIN_RSS_MB", float, "50", "smaller processes are shown, not judged"),
)


def _pair(text: str) -> tuple[str, str]:
    s, _, t = text.strip().partition("-")
    if not s or not t:
        raise argparse.ArgumentTypeError(f"a pair is source-target, e.g. en-fr, not {text!r}")
    return s, t


def parse_options(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks soak", description="Soak: mixed load, RSS each minute, goals (issue 24 item 4)."
    )
    p.add_argument("selectors", nargs="*", help=argparse.SUPPRESS)  # `soak` of `python -m benchmarks soak`
    p.add_argument("--api", default=os.environ.get("BENCH_SOAK_API"), help="attach to this gateway (BENCH_SOAK_API)")
    p.add_argument("--key", default=os.environ.get("BENCH_SOAK_KEY"), help="API key when attached (BENCH_SOAK_KEY)")
    for flag, var, kind, default, what in NUMBERS:
        p.add_argument(flag, type=kind, default=kind(_env(var, default)), help=f"{what} ({var}, {default})")
    p.add_argument(
        "--pairs", default=_env("BENCH_SOAK_PAIRS", "en-fr,en-de"), help="translated pairs (BENCH_SOAK_PAIRS)"
    )
    p.add_argument(
        "--model",
        default=os.environ.get("BENCH_SOAK_MODEL") or os.environ.get("BRIDGEX_MODEL") or "gemma-3-270m",
        help="own stack: the model (`tiny`: the tiny random Llama; BENCH_SOAK_MODEL, else BRIDGEX_MODEL)",
    )
    p.add_argument(
        "--run-dir",
        default=os.environ.get("BRIDGEX_RUN_DIR") or str(ROOT / "var"),
        help="attached: the run dir whose run/*.pid name the processes (BRIDGEX_RUN_DIR)",
    )
    p.add_argument(
        "--out", default=_env("BENCH_SOAK_OUT", str(ROOT / "var" / "soak.json")), help="JSON (BENCH_SOAK_OUT)"
    )
    p.add_argument(
        "--keep",
        action="store_true",
        default=os.environ.get("BENCH_SOAK_KEEP") == "1",
        help="keep the data and artifacts copies (BENCH_SOAK_KEEP=1)",
    )
    a = p.parse_args(argv)
    return Options(
        api=a.api.rstrip("/") if a.api else None,
        key=a.key,
        minutes=a.minutes,
        warmup_minutes=a.warmup_minutes,
        clients=max(1, a.clients),
        pairs=[_pair(x) for x in a.pairs.split(",") if x.strip()],
        analyze_every_s=a.analyze_every_s,
        sample_s=a.sample_s,
        grace_s=a.grace_s,
        timeout_s=a.timeout_s,
        min_rss_mb=a.min_rss_mb,
        model=a.model,
        run_dir=Path(a.run_dir),
        out=Path(a.out),
        keep=a.keep,
    )


# --------------------------------------------------------------------------------------------- own stack


@dataclass
class Stack:
    api: str
    key: str | None
    run_dir: Path
    data_dir: Path
    own: bool
    log_dir: Path | None = None


def _copy_data(dest: Path) -> Path:
    """A copy of the data directory the settings name (BRIDGEX_DATA_DIR / BRIDGEX_HOME): the pairs it holds need
    no gathering, and the soak writes nothing into the user's."""
    from bridgex.settings import CoreSettings

    src = Path(CoreSettings().data_path).expanduser()
    if src.is_dir():
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.lock", ".lock*"))
    else:
        print(f"  no data directory at {src}: the analyzer gathers each pair's data (network)", flush=True)
        dest.mkdir(parents=True)
    return dest


@contextmanager
def own_stack(opts: Options) -> Iterator[Stack]:
    from benchmarks.fixtures import publish_fixture
    from tests.support import RedisServer, free_port

    tmp = Path(tempfile.mkdtemp(prefix="bridgex-soak-"))
    model = opts.model
    extra: dict[str, str] = {}
    if model == "tiny":
        from bridgex.models import tiny_random_llama

        model = str(tiny_random_llama(tmp / "tiny"))
        extra["BRIDGEX_MAX_MODEL_LEN"] = os.environ.get("BRIDGEX_MAX_MODEL_LEN", "1024")
    run_dir, data_dir, artifacts = tmp / "var", tmp / "data", tmp / "artifacts"
    _copy_data(data_dir)
    rs = RedisServer()
    env = {k: v for k, v in os.environ.items() if k not in ("BRIDGEX_WORKER_URLS", "BRIDGEX_AUTH_OPEN")}
    env.update(
        {
            "BRIDGEX_MODEL": model,
            "BRIDGEX_RUN_DIR": str(run_dir),
            "BRIDGEX_DATA_DIR": str(data_dir),
            "BRIDGEX_ARTIFACTS_DIR": str(artifacts),
            "BRIDGEX_REDIS_URL": rs.url,  # its port is chosen at construction
            "BRIDGEX_API_HOST": "127.0.0.1",
            "BRIDGEX_API_PORT": str(free_port()),
            "BRIDGEX_WORKER_PORT": str(free_port()),
            "BRIDGEX_API_KEYS": json.dumps({KEY: ["translate", "analyze", "admin"]}),
            "BRIDGEX_RATE_LIMIT_PER_MINUTE": "100000000",
            **extra,
        }
    )
    script = str(ROOT / "scripts" / "run-local.sh")
    api = f"http://127.0.0.1:{env['BRIDGEX_API_PORT']}"
    try:
        rs.start()
        print(f"starting the stack ({Path(model).name}; logs in {run_dir / 'log'}) ...", flush=True)
        t0 = time.monotonic()
        done = subprocess.run([script, "--detach"], env=env, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"run-local.sh --detach failed (rc {done.returncode}); logs in {run_dir / 'log'}")
        print(f"  stack up in {time.monotonic() - t0:.0f} s: gateway {api}", flush=True)
        gw = {k: v for k, v in env.items() if k.startswith("BRIDGEX_")}
        gw["BRIDGEX_WORKER_URL"] = f"http://127.0.0.1:{env['BRIDGEX_WORKER_PORT']}"
        publish_fixture(rs.url, gw, "en", "fr")
        yield Stack(api, KEY, run_dir, data_dir, own=True, log_dir=run_dir / "log")
    finally:
        stop = subprocess.run([script, "stop"], env=env, cwd=ROOT, capture_output=True, text=True)
        if stop.returncode != 0:
            sys.stderr.write(stop.stdout[-2000:] + stop.stderr[-2000:])
        rs.stop()
        if not opts.keep:
            for d in (data_dir, artifacts, tmp / "tiny"):
                shutil.rmtree(d, ignore_errors=True)
        print(f"stack stopped; logs kept in {run_dir / 'log'}", flush=True)


# --------------------------------------------------------------------------------------------- RSS


def _pids(run_dir: Path) -> dict[str, int]:
    out = {}
    for name in SERVICES:
        with suppress(OSError, ValueError):
            out[name] = int((run_dir / "run" / f"{name}.pid").read_text().strip())
    return out


def _label(p: psutil.Process) -> str:
    """A short name: VLLM::EngineCore, celery:MainProcess, the module of `python -m`, or the process name."""
    try:
        cmd = p.cmdline()
    except psutil.Error:
        cmd = []
    first = cmd[0] if cmd else ""
    if first.startswith("VLLM::"):
        return first.split()[0]
    if first.startswith("[celeryd"):
        m = re.search(r"\[celeryd: [^\]]*:(\w+)\]", first)
        return f"celery:{m.group(1)}" if m else "celery"
    if "-m" in cmd[:-1]:
        return cmd[cmd.index("-m") + 1].replace("vllm.entrypoints.openai.", "vllm.")
    if "multiprocessing" in " ".join(cmd):
        return "multiprocessing child"
    with suppress(psutil.Error):
        return p.name()
    return "?"


def _hwm_mb(pid: int) -> float | None:
    with suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


@dataclass
class Proc:
    service: str
    pid: int
    label: str
    samples: list[tuple[float, float]] = field(default_factory=list)  # (minute, RSS MB)
    hwm_mb: float | None = None


class RssSampler:
    """RSS of every process under the services' pids (the pid files' processes and all their descendants)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.procs: dict[int, Proc] = {}
        self.times: list[float] = []
        self.idle: set[float] = set()  # minutes of the samples taken while no analysis ran

    def sample(self, minute: float, idle: bool = False) -> None:
        self.times.append(minute)
        if idle:
            self.idle.add(minute)
        for service, pid in self.roots.items():
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for p in tree:
                try:
                    rss = p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                rec = self.procs.get(p.pid)
                if rec is None:
                    rec = self.procs[p.pid] = Proc(service, p.pid, _label(p))
                rec.samples.append((minute, rss))
                hwm = _hwm_mb(p.pid)
                if hwm is not None:
                    rec.hwm_mb = max(rec.hwm_mb or 0.0, hwm)

    def report(self, warmup: float, end: float, min_rss_mb: float) -> list[dict[str, Any]]:
        rows = []
        for rec in sorted(self.procs.values(), key=lambda r: (SERVICES.index(r.service), r.pid)):
            xs = rec.samples
            at_w = next((mb for m, mb in xs if m >= warmup - TOL_MIN), None)
            present_at_end = xs[-1][0] >= end - TOL_MIN
            first_m = xs[0][0]
            growth = None
            if at_w is not None and present_at_end and first_m <= warmup + TOL_MIN and at_w > 0:
                growth = (xs[-1][1] - at_w) / at_w * 100
            # like with like: an analysis holds activations and batches while it runs, so a sample taken during
            # one is not comparable with one taken between jobs; growth between the first idle sample after the
            # warm-up and the last idle one is what a leak shows as (judged on it when there are two)
            idle = [(m, mb) for m, mb in xs if m in self.idle and m >= warmup - TOL_MIN]
            idle_growth = None
            if len(idle) >= 2 and present_at_end and idle[-1][0] >= end - TOL_MIN and idle[0][1] > 0:
                idle_growth = (idle[-1][1] - idle[0][1]) / idle[0][1] * 100
            growth_judged = idle_growth if idle_growth is not None else growth
            judged = growth_judged is not None and at_w is not None and at_w >= min_rss_mb
            rows.append(
                {
                    "service": rec.service,
                    "pid": rec.pid,
                    "process": rec.label,
                    "start_mb": round(xs[0][1], 1),
                    "start_minute": round(first_m, 2),
                    "end_mb": round(xs[-1][1], 1),
                    "end_minute": round(xs[-1][0], 2),
                    "peak_mb": round(max(mb for _, mb in xs), 1),
                    "hwm_mb": round(rec.hwm_mb, 1) if rec.hwm_mb is not None else None,
                    "at_warmup_mb": round(at_w, 1) if at_w is not None else None,
                    "growth_after_warmup_pct": round(growth, 2) if growth is not None else None,
                    "idle_from": [round(idle[0][0], 2), round(idle[0][1], 1)] if idle_growth is not None else None,
                    "idle_growth_pct": round(idle_growth, 2) if idle_growth is not None else None,
                    "growth_judged_pct": round(growth_judged, 2) if growth_judged is not None else None,
                    "judged": judged,
                    "samples": [[round(m, 2), round(mb, 1)] for m, mb in xs],
                }
            )
        return rows


# --------------------------------------------------------------------------------------------- load


@dataclass
class Endpoint:
    lat: list[float] = field(default_factory=list)  # ms of the answered requests
    codes: Counter = field(default_factory=Counter)
    ok_lat: list[float] = field(default_factory=list)  # ms of the 2xx answers
    timeouts: int = 0
    errors: Counter = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        n = len(self.lat)
        return {
            "requests": n + self.timeouts + sum(self.errors.values()),
            "answered": n,
            "codes": {str(k): v for k, v in sorted(self.codes.items())},
            "5xx": sum(v for k, v in self.codes.items() if k >= 500),
            "timeouts": self.timeouts,
            "transport_errors": dict(self.errors),
            "p50_ms": round(statistics.median(self.lat), 2) if n else None,
            "p99_ms": round(pct(self.lat, 99), 2) if n else None,
            "p50_ms_2xx": round(statistics.median(self.ok_lat), 2) if self.ok_lat else None,
            "p99_ms_2xx": round(pct(self.ok_lat, 99), 2) if self.ok_lat else None,
        }


@dataclass
class Job:
    id: str
    origin: str  # "submitted" (POST /analyze) or "auto" (seen in GET /jobs)
    pair: str
    state: str = "queued"
    error: str | None = None
    submitted_minute: float | None = None


class Soak:
    def __init__(self, opts: Options, stack: Stack, client: httpx.AsyncClient) -> None:
        self.o = opts
        self.stack = stack
        self.c = client
        self.h = {"Authorization": f"Bearer {stack.key}"} if stack.key else {}
        self.ep: dict[str, Endpoint] = {k: Endpoint() for k in ENDPOINTS}
        self.jobs: dict[str, Job] = {}
        self.words = {p: _words(stack.data_dir, *p) for p in opts.pairs}
        self.cached_pairs: list[tuple[str, str]] = []
        self.analyzed: set[tuple[str, str]] = set()
        self.analyze_log: list[dict[str, Any]] = []
        self.deferred = 0
        self.t0 = 0.0
        self.until = 0.0
        self.rng = random.Random(0)

    def minute(self) -> float:
        return (time.monotonic() - self.t0) / 60

    async def call(self, name: str, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response | None:
        ep = self.ep[name]
        t = time.perf_counter()
        try:
            r = await self.c.request(method, path, headers=self.h, json=body, **kw)
        except httpx.TimeoutException:
            ep.timeouts += 1
            return None
        except httpx.TransportError as e:
            ep.errors[type(e).__name__] += 1
            return None
        ms = (time.perf_counter() - t) * 1e3
        ep.lat.append(ms)
        ep.codes[r.status_code] += 1
        if r.status_code < 300:
            ep.ok_lat.append(ms)
        return r

    # ------------------------------------------------------------------ what is analysed

    async def refresh_pairs(self) -> None:
        r = await self.call("bridges_list", "GET", "/bridges")
        if r is not None and r.status_code == 200:
            pairs = [(p["source"], p["target"]) for p in r.json().get("pairs", [])]
            self.analyzed.update(pairs)
            self.cached_pairs = sorted(set(self.cached_pairs) | set(pairs))
        r = await self.call("jobs_list", "GET", "/jobs", params={"limit": 500})
        if r is not None and r.status_code == 200:
            for rec in r.json().get("jobs", []):
                req = rec.get("request") or {}
                pair = f"{req.get('source')}-{req.get('target')}"
                self.analyzed.add((str(req.get("source")), str(req.get("target"))))
                job = self.jobs.get(rec["id"])
                if job is None:
                    job = self.jobs[rec["id"]] = Job(rec["id"], "auto", pair)
                self._update(job, rec)

    def _update(self, job: Job, rec: dict[str, Any]) -> None:
        job.state = str(rec.get("state"))
        job.error = rec.get("error")

    def next_pair(self) -> tuple[str, str] | None:
        from bridgex.data.ensure import missing_data
        from bridgex.languages import PAPER_LANGUAGES

        taken = self.analyzed | set(self.o.pairs) | set(self.cached_pairs)
        left = [p for p in permutations(sorted(PAPER_LANGUAGES), 2) if p not in taken]
        self.rng.shuffle(left)
        with_data = [p for p in left if not any(missing_data(self.stack.data_dir, [p]))]
        pick = (with_data or left or [None])[0]
        return pick

    # ------------------------------------------------------------------ tasks

    async def load_client(self, i: int) -> None:
        rng = random.Random(1000 + i)
        names = [n for n, _ in MIX]
        weights = [w for _, w in MIX]
        k = 0
        while time.monotonic() < self.until:
            what = rng.choices(names, weights)[0]
            k += 1
            if what.startswith("translate"):
                s, t = self.o.pairs[(i + k) % len(self.o.pairs)]
                words = self.words[(s, t)]
                body = {
                    "text": words[(i * 7 + k) % len(words)],
                    "source": s,
                    "target": t,
                    "bridge": "auto" if what == "translate_auto" else "none",
                }
                await self.call(what, "POST", "/translate", body)
            elif what == "bridges_pair":
                if not self.cached_pairs:
                    await self.call("health", "GET", "/health")
                    continue
                s, t = self.cached_pairs[(i + k) % len(self.cached_pairs)]
                await self.call(what, "GET", f"/bridges/{s}/{t}")
            elif what == "bridges_list":
                await self.call(what, "GET", "/bridges")
            else:
                await self.call("health", "GET", "/health")

    async def poll_jobs(self) -> None:
        """GET /jobs/{id} of every job not yet terminal; a 404 marks it missing (a lost job)."""
        for job in list(self.jobs.values()):
            if job.state in TERMINAL:
                continue
            r = await self.call("job", "GET", f"/jobs/{job.id}")
            if r is not None and r.status_code == 200:
                self._update(job, r.json())
            elif r is not None and r.status_code == 404:
                job.state = "missing"

    async def poller(self, until: float) -> None:
        last_list = 0.0
        while time.monotonic() < until:
            await self.poll_jobs()
            if time.monotonic() - last_list >= 30:
                last_list = time.monotonic()
                await self.refresh_pairs()
            await asyncio.sleep(5)

    async def analyses(self) -> None:
        await asyncio.sleep(min(30.0, self.o.analyze_every_s / 4, self.o.minutes * 60 / 4))
        while time.monotonic() < self.until:
            if any(j.origin == "submitted" and j.state == "queued" for j in self.jobs.values()):
                self.deferred += 1
                await asyncio.sleep(max(0.0, min(15.0, self.until - time.monotonic())))
                continue
            await self.refresh_pairs()
            pair = self.next_pair()
            if pair is None:
                print("  every pair of the 15 languages is analysed or queued: no new analysis", flush=True)
                return
            s, t = pair
            m = self.minute()
            r = await self.call("analyze", "POST", "/analyze", {"source": s, "target": t})
            entry: dict[str, Any] = {"minute": round(m, 2), "pair": f"{s}-{t}", "status": r and r.status_code}
            self.analyzed.add(pair)
            if r is not None and r.status_code in (200, 202):
                rec = r.json()
                job = self.jobs.get(rec["id"])
                if job is None or job.origin == "auto":
                    job = self.jobs[rec["id"]] = Job(rec["id"], "submitted", f"{s}-{t}", submitted_minute=m)
                self._update(job, rec)
                entry["job"] = rec["id"]
            elif r is not None:
                entry["body"] = r.text[:300]
            self.analyze_log.append(entry)
            print(f"  [{m:5.1f} min] POST /analyze {s}-{t}: {entry['status']}", flush=True)
            await asyncio.sleep(max(0.0, min(self.o.analyze_every_s, self.until - time.monotonic())))

    def busy(self) -> bool:
        """An analysis is running (as of the poller's last look)."""
        return any(j.state == "running" for j in self.jobs.values())

    async def sampler(self, rss: RssSampler) -> None:
        while True:
            rss.sample(self.minute(), idle=not self.busy())
            total = sum(p.samples[-1][1] for p in rss.procs.values() if p.samples and p.samples[-1][0] == rss.times[-1])
            done = sum(e.summary()["answered"] for e in self.ep.values())
            fivexx = sum(e.summary()["5xx"] for e in self.ep.values())
            states = Counter(j.state for j in self.jobs.values())
            print(
                f"  [{rss.times[-1]:5.1f} min] stack RSS {total:8.0f} MB   requests {done}   5xx {fivexx}   "
                f"jobs {dict(states)}",
                flush=True,
            )
            left = self.until - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(self.o.sample_s, left))

    async def grace(self) -> float:
        t = time.monotonic()
        await self.refresh_pairs()  # jobs `auto` enqueued in the last seconds of the load
        while True:
            await self.poll_jobs()
            if not any(j.state in ("queued", "running") for j in self.jobs.values()):
                break
            if time.monotonic() - t >= self.o.grace_s:
                break
            await asyncio.sleep(5)
        return time.monotonic() - t

    async def run(self, rss: RssSampler) -> dict[str, Any]:
        for path in ("/health", "/bridges"):
            r = await self.c.get(path, headers=self.h)
            if r.status_code != 200:
                raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
        await self.refresh_pairs()
        print(
            f"load: {self.o.clients} clients for {self.o.minutes:g} min; translate {_names(self.o.pairs)}; cached "
            f"reads of {_names(self.cached_pairs) or '(none yet)'}; a new analysis every "
            f"{self.o.analyze_every_s:g} s",
            flush=True,
        )
        self.t0 = time.monotonic()
        self.until = self.t0 + self.o.minutes * 60
        await asyncio.gather(
            self.sampler(rss),
            self.poller(self.until),
            self.analyses(),
            *(self.load_client(i) for i in range(self.o.clients)),
        )
        load_minutes = self.minute()
        print(
            f"load done after {load_minutes:.1f} min; then up to {self.o.grace_s:g} s until no job is queued",
            flush=True,
        )
        waited = await self.grace()
        rss.sample(self.minute(), idle=not self.busy())  # the end, between jobs when the grace saw them all finish
        last = rss.times[-1]
        return {"load_minutes": round(load_minutes, 3), "last_sample_minute": last, "grace_waited_s": round(waited, 1)}


def _names(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{s}-{t}" for s, t in pairs)


def _words(data_dir: Path, s: str, t: str, n: int = 60) -> list[str]:
    """Source words of the pair's eval split (single words), else a fixed list."""
    with suppress(Exception):
        from bridgex.data.layout import DataLayout

        words = [w for w in DataLayout(data_dir).dictionary(s, t, "eval").sources if w.strip() and " " not in w]
        if words:
            return words[:n]
    return list(FALLBACK_WORDS)


# --------------------------------------------------------------------------------------------- report


def report(soak: Soak, rss_rows: list[dict[str, Any]], meta: dict[str, Any], warmup: float) -> dict[str, Any]:
    eps = {ENDPOINTS[k]: e.summary() for k, e in soak.ep.items()}
    print(f"\n{'endpoint':<24}{'requests':>9}{'5xx':>6}{'no answer':>10}{'p50 ms':>10}{'p99 ms':>10}   codes")
    for name, s in eps.items():
        if not s["requests"]:
            continue
        noans = s["timeouts"] + sum(s["transport_errors"].values())
        p50 = f"{s['p50_ms']:10.1f}" if s["p50_ms"] is not None else f"{'-':>10}"
        p99 = f"{s['p99_ms']:10.1f}" if s["p99_ms"] is not None else f"{'-':>10}"
        print(f"{name:<24}{s['requests']:>9}{s['5xx']:>6}{noans:>10}{p50}{p99}   {s['codes']}")

    print(
        f"\n{'service':<9}{'process':<22}{'pid':>8}{'start MB':>10}{'end MB':>9}{'peak MB':>9}{'VmHWM':>9}"
        f"{f'@{warmup:g}min':>9}{'growth':>9}{'idle->idle':>12}"
    )
    for r in rss_rows:
        g = r["growth_after_warmup_pct"]
        gs = f"{g:+8.1f}%" if g is not None else f"{'-':>9}"
        note = "" if r["judged"] or g is None else "  (small, not judged)"
        if r["start_minute"] > warmup + TOL_MIN or r["end_minute"] < meta["last_sample_minute"] - TOL_MIN:
            note = f"  (seen min {r['start_minute']:g}-{r['end_minute']:g})"
        hwm = f"{r['hwm_mb']:9.0f}" if r["hwm_mb"] is not None else f"{'-':>9}"
        atw = f"{r['at_warmup_mb']:9.0f}" if r["at_warmup_mb"] is not None else f"{'-':>9}"
        ig = r["idle_growth_pct"]
        igs = f"{ig:+11.1f}%" if ig is not None else f"{'-':>12}"
        print(
            f"{r['service']:<9}{r['process'][:21]:<22}{r['pid']:>8}{r['start_mb']:10.0f}{r['end_mb']:9.0f}"
            f"{r['peak_mb']:9.0f}{hwm}{atw}{gs}{igs}{note}"
        )

    jobs = list(soak.jobs.values())
    states = Counter(j.state for j in jobs)
    lost = [j for j in jobs if j.state not in TERMINAL and j.state != "running"]
    by_origin = {
        o: {
            "count": sum(1 for j in jobs if j.origin == o),
            **Counter(j.state for j in jobs if j.origin == o),
        }
        for o in ("submitted", "auto")
    }
    print(
        f"\njobs: {len(jobs)} seen ({by_origin['submitted']['count']} submitted by POST /analyze, "
        f"{by_origin['auto']['count']} enqueued by auto); succeeded {states['succeeded']}, failed "
        f"{states['failed']}, cancelled {states['cancelled']}, running {states['running']}, lost {len(lost)}"
        + (f" ({', '.join(f'{j.pair} {j.state}' for j in lost)})" if lost else "")
    )
    for j in jobs:
        if j.state == "failed" and j.error:
            print(f"  failed {j.pair} ({j.origin}): {j.error[:160]}")
    if soak.deferred:
        print(f"  new analyses deferred {soak.deferred} x 15 s while one submitted was still queued")

    judged = [r for r in rss_rows if r["judged"]]
    worst = max(judged, key=lambda r: r["growth_judged_pct"], default=None)
    grew = [r for r in judged if r["growth_judged_pct"] > GROWTH_GOAL_PCT]
    fivexx = sum(s["5xx"] for s in eps.values())
    noanswer = sum(s["timeouts"] + sum(s["transport_errors"].values()) for s in eps.values())
    cached, health = eps[ENDPOINTS["bridges_pair"]], eps[ENDPOINTS["health"]]
    ratio = cached["p99_ms_2xx"] / health["p99_ms"] if cached["p99_ms_2xx"] is not None and health["p99_ms"] else None
    goals = {
        "rss_growth_after_warmup_le_10pct": {
            "met": bool(judged) and not grew,
            "worst": f"{worst['service']}/{worst['process']} {worst['growth_judged_pct']:+.1f}%" if worst else None,
            "over": [f"{r['service']}/{r['process']} {r['growth_judged_pct']:+.1f}%" for r in grew],
        },
        "no_5xx": {"met": fivexx == 0 and noanswer == 0, "5xx": fivexx, "no_answer": noanswer},
        "no_lost_jobs": {"met": not lost, "lost": [{"id": j.id, "pair": j.pair, "state": j.state} for j in lost]},
        "cached_p99_within_2x_health": {
            "met": ratio is not None and ratio <= RATIO_GOAL,
            "ratio": round(ratio, 3) if ratio is not None else None,
            "cached_p99_ms": cached["p99_ms_2xx"],
            "health_p99_ms": health["p99_ms"],
        },
    }

    def word(goal: dict[str, Any], measured: bool = True) -> str:
        return "met" if goal["met"] else "MISSED" if measured else "NOT MEASURED"

    g = goals
    growth = g["rss_growth_after_warmup_le_10pct"]
    print("\ngoals:")
    print(
        f"  no process grows > {GROWTH_GOAL_PCT:g}% after minute {warmup:g}: {word(growth, bool(judged))} (worst "
        f"{growth['worst'] or 'n/a: no process sampled from the warm-up to the end'})"
    )
    print(f"  0 x 5xx: {word(g['no_5xx'])} ({fivexx} 5xx, {noanswer} without an answer)")
    print(f"  0 lost jobs: {word(g['no_lost_jobs'])} ({len(lost)} lost of {len(jobs)})")
    rs = f"{ratio:.2f}" if ratio is not None else "n/a: no cached read answered 200 (no pair published)"
    print(
        f"  p99 cached reads <= {RATIO_GOAL:g}x /health p99: "
        f"{word(g['cached_p99_within_2x_health'], ratio is not None)} "
        f"({cached['p99_ms_2xx']} ms / {health['p99_ms']} ms = {rs})"
    )
    return {
        "endpoints": eps,
        "processes": rss_rows,
        "jobs": {
            "seen": len(jobs),
            "states": dict(states),
            "by_origin": by_origin,
            "lost": len(lost),
            "records": [j.__dict__ for j in jobs],
            "analyses_started": soak.analyze_log,
            "deferred_checks": soak.deferred,
        },
        "cached_pairs": _names(soak.cached_pairs),
        "goals": goals,
        "all_met": all(v["met"] for v in goals.values()),
    }


# --------------------------------------------------------------------------------------------- main


@contextmanager
def attached(opts: Options) -> Iterator[Stack]:
    from bridgex.settings import CoreSettings

    assert opts.api
    yield Stack(opts.api, opts.key, opts.run_dir, Path(CoreSettings().data_path).expanduser(), own=False)


async def _run(opts: Options, stack: Stack) -> dict[str, Any]:
    roots = _pids(stack.run_dir)
    missing = [s for s in SERVICES if s not in roots or not psutil.pid_exists(roots[s])]
    if missing:
        print(f"  no live pid for {missing} under {stack.run_dir / 'run'}: their RSS is not sampled", flush=True)
    roots = {s: p for s, p in roots.items() if psutil.pid_exists(p)}
    rss = RssSampler(roots)
    limits = httpx.Limits(max_connections=4 * opts.clients + 8, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=stack.api, limits=limits, timeout=opts.timeout_s) as c:
        soak = Soak(opts, stack, c)
        meta = await soak.run(rss)
    warmup = opts.warmup_minutes
    if warmup >= opts.minutes:
        warmup = opts.minutes / 2
        print(f"  the run is shorter than the warm-up: growth is measured from minute {warmup:g}")
    rows = rss.report(warmup, meta["last_sample_minute"], opts.min_rss_mb)
    result = report(soak, rows, meta, warmup)
    return {"meta": meta, "warmup_minute": warmup, **result}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = parse_options(sys.argv[1:] if argv is None else argv)
    mem = psutil.virtual_memory()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    print(
        f"soak: {opts.minutes:g} min, {opts.clients} clients, "
        + (f"attached to {opts.api}" if opts.api else f"own stack, model {opts.model}")
        + f"; {mem.available / 2**30:.1f} GiB available, {psutil.cpu_count()} CPUs",
        flush=True,
    )
    with attached(opts) if opts.api else own_stack(opts) as stack:
        result = asyncio.run(_run(opts, stack))
    out = {
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "api": stack.api,
        "own_stack": stack.own,
        "log_dir": str(stack.log_dir) if stack.log_dir else None,
        "model": opts.model if stack.own else None,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.__dict__.items() if k != "key"},
        "machine": {"cpus": psutil.cpu_count(), "mem_total_gib": round(mem.total / 2**30, 1)},
        **result,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    print(f"\nall goals {'met' if out['all_met'] else 'NOT met'}; JSON in {opts.out}", flush=True)
    return out


if __name__ == "__main__":
    main()
