"""The method core stays pure: no HTTP, subprocess, Redis, servers or service settings in its modules.

Read from the source (every `import`, also those inside functions), so a lazy import cannot hide an edge.
The edges live beside the core: bridgex.generation (HTTP), bridgex.data (apt/npm, files), bridgex.evaluation
(the harness), services/* (Redis, Celery, FastAPI, each service's settings).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "shared" / "bridgex"
METHOD = (
    "languages",
    "dictionaries",
    "profiling",
    "neurons",
    "hsic",
    "ranking",
    "prompts",
    "artifacts",
    "atomic",
    "cancel",
    "fingerprint",
    "frequency",
    "corpora",
    "probes",
    "typology",
    "serving",
    "intervals",
)
FORBIDDEN = (
    "httpx",
    "requests",
    "urllib.request",
    "socket",
    "subprocess",
    "redis",
    "celery",
    "fastapi",
    "uvicorn",
    "services",
    "bridgex.generation",
    "bridgex.settings",
    "bridgex.data",
    "bridgex.evaluation",
)


def sources(name: str) -> list[Path]:
    path = PKG / name
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def imported(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def violations(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN))


@pytest.mark.parametrize("module", METHOD)
def test_method_module_imports_no_io_edge(module: str) -> None:
    files = sources(module)
    assert files and all(f.exists() for f in files), f"bridgex.{module} not found"
    bad = {str(f.relative_to(PKG)): v for f in files if (v := violations(imported(f)))}
    assert not bad, f"the method core imports I/O edges or service settings: {bad}"


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import json\n\ndef go():\n    import subprocess\n    from bridgex.generation.client import X\n")
    found = violations(imported(f))
    assert "subprocess" in found and "bridgex.generation.client" in found and "json" not in found
