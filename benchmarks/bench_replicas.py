"""Ten distinct pairs analysed by one analyzer, then by two on the same queue (issue 24 item 1), in the same run.

Real processes: redis-server, the vLLM generation worker (the tiny random model by default), and one or two
Celery analyzer processes (solo pool, `analyze` queue) started exactly as the tests start them. Each phase gets
a fresh Redis and a fresh artifacts folder (nothing of the other phase is reused: every language is profiled
again), the same data directory and the same worker. The clock runs from submitting the ten jobs at once until
the last one is terminal; the analyzers are started, ready and warm before it (each has run one job on languages
the ten pairs do not use, so importing and loading the model is not counted: a deployed analyzer pays that once
per process, not per job). Reports the wall time of each phase,
the ratio (one / two), each job's own run time, and how many runs and publishes there were (one per job).

`python -m benchmarks replicas` (env: BENCH_REPLICAS_PROFILE_TOKENS, tokens profiled per language, default
100000; BENCH_REPLICAS_DEV_SIZE, dev words of the first validation look, default 40; BENCH_REPLICAS_LINES,
lines of text per language, default 2000; BENCH_REPLICAS_POLICY, `validated` (default: the dev validation through
the worker, as served) or `hsic` (no validation: only the analyzers' own work); BENCH_REPLICAS_PROFILES, `cold`
(default: the ten jobs profile their languages, which every pair shares through the candidates) or `warm` (the
warm-up profiles every language first, as in a deployment that has profiled its languages: the ten jobs then
do only their pairs' own work)).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import redis

from services.analyzer.celery_app import make_app
from services.analyzer.config import AnalyzerSettings
from services.common.analysis import AnalysisRequest, submit_analysis
from services.common.bridges import BridgeStore
from services.common.jobs import JobStore
from tests.api.conftest import stack_env, write_data_dir
from tests.replicas.conftest import LANGS, TEN
from tests.support import RedisServer, Service, start_celery, start_worker

# one warm-up job per analyzer, on languages none of the ten pairs uses: (source, target, candidate)
WARM_UP = (("sw", "hu", "tl"), ("id", "he", "ar"))
WORDS = [f"{a}{b}" for a in "bcdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ar", "en", "is", "ol", "um")]


def _texts(data: Path, lines: int, langs: tuple[str, ...]) -> None:
    """Longer monolingual texts than the tests' (profiling is then a real share of a job)."""
    for lang in langs:
        rng = random.Random(lang)
        body = [" ".join(f"{rng.choice(WORDS)}{lang}" for _ in range(14)) for _ in range(lines)]
        (data / "text" / f"{lang}.txt").write_text("\n".join(body) + "\n", encoding="utf-8")


def _settings(env: dict[str, str]) -> AnalyzerSettings:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return AnalyzerSettings(_env_file=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its children have used so far."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def phase(n: int, base_env: dict[str, str], root: Path, dev_size: int, worker_pid: int, warm_profiles: bool) -> dict:
    server = RedisServer().start()
    home = root / f"home-{n}"
    env = {**base_env, "BRIDGEX_REDIS_URL": server.url, "BRIDGEX_HOME": str(home)}
    analyzers: list[Service] = []
    r = redis.Redis.from_url(server.url)
    try:
        analyzers = [start_celery(root, server.url, **env) for _ in range(n)]
        settings = _settings(env)
        app = make_app(settings)
        store = JobStore(r)
        extra = list(LANGS) if warm_profiles else []  # every language the ten pairs profile
        warm = [
            submit_analysis(
                AnalysisRequest(source=s, target=t, candidates=[c, *extra]), settings=settings, redis=r, celery_app=app
            )[0].id
            for s, t, c in WARM_UP[:n]
        ]
        while not all((rec := store.get(i)) is not None and rec.state.terminal for i in warm):
            time.sleep(0.05)
        cpu0 = [cpu_s(a.proc.pid) for a in analyzers if a.proc is not None], cpu_s(worker_pid)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        ids = [
            submit_analysis(
                AnalysisRequest(source=s, target=t, dev_size=dev_size), settings=settings, redis=r, celery_app=app
            )[0].id
            for s, t in TEN
        ]
        while True:
            recs = [store.get(i) for i in ids]
            if all(rec is not None and rec.state.terminal for rec in recs):
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        analyzer_cpu = sum(cpu_s(a.proc.pid) for a in analyzers if a.proc is not None) - sum(cpu0[0])
        worker_cpu = cpu_s(worker_pid) - cpu0[1]
        bad = [
            f"{rec.request['source']}-{rec.request['target']}: {rec.state.value} {rec.error}"
            for rec in recs
            if rec.state.value != "succeeded"
        ]
        if bad:
            raise RuntimeError(f"{n} analyzer(s): jobs did not succeed: {bad}")
        runs = [(rec.finished_at - rec.started_at).total_seconds() for rec in recs]
        time.sleep(1.0)  # each task logs "job <id>: done (...)" just after it updates the record
        logs = [a.log.read_text(errors="replace") for a in analyzers]
        per_analyzer = [sum(log.count(f"job {i}: done (") for i in ids) for log in logs]
        warmed = [sum(log.count(f"job {i}: done (") for i in warm) for log in logs]
        if warmed != [1] * n:
            raise RuntimeError(f"warm-up jobs per analyzer: {warmed} (one each expected)")
        config = recs[0].result["config"]
        publishes = BridgeStore(r).publish_counts(settings.model, settings.model_revision, config)
        stages: dict[str, float] = {}
        for rec in recs:
            for k, v in (rec.result.get("timings_s") or {}).items():
                if k != "total":
                    stages[k] = stages.get(k, 0.0) + v
        return {
            "analyzers": n,
            "wall_s": wall,
            "analyzer_cpu_s": analyzer_cpu,
            "worker_cpu_s": worker_cpu,
            "load": (load0, os.getloadavg()[0]),
            "stages_s": stages,
            "job_mean_s": statistics.mean(runs),
            "job_max_s": max(runs),
            "jobs_per_analyzer": per_analyzer,
            "attempts": sorted({rec.attempts for rec in recs}),
            "publishes": sorted(set(publishes.values())),
            "pairs_published": len(publishes),
        }
    finally:
        for a in analyzers:
            a.stop()
        r.close()
        server.stop()


def main() -> None:
    from bridgex.models import tiny_random_llama

    tokens = os.environ.get("BENCH_REPLICAS_PROFILE_TOKENS", "100000")
    dev_size = int(os.environ.get("BENCH_REPLICAS_DEV_SIZE", "40"))
    lines = int(os.environ.get("BENCH_REPLICAS_LINES", "2000"))
    policy = os.environ.get("BENCH_REPLICAS_POLICY", "validated")
    profiles = os.environ.get("BENCH_REPLICAS_PROFILES", "cold")
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        root = Path(tmp)
        model = tiny_random_llama(root / "tiny-llama")
        worker_svc, worker = start_worker(model, root)
        try:
            base = stack_env(model, "redis://unused", worker, root / "home")
            data = Path(base["BRIDGEX_DATA_DIR"])
            warm_langs = tuple(code for w in WARM_UP for code in w)
            write_data_dir(data, langs=(*LANGS, *warm_langs), pairs=(*TEN, *((s, t) for s, t, _ in WARM_UP)))
            _texts(data, lines, LANGS)
            base |= {"BRIDGEX_PROFILE_MAX_TOKENS": tokens, "BRIDGEX_SERVE_POLICY": policy}
            cpus = len(os.sched_getaffinity(0))
            print(
                f"ten pairs, tiny random model, {tokens} profile tokens per language, serve policy {policy} (dev looks "
                f"from {dev_size} words), profiles {profiles}; "
                f"{cpus} CPUs shared by the vLLM worker and the analyzers (one torch thread each)"
            )
            assert worker_svc.proc is not None
            results = [phase(n, base, root, dev_size, worker_svc.proc.pid, profiles == "warm") for n in (1, 2)]
        finally:
            worker_svc.stop()
    for res in results:
        print(
            f"  {res['analyzers']} analyzer(s): wall {res['wall_s']:7.1f} s   job mean {res['job_mean_s']:5.1f} s   "
            f"max {res['job_max_s']:5.1f} s   jobs per analyzer {res['jobs_per_analyzer']}   attempts "
            f"{res['attempts']}   publishes per pair {res['publishes']} ({res['pairs_published']} pairs)"
        )
        top = sorted(res["stages_s"].items(), key=lambda kv: -kv[1])[:4]
        print(
            f"      CPU: analyzers {res['analyzer_cpu_s']:.1f} s, vLLM worker {res['worker_cpu_s']:.1f} s; load "
            f"{res['load'][0]:.1f} -> {res['load'][1]:.1f}; stage time summed over jobs: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in top)
        )
    one, two = results
    print(f"  one / two analyzers: {one['wall_s'] / two['wall_s']:.2f}x (wall time of the ten pairs)")
