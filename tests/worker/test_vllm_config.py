"""The GPU worker's `vllm serve` command line, rendered from settings (vllm is never installed here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from bridgex.settings import Settings

from services.worker.vllm import DEFAULT_HUB_ID, render_vllm_args
from tests.support import ROOT


def _opt(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_default_model_renders_served_name_and_greedy_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRIDGEX_WORKER_HOST", raising=False)
    monkeypatch.delenv("BRIDGEX_WORKER_PORT", raising=False)
    args = render_vllm_args(Settings(_env_file=None, model="gemma-3-270m", worker_url="http://worker:8123"))
    assert args[:2] == ["serve", DEFAULT_HUB_ID]
    assert _opt(args, "--served-model-name") == "gemma-3-270m"  # same name the CPU worker serves
    assert _opt(args, "--generation-config") == "vllm"
    assert _opt(args, "--host") == "0.0.0.0" and _opt(args, "--port") == "8123"
    assert _opt(args, "--max-num-seqs") == "16"
    assert "--max-model-len" not in args and "--dtype" not in args and "--revision" not in args


def test_custom_settings_and_env_host_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGEX_WORKER_HOST", "127.0.0.1")
    monkeypatch.setenv("BRIDGEX_WORKER_PORT", "9000")
    s = Settings(_env_file=None, model="meta-llama/Meta-Llama-3-8B", served_model_name="llama3",
                 max_model_len=4096, model_revision="abc123", dtype="bfloat16", max_batch_size=64)
    args = render_vllm_args(s)
    assert args[1] == "meta-llama/Meta-Llama-3-8B"
    assert _opt(args, "--served-model-name") == "llama3"
    assert _opt(args, "--max-model-len") == "4096"
    assert _opt(args, "--revision") == "abc123" and _opt(args, "--dtype") == "bfloat16"
    assert (_opt(args, "--host"), _opt(args, "--port")) == ("127.0.0.1", "9000")
    assert _opt(args, "--max-num-seqs") == "64"
    assert render_vllm_args(s, host="h", port=1)[-12:] != args[-12:]


def test_launcher_prints_command_from_env_and_vllm_is_absent() -> None:
    assert importlib.util.find_spec("vllm") is None, "vllm must never enter the CPU environment"
    out = subprocess.run([sys.executable, "-m", "services.worker.vllm", "--print"], cwd=ROOT, text=True,
                         capture_output=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "BRIDGEX_MODEL": "/models/x",
                              "BRIDGEX_MAX_MODEL_LEN": "2048", "BRIDGEX_WORKER_PORT": "8555"}).stdout
    assert out.startswith("vllm serve /models/x ")
    assert "--max-model-len 2048" in out and "--port 8555" in out and "--generation-config vllm" in out
    missing = subprocess.run([sys.executable, "-m", "services.worker.vllm"], cwd=ROOT, text=True,
                             capture_output=True, env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode == 2 and "vllm is not installed" in missing.stderr
