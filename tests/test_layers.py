"""Imports go down the layers only (docs/architecture.md), nested imports included.

A package may import a package of a lower layer, or one listed before it in its own layer. A
nested (function-level) import of quantray code exists only to keep a heavy dependency lazy and
says so with a `# lazy: ...` comment on its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"quantray": REPO / "platform" / "quantray", "quantray.models": REPO / "models"}

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "config", "workspace"),
    ("data", "models"),
    ("evaluate", "train"),
    ("tune", "ensemble", "registry", "serve"),
    ("recipes",),
    ("jobs", "cli"),
)
RANK = {package: (layer, position) for layer, packages in enumerate(LAYERS) for position, package in enumerate(packages)}


def package_of(module: str) -> str:
    """`quantray.data.features` -> `data`; `quantray.config` -> `config`; `quantray` -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def allowed(source: str, target: str) -> bool:
    if source == target or target == "":
        return True
    (source_layer, source_pos), (target_layer, target_pos) = RANK[source], RANK[target]
    return target_layer < source_layer or (target_layer == source_layer and target_pos < source_pos)


def modules() -> list[tuple[str, Path]]:
    found = []
    for prefix, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root).with_suffix("").parts
            name = ".".join((prefix, *relative)).removesuffix(".__init__")
            found.append((name, path))
    return found


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported quantray module, line, nested) for every import in `path`."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    type_checking = {id(n) for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                     for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "quantray"]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        nested = id(node) not in top_level and id(node) not in type_checking
        found += [(name, node.lineno, nested) for name in names if name.split(".")[0] == "quantray"]
    return found


def test_every_package_has_a_layer() -> None:
    packages = {package_of(name) for name, _ in modules()} - {""}
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"


@pytest.mark.parametrize("module,path", modules(), ids=[name for name, _ in modules()])
def test_imports_go_down_the_layers(module: str, path: Path) -> None:
    source = package_of(module)
    wrong = [f"{path.relative_to(REPO)}:{line} imports {name}" for name, line, _ in imports(path)
             if name != "quantray" and not allowed(source, package_of(name))]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


@pytest.mark.parametrize("module,path", modules(), ids=[name for name, _ in modules()])
def test_nested_imports_say_why(module: str, path: Path) -> None:
    lines = path.read_text().splitlines()
    unexplained = [f"{path.relative_to(REPO)}:{line}: {lines[line - 1].strip()}" for name, line, nested
                   in imports(path) if nested and "# lazy" not in lines[line - 1]]
    assert not unexplained, "nested quantray imports without a '# lazy: why' comment:\n" + "\n".join(unexplained)


def test_the_rule_rejects_an_upward_import() -> None:
    assert not allowed("evaluate", "ensemble") and not allowed("data", "train") and not allowed("errors", "config")
    assert allowed("recipes", "tune") and allowed("registry", "ensemble") and allowed("cli", "jobs")
