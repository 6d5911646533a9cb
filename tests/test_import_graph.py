"""The import graph of teco_jax/, eval/ and data_gen/: no cycles, and no import from a module
to a module of a higher layer.

    python -m pytest -q -n 1 tests/test_import_graph.py

Every .py file of the three packages is parsed with `ast` (nothing is imported), and every
import statement counts, also those inside functions and under `if TYPE_CHECKING:`: a
function-local import is still a dependency, it only runs later. An import names the
module it reads: `from teco_jax import bundle` is an edge to teco_jax.bundle,
`from teco_jax.world_model import WorldModel` one to teco_jax.world_model. The parent
packages that Python also runs on the way are not edges: data_gen's imports of
teco_jax.revisit also run teco_jax/__init__.py, which imports flax (and so JAX).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("teco_jax", "eval", "data_gen")

# The layers, lowest first. A module may import modules of its own layer and of the layers
# below it, never of a layer above. A module belongs to the layer of the longest prefix in
# this table that names it or one of its parent packages.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # pose geometry shared by the world generators and the benchmark: numpy only
    ("shared", ("teco_jax.revisit",)),
    # the world generators: they write datasets and know nothing of the model
    ("data_gen", ("data_gen",)),
    # the library: models, data pipeline, training, loading, inference, the CLIs
    ("teco_jax", ("teco_jax",)),
    # the browser player: it builds worlds live with data_gen's generators
    ("play", ("teco_jax.play",)),
    # the benchmark: it evaluates the library's models on data_gen's worlds
    ("eval", ("eval",)),
]


class Import(NamedTuple):
    source: str  # the importing module
    target: str  # the imported project module
    path: Path  # the importing file
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.source} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of PACKAGES by name (a package by its __init__.py)."""
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` reads: itself, else its longest prefix that is a module
    (`teco_jax.world_model.WorldModel` -> teco_jax.world_model); None outside the project."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import of a project module in `path`'s source, function-local ones included."""
    is_package = path.name == "__init__.py"
    found: dict[tuple[str, int], Import] = {}  # one edge per target and line (`from m import a, b`)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the importing module's package, `level` dots up
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module
            # `from pkg import sub` reads the submodule pkg.sub when there is one, else pkg
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            target = resolve(name, modules)
            if target is not None and target != module:
                found.setdefault((target, node.lineno), Import(module, target, path, node.lineno))
    return list(found.values())


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it (or a parent package) to LAYERS")
    return best


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of `graph` (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


@pytest.fixture(scope="module")
def edges() -> list[Import]:
    modules = project_modules()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def test_the_walk_sees_the_imports_it_should(edges, tmp_path):
    """The parser finds top-level, function-local and relative imports (a guard on the walk itself)."""
    pairs = {(e.source, e.target) for e in edges}
    assert ("teco_jax.world_model", "teco_jax.rollout") in pairs  # from teco_jax import rollout as ...
    assert ("teco_jax.play.__main__", "data_gen.maze") in pairs  # from data_gen import maze
    assert ("teco_jax.compat", "teco_jax.data.tfds_meta") in pairs  # inside a function
    assert ("eval.benchmark", "teco_jax.world_model") in pairs
    assert len(edges) > 100
    source = tmp_path / "probe.py"
    source.write_text("import teco_jax.models.teco as t\nfrom . import base\nfrom .. import errors\n"
                      "from ..nn.util import count_params\nimport numpy\n"
                      "def f():\n    from eval.fvd import frechet_distance\n")
    found = imports_of("teco_jax.tasks.probe", source, project_modules())
    assert [(e.target, e.line) for e in found] == [
        ("teco_jax.models.teco", 1), ("teco_jax.tasks.base", 2), ("teco_jax.errors", 3),
        ("teco_jax.nn.util", 4), ("eval.fvd", 7)]


def test_every_module_has_a_layer():
    for module in project_modules():
        layer_of(module)


def test_no_import_cycles(edges):
    graph: dict[str, set[str]] = {m: set() for m in project_modules()}
    for e in edges:
        graph[e.source].add(e.target)
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    lines = []
    for cycle in cycles:
        members = set(cycle)
        lines.append("cycle among " + ", ".join(cycle) + ":")
        lines += [f"    {e}" for e in edges if e.source in members and e.target in members]
    assert not cycles, "import cycles (break each one: move what both sides need into a lower module)\n" + \
        "\n".join(lines)


def test_no_import_from_a_lower_layer_to_a_higher_one(edges):
    upward = [f"{e}  (layer {LAYERS[layer_of(e.source)][0]!r} below {LAYERS[layer_of(e.target)][0]!r})"
              for e in edges if layer_of(e.target) > layer_of(e.source)]
    assert not upward, "imports from a lower layer to a higher one (see LAYERS):\n" + "\n".join(upward)
