"""`make run`'s script (scripts/run-local.sh): starts the local stack detached, reports it, and stops it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import ROOT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
def test_run_local_script_starts_and_stops(tmp_path: Path, tiny_model_dir: Path, redis_url: str) -> None:
    """`make run`'s script, detached: real worker (tiny model), Celery, gateway answer; stop ends all."""
    import httpx

    from tests.support import free_port

    run_dir = tmp_path / "var"
    api_port, worker_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGEX_")}
    env |= {
        "BRIDGEX_MODEL": str(tiny_model_dir),
        "BRIDGEX_REDIS_URL": redis_url,
        "BRIDGEX_API_PORT": str(api_port),
        "BRIDGEX_WORKER_PORT": str(worker_port),
        "BRIDGEX_RUN_DIR": str(run_dir),
        "BRIDGEX_HOME": str(tmp_path / "home"),
        "BRIDGEX_START_TIMEOUT": "300",
    }
    script = str(ROOT / "scripts" / "run-local.sh")
    # cwd matters: pydantic-settings reads ./.env; the script cds to the repository itself
    started = subprocess.run([script, "--detach"], env=env, capture_output=True, text=True, timeout=400)
    pids = {p.stem: int(p.read_text()) for p in (run_dir / "run").glob("*.pid")}
    try:
        assert started.returncode == 0, f"{started.stdout}\n{started.stderr}"
        assert "AUTH IS OPEN" in started.stdout  # no keys configured: open mode, said loudly
        assert f"http://127.0.0.1:{api_port}/docs" in started.stdout
        assert set(pids) == {"worker", "analyzer", "api"}
        for name, pid in pids.items():
            assert _alive(pid) and os.getpgid(pid) == pid, f"{name} is not the leader of its own group"
        api, worker = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{worker_port}"
        assert httpx.get(f"{worker}/health", timeout=10).status_code == 200
        assert httpx.get(f"{api}/health", timeout=10).status_code == 200
        assert httpx.get(f"{api}/docs", timeout=10).status_code == 200
        # the gateway reaches the same Redis and the local worker the script started
        assert httpx.get(f"{api}/ready", timeout=30).status_code == 200
        assert "ready." in (run_dir / "log" / "analyzer.log").read_text()
        status = subprocess.run([script, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "api: running" in status.stdout, status.stdout
        again = subprocess.run([script, "--detach"], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode != 0 and "already running" in again.stderr
    finally:
        stopped = subprocess.run([script, "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert not list((run_dir / "run").glob("*.pid"))
