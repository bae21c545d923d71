"""docker-compose.yml as `docker-compose config` resolves it: services, profiles, health, volumes, workers, model."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.deploy.support import COMPOSE, COMPOSE_SECRETS, DEPLOY, ROOT, ComposeCLI, Doc, mounts, ports

SERVICES = {"redis", "api", "worker", "worker-cpu", "worker-cpu-2", "analyzer", "analyzer-gpu", "flower", "prometheus"}
PROFILES = {
    "worker": ["gpu"],
    "analyzer-gpu": ["gpu"],
    "flower": ["ops"],
    "prometheus": ["ops"],
    "worker-cpu-2": ["two-workers"],
}

# (generation worker, analyzer) pairs that run together: the CPU stack and the gpu profile
COMPOSE_PAIRS = (("worker-cpu", "analyzer"), ("worker", "analyzer-gpu"))


def seconds(duration: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def test_compose_services_and_profiles(compose: Doc) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name, svc in services.items():
        assert svc.get("profiles") == PROFILES.get(name), name


def test_compose_gpu_reservations(compose: Doc) -> None:
    for name, svc in compose["services"].items():
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if name in ("worker", "analyzer-gpu"):
            assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], name
        else:
            assert not devices, name


def test_compose_health_and_dependencies(compose: Doc) -> None:
    services = compose["services"]
    for name in ("redis", "api", "worker-cpu", "worker", "flower", "prometheus"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ("api", "worker-cpu", "worker"):
        assert "/health" in " ".join(services[name]["healthcheck"]["test"]), name
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"
            # a default-profile service must not depend on a profiled one (it would not start)
            if not svc.get("profiles"):
                assert not services[dep].get("profiles"), f"{name} depends on profiled {dep}"
    for name in ("api", "analyzer", "analyzer-gpu", "flower"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_compose_config_and_volumes(compose: Doc, compose_cli: ComposeCLI) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for source in mounts(svc).values():
            assert source.startswith("/") or source in compose["volumes"], f"{name}: volume {source} not declared"
        if name in ("api", "worker-cpu", "worker", "analyzer", "analyzer-gpu", "flower"):
            assert svc["environment"]["BRIDGEX_REDIS_URL"] == "redis://redis:6379/0", name
            assert svc["environment"]["BRIDGEX_WORKER_URL"] == "http://worker-cpu:8001", name
        if "build" in svc:
            assert (Path(svc["build"]["context"]) / svc["build"]["dockerfile"]).is_file(), name
    for name in ("analyzer", "analyzer-gpu"):
        assert {"/var/lib/bridgex/artifacts", "/var/lib/bridgex/data", "/var/lib/bridgex/cache"} <= set(
            mounts(services[name])
        ), name
    # the gateway and the analyzers share one data volume, read-write, at BRIDGEX_DATA_DIR (both gather data);
    # BRIDGEX_DATA_SOURCE swaps it for a host folder in all three
    data_dir = services["api"]["environment"]["BRIDGEX_DATA_DIR"]
    sharing = ("api", "analyzer", "analyzer-gpu")
    on_host = compose_cli.config({**COMPOSE_SECRETS, "BRIDGEX_DATA_SOURCE": "/srv/bridgex-data"})["services"]
    for name in sharing:
        assert services[name]["environment"]["BRIDGEX_DATA_DIR"] == data_dir, name
        assert mounts(services[name])[data_dir] == "bridgex-data", name
        assert mounts(on_host[name])[data_dir] == "/srv/bridgex-data", name
        assert not any(
            str(v).endswith(":ro") or (isinstance(v, dict) and v.get("read_only")) for v in services[name]["volumes"]
        ), name
    api_env = services["api"]["environment"]
    assert api_env["BRIDGEX_API_KEYS"] is None, "keys are passed through from the environment, never written"
    assert api_env["BRIDGEX_AUTH_OPEN"] == "false"
    # operator UIs only on the host's loopback
    for name in ("flower", "prometheus"):
        assert ports(services[name]) and all(ip == "127.0.0.1" for ip, _, _ in ports(services[name])), name


def test_compose_workers_run_the_launcher(compose: Doc) -> None:
    services = compose["services"]
    for name, dockerfile in {
        "worker-cpu": "services/worker/Dockerfile",
        "worker": "services/worker/Dockerfile.gpu",
    }.items():
        svc = services[name]
        assert svc["build"] == {"context": str(ROOT), "dockerfile": dockerfile}, name
        assert svc["command"] == ["python", "-m", "services.worker"], name
        env = svc["environment"]
        assert (env["BRIDGEX_WORKER_HOST"], env["BRIDGEX_WORKER_PORT"]) == ("0.0.0.0", "8001"), name
        assert [str(p) for p in svc["expose"]] == ["8001"], name
        assert "8001/health" in " ".join(svc["healthcheck"]["test"]), name
        assert seconds(svc["healthcheck"]["start_period"]) >= 300, f"{name}: vLLM needs minutes to start"
    assert services["worker"]["image"].startswith("bridgex/worker-gpu:")
    # vLLM on CPU under Docker's seccomp profile: NUMA syscalls need SYS_NICE; more than 64 MB of /dev/shm
    assert "SYS_NICE" in services["worker-cpu"]["cap_add"] and services["worker-cpu"]["shm_size"]
    text = COMPOSE.read_text()
    for gone in ("services/worker/vllm", "launch.sh", "services.worker.main", "worker-vllm"):
        assert gone not in text, f"docker-compose.yml still refers to {gone}"


def test_compose_worker_and_analyzer_use_the_same_model(compose: Doc, compose_cli: ComposeCLI) -> None:
    """Same weights: the same BRIDGEX_MODEL (+ REVISION) and the same model-cache/hf-cache volumes at the same
    BRIDGEX_CACHE_DIR / HF_HOME in each generation worker and the analyzer it runs with, by default (the default
    model) and with a hub model pinned in the shell."""
    hub = {
        "BRIDGEX_MODEL": "meta-llama/Meta-Llama-3-8B",
        "BRIDGEX_MODEL_REVISION": "62bd457b6fe961a42a631306577e622c83876cb6",
    }
    pinned = compose_cli.config({**COMPOSE_SECRETS, **hub})["services"]
    for worker_name, analyzer_name in COMPOSE_PAIRS:
        where = f"{worker_name}/{analyzer_name}"
        for services, model, revision in ((compose["services"], "gemma-3-270m", None), (pinned, *hub.values())):
            wenv, aenv = services[worker_name]["environment"], services[analyzer_name]["environment"]
            assert (wenv["BRIDGEX_MODEL"], wenv["BRIDGEX_MODEL_REVISION"]) == (model, revision), where
            for key in ("BRIDGEX_MODEL", "BRIDGEX_MODEL_REVISION", "BRIDGEX_CACHE_DIR", "HF_HOME"):
                assert key in aenv and wenv[key] == aenv[key], f"{where}: {key} {wenv[key]} != {aenv.get(key)}"
            assert wenv.get("BRIDGEX_SERVED_MODEL_NAME") == aenv.get("BRIDGEX_SERVED_MODEL_NAME"), where
            paths = {wenv["BRIDGEX_CACHE_DIR"], wenv["HF_HOME"]}
            shared = {p: s for p, s in mounts(services[worker_name]).items() if p in paths}
            assert set(shared) == paths, f"{worker_name} mounts {shared}"
            assert {p: s for p, s in mounts(services[analyzer_name]).items() if p in paths} == shared, where
            assert set(shared.values()) <= set(compose["volumes"]), shared


def test_compose_prometheus_targets(compose: Doc) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    services = compose["services"]
    seen = set()
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                if host == "127.0.0.1":
                    continue
                seen.add(host)
                svc = services[host]
                reachable = [str(p) for _, _, p in ports(svc)] + [str(p) for p in svc.get("expose", [])]
                assert port in reachable, f"{target}: {host} listens on {reachable}"
    assert {"api", "worker-cpu", "worker", "flower"} <= seen
