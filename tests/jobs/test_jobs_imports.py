"""quantray.jobs imports one way: no cycle between its modules, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import quantray.jobs

PACKAGE = "quantray.jobs"
JOBS = Path(quantray.jobs.__file__).parent


def imported_jobs_modules(path: Path) -> set[str]:
    """The quantray.jobs modules `path` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{PACKAGE}."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith(f"{PACKAGE}."))
    return found - {path.stem}


def import_graph() -> dict[str, set[str]]:
    return {path.stem: imported_jobs_modules(path) for path in JOBS.glob("*.py") if path.stem != "__init__"}


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path of module names, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            found = visit(target, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_the_cycle_finder_finds_one() -> None:
    assert cycle_in({"dashboard": {"local"}, "local": {"dashboard"}}) == ["dashboard", "local", "dashboard"]
    assert cycle_in({"local": {"dashboard", "state"}, "dashboard": {"state"}, "state": set()}) is None


def test_jobs_modules_import_each_other_one_way() -> None:
    graph = import_graph()
    assert {"dashboard", "local", "state", "submit"} <= set(graph)
    assert cycle_in(graph) is None
    assert graph["state"] == set(), "the bottom module imports no other"
    assert "local" not in graph["dashboard"]
