"""The package's layer contract, checked on its import graph (every import, at module level or inside
a function; type-checking-only imports aside):

    base (config, precision, text, files, untrusted, viz)
      <- models <- losses <- data <- hub <- inference <- metrics <- training <- server <- cli

A module imports only from its own layer or below, and no two modules import each other,
directly or around a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "attngan"
LAYERS: list[set[str]] = [
    {"config", "precision", "text", "files", "untrusted", "viz", "cache", "version", "errors"},
    {"models"},
    {"losses"},
    {"data"},
    {"hub"},
    {"inference"},
    {"metrics"},
    {"training"},
    {"server"},
    {"cli"},
]
ENTRY_POINTS = {"attngan", "attngan.__main__"}  # the lazy public API and ``python -m attngan``


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The attngan modules that ``path`` imports (``from . import x`` resolved to the module x when it is one)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "attngan")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "attngan":
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in known else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    return {module_name(f): {m for m in imports_of(f, known) if m in known} for f in files}


def layer_of(module: str) -> int:
    component = module.split(".")[1]
    for index, layer in enumerate(LAYERS):
        if component in layer:
            return index
    raise AssertionError(f"{module} belongs to no layer: add its component to LAYERS")


def test_every_import_points_down(graph: dict[str, set[str]]) -> None:
    upward = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
              for m, targets in graph.items() if m not in ENTRY_POINTS
              for t in sorted(targets) if t not in ENTRY_POINTS and layer_of(t) > layer_of(m)]
    assert not upward, "\n".join(upward)


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    """Tarjan's strongly connected components: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_imports_inside_functions_and_relative_ones() -> None:
    known = {"attngan.inference", "attngan.inference.pipeline", "attngan.viz", "attngan.training.gan",
             "attngan.training", "attngan.hub", "attngan.hub.folders"}
    found = imports_of(PACKAGE / "training" / "gan.py", known | {"attngan.training.gan"})
    assert "attngan.inference.pipeline" in found  # imported inside save_samples
    assert "attngan.hub" in found
