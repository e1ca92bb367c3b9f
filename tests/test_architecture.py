"""The package's layer contract, checked on its import graph: every import, at module level or
inside a function, under ``if TYPE_CHECKING:`` too, and every module named by a string to
``importlib.import_module`` (the root package's lazy public names, ``_EXPORTS``)::

    base (config, errors, cache, version, precision, text, files, fingerprint, untrusted, viz)
      <- models <- losses <- data <- hub <- inference <- metrics <- training <- server <- cli

A module imports only from its own layer or below, and no two modules import each other,
directly or around a circle. The root package (``attngan``: the lazy public API) and
``attngan.__main__`` sit on top of every layer: nothing inside imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "attngan"
LAYERS: list[set[str]] = [
    {"config", "precision", "text", "files", "fingerprint", "untrusted", "viz", "cache", "version", "errors"},
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


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The attngan modules that ``path`` imports (``from . import x`` resolved to the module x when it is one)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
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
        elif isinstance(node, ast.Dict) and name == "attngan":  # _EXPORTS: public name -> "sub.module"
            found.update(f"attngan.{v.value}" for v in node.values
                         if isinstance(v, ast.Constant) and isinstance(v.value, str) and f"attngan.{v.value}" in known)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            text = node.args[0].value
            found.add(f"{package}{text}" if text.startswith(".") else text)
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
    into_the_top = [f"{m} imports {t}" for m, targets in graph.items() for t in sorted(targets) if t in ENTRY_POINTS]
    assert not into_the_top, "\n".join(into_the_top)


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
    found = imports_of(PACKAGE / "training" / "samples.py", known | {"attngan.training.samples"})
    assert "attngan.inference.pipeline" in found  # imported inside save_sample_grid
    assert "attngan.hub" in found


def test_the_checker_counts_type_checking_and_string_imports() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    root = imports_of(PACKAGE / "__init__.py", known)
    assert {"attngan.inference.pipeline", "attngan.training.gan", "attngan.hub"} <= root  # _EXPORTS strings
    assert "attngan.version" in root  # under TYPE_CHECKING
    generate = imports_of(PACKAGE / "cli" / "generate_cmd.py", known)
    assert "attngan.inference.pipeline" in generate  # its TYPE_CHECKING import
