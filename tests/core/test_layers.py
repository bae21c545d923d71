"""The layers that docs/architecture.md draws, enforced: its "## Layout" block is the one list of what is where.

The block draws three layers, METHOD, EDGES and SERVICES, and "each imports only from the layers above it".
Nothing is listed here: the test reads the block.

Placing, as the block is read:
- A layer starts at a line `NAME: ...` in column 0. When the first word after the colon is a folder
  (`shared/bridgex/`, `services/`) that is the layer's root; otherwise (EDGES: "beside the method, in the same
  package") the layer shares the root of the layer before it.
- An entry is an indented line whose first words are paths ending in `.py` or `/` (several joined by ", "),
  followed by two spaces or the end of the line. An entry indented deeper than a folder entry is inside that
  folder. Other lines (wrapped descriptions) are not entries, nor are file names inside a description
  (`formats/   one reader per format: muse.py, tsv.py, ...`).
- A folder entry `name/` covers every .py file under it, its __init__.py included, except the files and
  folders listed separately: the most specific entry places a file. A header's root folder places only the
  package itself (its __init__.py); every other module needs an entry. A path named twice is an error.
- Every .py file under shared/bridgex is placed in exactly one layer, and every entry names a file or folder
  that exists.

Rules, on every `import` in the source (also those inside functions, so a lazy import cannot hide an edge):
- METHOD modules import no HTTP, subprocess, Redis, Celery or server library (IO_LIBRARIES) and no EDGE module
  (bridgex.generation, bridgex.data, bridgex.evaluation, the CLI, bridgex.settings, ...: whatever the block
  places in EDGES). The method takes explicit arguments.
- No module of `bridgex` (any layer) imports `services`.
- No import cycle among bridgex modules. Counted: the module-level imports, those under `if TYPE_CHECKING:`
  included (a type-only cycle still ties the two modules together); an import inside a function is left out.

ALLOWED lists the known exceptions to the METHOD rule, each with its reason; one no longer needed fails.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PKG_DIR = "shared/bridgex/"
PKG = ROOT / PKG_DIR
LAYERS = ("METHOD", "EDGES", "SERVICES")
IO_LIBRARIES = (
    "httpx",
    "requests",
    "urllib.request",
    "socket",
    "subprocess",
    "redis",
    "celery",
    "fastapi",
    "uvicorn",
)
ALLOWED: dict[tuple[str, str], str] = {
    ("models/weights.py", "bridgex.settings"): (
        "cache_root(None): the configured cache directory (BRIDGEX_CACHE_DIR / BRIDGEX_HOME / .env) when a caller "
        "passes no cache_dir; every load_model / model_identity caller relies on it. Gone when they pass "
        "settings.cache_path."
    ),
}
"""(METHOD file, EDGE module it may import) -> why."""


# --- reading the Layout block ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    layer: str
    path: str  # relative to the repository root; a folder ends with "/"
    line: int  # line number inside the block


_HEADER = re.compile(r"^([A-Z]+):\s*(\S*)")
_ENTRY = re.compile(r"^(?P<indent> +)(?P<names>[\w./-]+(?:, [\w./-]+)*)(?: {2,}|$)")


def layout_block(text: str) -> list[str]:
    """The lines of the first code block after the "## Layout" heading."""
    section = text.split("\n## Layout\n", 1)[1]
    found = re.search(r"^```[^\n]*\n(.*?)^```", section, re.S | re.M)
    assert found, "docs/architecture.md: no code block under ## Layout"
    return found.group(1).splitlines()


def parse_layout(lines: list[str]) -> list[Entry]:
    """The entries of the block, see the module docstring (a header's root yields its __init__.py)."""
    entries: list[Entry] = []
    layer: str | None = None
    root: str | None = None
    stack: list[tuple[int, str]] = []  # (indent, folder) of the folder entries enclosing the current line
    for n, line in enumerate(lines, 1):
        if header := _HEADER.match(line):
            layer, first = header.group(1), header.group(2)
            if first.endswith("/"):
                root = first
                entries.append(Entry(layer, root + "__init__.py", n))
            assert root, f"Layout line {n}: layer {layer} names no root folder and follows none"
            stack = [(-1, root)]
            continue
        entry = _ENTRY.match(line)
        if layer is None or entry is None:
            continue
        names = entry["names"].split(", ")
        if not all(x.endswith((".py", "/")) for x in names):
            continue
        indent = len(entry["indent"])
        while stack[-1][0] >= indent:
            stack.pop()
        base = stack[-1][1]
        entries.extend(Entry(layer, base + x, n) for x in names)
        if len(names) == 1 and names[0].endswith("/"):
            stack.append((indent, base + names[0]))
    return entries


def place(files: list[str], entries: list[Entry]) -> dict[str, Entry | None]:
    """Each file (path from the repository root) -> the most specific entry covering it, or None."""
    out: dict[str, Entry | None] = {}
    for f in files:
        covering = [e for e in entries if e.path == f or (e.path.endswith("/") and f.startswith(e.path))]
        out[f] = max(covering, key=lambda e: len(e.path), default=None)
    return out


ENTRIES = parse_layout(layout_block(DOC.read_text(encoding="utf-8")))
FILES = sorted(str(p.relative_to(ROOT)) for p in PKG.rglob("*.py"))
PLACED = place(FILES, ENTRIES)
LAYER = {f: e.layer for f, e in PLACED.items() if e is not None}  # file -> layer
METHOD_FILES = sorted(f[len(PKG_DIR) :] for f, layer in LAYER.items() if layer == "METHOD")


# --- reading imports --------------------------------------------------------------------------------------------


def module_name(rel: str) -> str:
    """'models/weights.py' -> 'bridgex.models.weights'; 'data/__init__.py' -> 'bridgex.data'."""
    parts = ["bridgex", *Path(rel).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(f[len(PKG_DIR) :]): f[len(PKG_DIR) :] for f in FILES}  # bridgex.x.y -> 'x/y.py'


def _nodes(tree: ast.AST, *, lazy: bool):
    if lazy:
        yield from ast.walk(tree)
        return
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.FunctionDef | ast.AsyncFunctionDef))


def imported(path: Path, *, module: str = "", lazy: bool = True) -> set[str]:
    """Every name `path` imports (`from a import b` gives a and a.b); relative imports resolved against
    `module`. lazy=False: the module-level imports only (not those inside functions)."""
    out: set[str] = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8")), lazy=lazy):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


def resolve(name: str) -> str | None:
    """The bridgex module an imported name lives in (`bridgex.data.layout.DataLayout` -> bridgex.data.layout)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def matches(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def edge_imports(rel: str) -> set[str]:
    """The bridgex modules outside METHOD that the bridgex file `rel` imports (lazy imports included)."""
    names = imported(PKG / rel, module=module_name(rel))
    mods = {m for n in names if n.startswith("bridgex") and (m := resolve(n))}
    return {m for m in mods if LAYER.get(PKG_DIR + MODULES[m]) != "METHOD"}


def import_graph() -> dict[str, set[str]]:
    """bridgex module -> the bridgex modules it imports at module level (TYPE_CHECKING blocks included)."""
    graph: dict[str, set[str]] = {}
    for mod, rel in MODULES.items():
        names = imported(PKG / rel, module=mod, lazy=False)
        graph[mod] = {m for n in names if n.startswith("bridgex") and (m := resolve(n)) and m != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import one another (strongly connected components of more than one)."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        reach[start] = seen
    groups = {frozenset(m for m in reach[a] if a in reach.get(m, set())) | {a} for a in graph if a in reach[a]}
    return sorted(sorted(g) for g in groups)


# --- the layout -------------------------------------------------------------------------------------------------


def test_the_layout_draws_the_three_layers() -> None:
    assert tuple(dict.fromkeys(e.layer for e in ENTRIES)) == LAYERS
    assert LAYER[PKG_DIR + "__init__.py"] == "METHOD"
    assert LAYER[PKG_DIR + "settings.py"] == "EDGES"  # it reads the environment: the method takes arguments
    assert {e.path for e in ENTRIES if e.layer == "SERVICES"} >= {"services/__init__.py", "services/common/"}


def test_every_bridgex_module_is_placed_in_one_layer() -> None:
    unplaced = [f for f, e in PLACED.items() if e is None]
    assert not unplaced, f"modules docs/architecture.md (## Layout) does not place in a layer: {unplaced}"
    paths = [e.path for e in ENTRIES]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    assert not twice, f"named more than once in the Layout block: {twice}"


def test_every_layout_entry_exists() -> None:
    missing = [
        f"{e.path} (line {e.line})"
        for e in ENTRIES
        if not ((ROOT / e.path).is_dir() if e.path.endswith("/") else (ROOT / e.path).is_file())
    ]
    assert not missing, f"the Layout block of docs/architecture.md names what does not exist: {missing}"


# --- the rules --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", METHOD_FILES)
def test_method_module_imports_no_io_library(rel: str) -> None:
    bad = matches(imported(PKG / rel, module=module_name(rel)), IO_LIBRARIES)
    assert not bad, f"bridgex/{rel} is in the METHOD layer but imports I/O libraries: {bad}"


@pytest.mark.parametrize("rel", METHOD_FILES)
def test_method_module_imports_no_edge(rel: str) -> None:
    bad = sorted(m for m in edge_imports(rel) if (rel, m) not in ALLOWED)
    assert not bad, (
        f"bridgex/{rel} is in the METHOD layer but imports {bad}, which docs/architecture.md places in "
        f"{sorted({LAYER[PKG_DIR + MODULES[m]] for m in bad})}: pass what it needs as arguments, or place it there"
    )


def test_allowed_exceptions_are_still_needed() -> None:
    for rel, mod in ALLOWED:
        assert LAYER.get(PKG_DIR + rel) == "METHOD" and mod in edge_imports(rel), (
            f"ALLOWED[{rel!r}, {mod!r}] is no longer needed: remove it"
        )


def test_bridgex_imports_no_services() -> None:
    bad = {
        f[len(PKG_DIR) :]: found
        for f in FILES
        if (found := matches(imported(ROOT / f, module=module_name(f[len(PKG_DIR) :])), ("services",)))
    }
    assert not bad, f"bridgex modules import services: {bad}"


def test_no_import_cycle_among_bridgex_modules() -> None:
    found = cycles(import_graph())
    assert not found, f"bridgex modules that import one another (module level): {found}"


# --- the checks themselves --------------------------------------------------------------------------------------


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import json\n\ndef go():\n    import subprocess\n    from bridgex.generation.client import X\n")
    found = imported(f)
    assert matches(found, IO_LIBRARIES) == ["subprocess"]
    assert resolve("bridgex.generation.client.X") == "bridgex.generation.client"
    assert imported(f, lazy=False) == {"json"}


def test_the_cycle_check_counts_type_checking_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import other\n")
    assert "bridgex.data.other" in imported(f, module="bridgex.data.m", lazy=False)
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_layout_reader() -> None:
    block = [
        "TOP: lib/ (package `lib`): pure",
        "  a.py                   first",
        "  pkg/                   a folder: x.py, y.py in the description",
        "    x.py                 listed, same layer",
        "    sub/                 nested",
        "  b.py, c.py             two at once",
        "                         a wrapped description line",
        "SIDE: beside it, in the same package",
        "  pkg/y.py               one file of pkg, another layer",
        "  io/                    the edge",
        "OUT: svc/ (elsewhere)",
        "  s.py                   a service",
    ]
    entries = parse_layout(block)
    assert [(e.layer, e.path) for e in entries] == [
        ("TOP", "lib/__init__.py"),
        ("TOP", "lib/a.py"),
        ("TOP", "lib/pkg/"),
        ("TOP", "lib/pkg/x.py"),
        ("TOP", "lib/pkg/sub/"),
        ("TOP", "lib/b.py"),
        ("TOP", "lib/c.py"),
        ("SIDE", "lib/pkg/y.py"),
        ("SIDE", "lib/io/"),
        ("OUT", "svc/__init__.py"),
        ("OUT", "svc/s.py"),
    ]
    files = ["lib/__init__.py", "lib/pkg/__init__.py", "lib/pkg/y.py", "lib/pkg/sub/z.py", "lib/io/w.py", "lib/d.py"]
    layers = {f: e.layer if e else None for f, e in place(files, entries).items()}
    assert layers == {
        "lib/__init__.py": "TOP",
        "lib/pkg/__init__.py": "TOP",
        "lib/pkg/y.py": "SIDE",
        "lib/pkg/sub/z.py": "TOP",
        "lib/io/w.py": "SIDE",
        "lib/d.py": None,
    }
