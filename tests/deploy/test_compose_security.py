"""Compose security: each service's secrets (scoped, required), Redis's password, what the services read."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import (
    COMPOSE,
    COMPOSE_SECRETS,
    DEPLOY,
    REDIS_PW,
    ROOT,
    WORKER_KEY,
    ComposeCLI,
    Doc,
    RedisFakes,
    assert_redis_server_args,
    assert_redis_urls_authenticated,
    mounts,
    ports,
    read_settings,
)

# service -> {container env var: the variable it carries}
_R, _W = "BRIDGEX_REDIS_PASSWORD", "BRIDGEX_WORKER_API_KEY"
COMPOSE_SECRET_ENV = {
    "redis": {"REDIS_PASSWORD": _R, "REDISCLI_AUTH": _R},
    "api": {_R: _R, _W: _W},
    "analyzer": {_R: _R, _W: _W},
    "analyzer-gpu": {_R: _R, _W: _W},
    "flower": {_R: _R},
    "worker-cpu": {_W: _W},
    "worker-cpu-2": {_W: _W},
    "worker": {_W: _W},
    "prometheus": {_W: _W},  # scrapes the workers' /metrics, which want the key
}


def container_argv(parts: list[str]) -> list[str]:
    """What the container runs: the rendered config keeps compose's `$$` escape, the container gets `$`."""
    return [str(a).replace("$$", "$") for a in parts]


def test_compose_secrets_are_scoped(compose: Doc) -> None:
    """Redis password and worker key: given to exactly the services that use them, only through their environment
    (never in a recorded command), and never written in the file."""
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        carried = {key: var for key, value in env.items() for var, secret in COMPOSE_SECRETS.items() if value == secret}
        assert carried == COMPOSE_SECRET_ENV.get(name, {}), f"{name}: {carried}"
        rest = json.dumps({k: v for k, v in svc.items() if k != "environment"})
        assert not any(secret in rest for secret in COMPOSE_SECRETS.values()), f"{name}: a secret outside env"
    text = COMPOSE.read_text()
    assert not any(secret in text for secret in COMPOSE_SECRETS.values())
    # compose reads them from a `.env` beside the file: that file must never be committed
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", ".env"], timeout=60)
    assert ignored.returncode == 0, ".env is not gitignored"
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", ".env"], capture_output=True, text=True, timeout=60)
    assert not tracked.stdout.strip(), ".env is committed"


@pytest.mark.parametrize("missing", sorted(COMPOSE_SECRETS))
def test_compose_refuses_to_run_without_a_secret(missing: str, compose_cli: ComposeCLI) -> None:
    out = compose_cli.run({k: v for k, v in COMPOSE_SECRETS.items() if k != missing})
    assert out.returncode != 0 and missing in out.stderr, out.stderr


@pytest.mark.parametrize("name", sorted(COMPOSE_SECRET_ENV))
def test_compose_service_requires_its_secrets(name: str, compose_cli: ComposeCLI, tmp_path: Path) -> None:
    """Each service on its own (a file with just that service, as YAML resolves the original): every secret it
    carries is required, so an empty one stops compose (`${VAR:?}`; a pass-through or a default would not)."""
    raw = yaml.safe_load(COMPOSE.read_text())  # PyYAML resolves the anchors and `<<` merge keys
    svc = {k: v for k, v in raw["services"][name].items() if k != "depends_on"}
    alone = tmp_path / "docker-compose.yml"
    alone.write_text(yaml.safe_dump({"services": {name: svc}, "volumes": raw["volumes"]}))
    assert set(compose_cli.config(file=alone)["services"]) == {name}
    for var in sorted(set(COMPOSE_SECRET_ENV[name].values())):
        out = compose_cli.run({**COMPOSE_SECRETS, var: ""}, alone)
        assert out.returncode != 0 and var in out.stderr, f"{name} runs with an empty {var}:\n{out.stdout}"


def test_compose_redis_requires_a_password(compose: Doc, tmp_path: Path) -> None:
    """Redis's compose command and healthcheck, run in sh against stand-ins for the image's entrypoint and
    redis-cli; Redis publishes no host port."""
    redis = compose["services"]["redis"]
    assert "ports" not in redis, "Redis is for this project's network only"
    env = redis["environment"]
    fakes = RedisFakes(tmp_path)
    # compose: `entrypoint` replaces the image's ENTRYPOINT (docker-entrypoint.sh), `command` its CMD
    argv = container_argv(
        [*(redis.get("entrypoint") or ["docker-entrypoint.sh"]), *(redis.get("command") or ["redis-server"])]
    )
    assert_redis_server_args(fakes.start(argv, env), "compose redis")
    assert fakes.start(argv, {**env, "REDIS_PASSWORD": "", "REDISCLI_AUTH": ""}) is None, "starts without a password"
    test = redis["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    command = container_argv(["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:])
    assert fakes.probe(command, env), "the healthcheck fails against an authenticated Redis"
    assert not fakes.probe(command, env, password="another"), "the healthcheck passes with a wrong password"
    bare = {k: v for k, v in env.items() if v != REDIS_PW}
    assert not fakes.probe(command, bare), "the healthcheck passes without credentials (NOAUTH)"


def test_compose_services_read_the_secrets(compose_cli: ComposeCLI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The services' Settings from each compose environment: the Redis clients' URLs carry the password, the
    worker and its callers share the key, and the gateway runs its launcher on 0.0.0.0:8000 in the container."""
    shell = {"BRIDGEX_API_KEYS": json.dumps({"test-key": ["translate"]}), **COMPOSE_SECRETS}
    services = compose_cli.config(shell)["services"]
    kind = {"api": "api", "analyzer": "analyzer", "analyzer-gpu": "analyzer", "flower": "flower"}
    kind |= {"worker-cpu": "worker", "worker": "worker"}
    envs = {name: services[name]["environment"] for name in kind}
    got = {name: read_settings(env, monkeypatch, kind[name]) for name, env in envs.items()}
    for name in ("api", "analyzer", "analyzer-gpu", "flower"):
        assert_redis_urls_authenticated(got[name], f"compose {name}")
    for name in ("api", "analyzer", "analyzer-gpu", "worker-cpu", "worker"):
        assert got[name].worker_key == WORKER_KEY, f"compose {name}"
    for name in ("worker-cpu", "worker"):
        assert "BRIDGEX_REDIS_PASSWORD" not in envs[name], f"compose {name} needs no Redis password"
    api = services["api"]
    assert api["command"] == ["python", "-m", "services.api"] and "entrypoint" not in api
    assert "uvicorn" not in json.dumps(api)
    s = got["api"]
    assert s.api_keys == {"test-key": ["translate"]}
    assert s.api_host == "0.0.0.0"
    assert [(published, target) for _, published, target in ports(api)] == [(8000, s.api_port)], api["ports"]
    assert s.trusted_proxies == ()
    proxied = compose_cli.config({**shell, "BRIDGEX_TRUSTED_PROXIES": "10.0.0.0/8"})["services"]["api"]
    assert read_settings(proxied["environment"], monkeypatch).trusted_proxies == ("10.0.0.0/8",)
    # the container's port is fixed: the shell's BRIDGEX_API_PORT only moves the published host port
    moved = compose_cli.config({**shell, "BRIDGEX_API_PORT": "9000"})["services"]["api"]
    assert moved["environment"]["BRIDGEX_API_PORT"] == str(s.api_port)
    assert [(published, target) for _, published, target in ports(moved)] == [(9000, s.api_port)]


def test_compose_prometheus_sends_the_worker_key(compose: Doc) -> None:
    """The workers' /metrics want the key: Prometheus's worker job reads it from a file that the prometheus
    service writes from BRIDGEX_WORKER_API_KEY at start, in a tmpfs (not in the image, not on a volume)."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "bridgex-worker"]
    auth = job["authorization"]
    assert auth.get("type", "Bearer") == "Bearer" and "credentials" not in auth
    path = auth["credentials_file"]
    prom = compose["services"]["prometheus"]
    script = " ".join(container_argv(prom["entrypoint"]))
    assert re.search(r'"\$BRIDGEX_WORKER_API_KEY"\s*>\s*' + re.escape(path) + r"\b", script), script
    assert str(Path(path).parent) in prom["tmpfs"]
    assert "umask 077" in script
    assert "exec /bin/prometheus --config.file=/etc/prometheus/prometheus.yml" in script
    assert mounts(prom)["/etc/prometheus/prometheus.yml"] == str(DEPLOY / "prometheus.yml")
