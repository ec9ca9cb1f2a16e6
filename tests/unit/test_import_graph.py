"""The layer's structure: an acyclic import graph, HTTP kept in `weasis_link.http`, data flowing one way (function
-> http -> use cases: service, launch, upload, links, runtime -> archives -> connectors -> model), and modules
small enough to read.

Every import counts, including the lazy ones inside functions (they would still make a cycle at run time)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import weasis_link

PACKAGE = Path(weasis_link.__file__).parent
# Lower ranks may be imported by higher ones, never the reverse; modules not listed are the model (rank 0).
RANKS = {
    "weasis_link.http": 4,
    "weasis_link.runtime": 3,
    "weasis_link.launch": 3,
    "weasis_link.upload": 3,
    "weasis_link.manifest_links": 3,
    "weasis_link.service": 3,
    "weasis_link.check_config": 3,  # an entry point (make check-config) over the connectors, like runtime
    "weasis_link.archives": 2,
    "weasis_link.connectors": 1,
}


def module_name(path: Path) -> str:
    parts = ["weasis_link", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every module `name` imports (weasis_link modules resolved to the module, others kept as written)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            for alias in node.names:
                qualified = f"{node.module}.{alias.name}"
                found.add(qualified if qualified in MODULES else node.module)
    return found


GRAPH = {name: {m for m in imports_of(name) if m in MODULES and m != name} for name in MODULES}


def rank(name: str) -> int:
    return max((r for prefix, r in RANKS.items() if name == prefix or name.startswith(prefix + ".")), default=0)


def test_the_graph_covers_the_layer() -> None:
    assert {"weasis_link.http.requests", "weasis_link.archives.querying", "weasis_link.service"} <= set(GRAPH)
    assert "weasis_link.criteria" in GRAPH["weasis_link.http.requests"]


def test_the_import_graph_has_no_cycle() -> None:
    try:
        TopologicalSorter(GRAPH).prepare()
    except CycleError as exc:  # pragma: no cover - the message names the cycle
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_only_the_http_package_knows_http() -> None:
    offenders = sorted(
        f"{name} imports {m}"
        for name in MODULES
        if not name.startswith("weasis_link.http")
        for m in imports_of(name)
        if m.startswith(("weasis_link.http", "aws_lambda_powertools.event_handler"))
    )
    assert offenders == []


def test_data_flows_one_way() -> None:
    upward = sorted(f"{name} -> {m}" for name, targets in GRAPH.items() for m in targets if rank(m) > rank(name))
    assert upward == []


def test_modules_stay_readable() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert sorted(name for name, n in lengths.items() if n > 600) == []
    assert lengths["weasis_link.service"] <= 260
