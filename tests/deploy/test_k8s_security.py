"""Kubernetes security: network policies (evaluated offline), each container's secrets, what the services read."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.support import (
    NAMESPACE,
    REDIS_PW,
    TEST_SECRET,
    WORKER_KEY,
    Doc,
    RedisFakes,
    assert_redis_server_args,
    assert_redis_urls_authenticated,
    container,
    containers,
    objects,
    read_settings,
    secret_template_keys,
    settings_class,
)


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


def all_setting_names() -> set[str]:
    return {n for c in ("api", "analyzer", "worker") for n in settings_class(c).model_fields}


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
