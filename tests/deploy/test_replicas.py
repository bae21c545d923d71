"""Two analyzers and two generation workers in the deploy files (issue 24 item 5): the kustomize overlays with
components/two-of-each and docker-compose.yml with BRIDGEX_ANALYZERS=2 and the two-workers profile, as the real
tools render them; the PodDisruptionBudgets; a termination grace period that lets the analyzer hand its job back
(services/analyzer/tasks.py: on SIGTERM the job stops at its next check and is requeued)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from services.analyzer.config import AnalyzerSettings
from tests.deploy.conftest import OVERLAYS
from tests.deploy.support import (
    COMPOSE_SECRETS,
    DEPLOY,
    ComposeCLI,
    Doc,
    container,
    objects,
    ports,
    read_settings,
    tool,
)
from tests.deploy.test_compose import seconds
from tests.deploy.test_k8s import K8S_VERSION, matches

SCALED = ("analyzer", "worker")
# the longest step between two of the analyzer's checks, which a SIGTERM waits for before the job is handed back:
# loading the model or starting vLLM's capture engine (~95 s on CPU), a data gathering, one dev-validation look;
# on a GPU node loading a large model or the CUDA engine with graph capture (minutes)
HAND_BACK_S = {"cpu": 300, "gpu": 600}


def _render(path: Path) -> list[Doc]:
    out = subprocess.run([tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlays(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, list[Doc], list[Doc]]:
    """(overlay, as it renders, with components/two-of-each added the way an operator's own overlay adds it)."""
    name = request.param
    own = tmp_path_factory.mktemp(f"two-of-each-{name}")
    (own / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY / "overlays" / name, own)],
                "components": [os.path.relpath(DEPLOY / "components" / "two-of-each", own)],
            }
        )
    )
    return name, _render(DEPLOY / "overlays" / name), _render(own)


def _replicas(docs: list[Doc]) -> dict[str, int]:
    return {name: d["spec"]["replicas"] for name, d in objects(docs, "Deployment").items()}


def test_two_of_each_renders_two_analyzers_and_two_workers(overlays: tuple[str, list[Doc], list[Doc]]) -> None:
    import kubernetes_validate as kv

    name, plain, two = overlays
    assert _replicas(plain) == {"analyzer": 1, "worker": 1, "api": 2, "redis": 1, "flower": 1}, name
    assert _replicas(two) == {"analyzer": 2, "worker": 2, "api": 2, "redis": 1, "flower": 1}, name

    # the component changes the replica counts and nothing else
    def without_replicas(docs: list[Doc]) -> list[Doc]:
        out = []
        for d in docs:
            d = yaml.safe_load(yaml.safe_dump(d))
            if d["kind"] == "Deployment":
                d["spec"].pop("replicas")
            out.append(d)
        return out

    assert without_replicas(two) == without_replicas(plain), name
    for d in two:
        kv.validate(d, K8S_VERSION, strict=True)


def test_scaled_pods_can_run_side_by_side(overlays: tuple[str, list[Doc], list[Doc]]) -> None:
    """Nothing in an analyzer or worker pod is one-per-cluster: no host port or host network, every volume
    claim they mount is ReadWriteMany, and each analyzer's Celery node name is its own pod's."""
    name, _, docs = overlays
    deployments, claims = objects(docs, "Deployment"), objects(docs, "PersistentVolumeClaim")
    for dep in SCALED:
        pod = deployments[dep]["spec"]["template"]["spec"]
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), f"{name} {dep}"
        for c in pod["containers"]:
            assert all("hostPort" not in p for p in c.get("ports", [])), f"{name} {dep}: host port"
        for v in pod.get("volumes", []):
            if "persistentVolumeClaim" in v:
                claim = claims[v["persistentVolumeClaim"]["claimName"]]
                assert "ReadWriteMany" in claim["spec"]["accessModes"], f"{name} {dep}: {claim['metadata']['name']}"
    analyzer = container(docs, "analyzer")
    node = next(a for a in analyzer["command"] if "$(POD_NAME)" in a)
    assert analyzer["command"][analyzer["command"].index(node) - 1] == "-n", analyzer["command"]
    pod_name = next(e for e in analyzer["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Redis keeps its ReadWriteOnce volume and one replica (it is not scaled)
    assert _replicas(docs)["redis"] == 1


def test_disruption_budgets(overlays: tuple[str, list[Doc], list[Doc]]) -> None:
    """A drain evicts one analyzer, worker or gateway at a time and is never blocked (maxUnavailable 1, not
    minAvailable: with one replica minAvailable 1 would stop every drain); each budget selects its own pods."""
    name, plain, two = overlays
    for docs in (plain, two):
        budgets, deployments = objects(docs, "PodDisruptionBudget"), objects(docs, "Deployment")
        assert set(budgets) == {"analyzer", "worker", "api"}, name
        for component, pdb in budgets.items():
            spec = pdb["spec"]
            assert spec["maxUnavailable"] == 1 and "minAvailable" not in spec, f"{name} {component}"
            assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow", f"{name} {component}"
            selected = [
                dep
                for dep, d in deployments.items()
                if matches(spec["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])
            ]
            assert selected == [component], f"{name}: PDB {component} selects {selected}"


def test_analyzer_grace_period_lets_it_hand_its_job_back(overlays: tuple[str, list[Doc], list[Doc]]) -> None:
    name, docs, _ = overlays
    pod = objects(docs, "Deployment")["analyzer"]["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= HAND_BACK_S[name], f"{name}: {grace}s"
    # longer than the job lease: the pod releases its lease itself, the next analyzer never waits for it to expire
    lease = int(objects(docs, "ConfigMap")["bridgex-config"]["data"].get("BRIDGEX_JOB_LEASE_S", 0)) or int(
        AnalyzerSettings.model_fields["job_lease_s"].default
    )
    assert grace > 2 * lease, (grace, lease)
    # SIGTERM reaches Celery itself: it is the container's command (PID 1), not a shell around it
    analyzer = container(docs, "analyzer")
    assert (
        analyzer["command"][0] == "celery" and "worker" in analyzer["command"] and "--pool=solo" in analyzer["command"]
    )
    assert not any(e["name"] == "REMAP_SIGTERM" for e in analyzer.get("env", []))


def test_compose_two_analyzers_and_two_workers(compose_cli: ComposeCLI, monkeypatch: pytest.MonkeyPatch) -> None:
    urls = "http://worker-cpu:8001,http://worker-cpu-2:8001"
    plain = compose_cli.config()["services"]
    two = compose_cli.config({**COMPOSE_SECRETS, "BRIDGEX_ANALYZERS": "2", "BRIDGEX_WORKER_URLS": urls})["services"]
    assert plain["analyzer"]["scale"] == 1 and two["analyzer"]["scale"] == 2
    # the second worker is the first under another name, only in its profile
    assert two["worker-cpu-2"]["profiles"] == ["two-workers"] and not two["worker-cpu"].get("profiles")
    assert {k: v for k, v in two["worker-cpu-2"].items() if k != "profiles"} == two["worker-cpu"]
    # the gateway and the analyzers balance over both; by default they use the one worker as before
    for svc in ("api", "analyzer"):
        assert read_settings(
            two[svc]["environment"], monkeypatch, "api" if svc == "api" else "analyzer"
        ).worker_endpoints == (
            "http://worker-cpu:8001",
            "http://worker-cpu-2:8001",
        ), svc
        assert read_settings(
            plain[svc]["environment"], monkeypatch, "api" if svc == "api" else "analyzer"
        ).worker_endpoints == ("http://worker-cpu:8001",), svc
    # scalable: no fixed container name and no published host port
    for svc in ("analyzer", "analyzer-gpu", "worker-cpu", "worker-cpu-2", "worker"):
        assert "container_name" not in two[svc] and not ports(two[svc]), svc
    # the same grace as the Kubernetes analyzer's, for the same hand-back
    assert seconds(plain["analyzer"]["stop_grace_period"]) >= HAND_BACK_S["cpu"]
    assert seconds(plain["analyzer-gpu"]["stop_grace_period"]) >= HAND_BACK_S["gpu"]
