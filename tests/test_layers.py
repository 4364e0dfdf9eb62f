"""The import graph of `src/` keeps the layers of ../shared/ARCHITECTURE.md: imports point down.

Every `import` and `from … import` in every module (function-level and type-checking imports
included: a lazy import is still a dependency) is read with `ast` and checked against the
rules; a forbidden edge fails with its module and line. Circles are forbidden too: among the
numerics packages, and between any two modules at run time (an import under
`if TYPE_CHECKING:` is a type annotation's, never executed, so it counts for the layers but
not for circles: `services/twins.py` names `Services` from `services/context.py`, which
builds it).

1. ground: `errors`, `files`, `geometry` (and the package root's version)
2. numerics: `body`, `rights`, `cloth`, `garment`, `lod`, `tracking` — the ground and each other
3. `gltf` — the ground and the numerics' plain data types
4. `store`, `jobs` — the ground only
5. `services` — everything above
6. `live` — services, numerics, `gltf`, the ground
7. `server`, `cli`, `worker` — the edge: anything below (the CLI serves the server and runs
   the worker; the worker logs as the server does and joins a fleet as it does)

An edge that another engineer's work in progress still holds is named in `KNOWN_EDGES` with
who clears it; the test also fails when a listed edge is gone, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "spatialtwin"

LAYER = {
    "": 1,  # the package root: `from spatialtwin import __version__`
    "errors": 1,
    "files": 1,
    "native_logs": 1,
    "metrics": 1,
    "geometry": 1,
    "body": 2,
    "rights": 2,
    "cloth": 2,
    "garment": 2,
    "lod": 2,
    "tracking": 2,
    "gltf": 3,
    "store": 4,
    "jobs": 4,
    "services": 5,
    "live": 6,
    "server": 7,
    "cli": 7,
    "worker": 7,
    "__main__": 7,
}
NUMERICS = {p for p, layer in LAYER.items() if layer == 2}
GROUND = {p for p, layer in LAYER.items() if layer == 1}
# What a package may import beyond its own: the rule of its layer.
MAY_IMPORT = {
    **{p: GROUND for p in GROUND},
    **{p: GROUND | NUMERICS for p in NUMERICS},
    "gltf": GROUND | NUMERICS,
    "store": GROUND,
    "jobs": GROUND,
    "services": {p for p, layer in LAYER.items() if layer < 5},
    "live": GROUND | NUMERICS | {"gltf", "services"},
    "server": {p for p, layer in LAYER.items() if layer < 7},
    "cli": {p for p, layer in LAYER.items() if layer < 7} | {"server", "worker"},
    "worker": {p for p, layer in LAYER.items() if layer < 7} | {"server"},
    "__main__": {"cli"},
}

# Edges still held by work in progress elsewhere, each with who clears it (module -> module).
KNOWN_EDGES: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and (
            (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
        ):
            inside |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return inside


def imports_of(
    path: Path, module: str, known: set[str], *, runtime_only: bool = False
) -> list[tuple[str, int]]:
    """(imported spatialtwin module, line) for every import in the file (with
    `runtime_only`, leaving out those under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    skip = _type_checking_nodes(tree) if runtime_only else set()
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == ROOT]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT:
                continue
            # `from spatialtwin.store import atomic` imports the module `store.atomic`.
            names = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            out += [(n, node.lineno) for n in names] or [(target, node.lineno)]
    return out


def import_graph(runtime_only: bool = False) -> dict[str, list[tuple[str, int]]]:
    files = {module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}
    return {m: imports_of(p, m, set(files), runtime_only=runtime_only) for m, p in files.items()}


GRAPH = import_graph()
RUNTIME_GRAPH = import_graph(runtime_only=True)


def test_every_package_has_a_layer():
    packages = {package_of(m) for m in GRAPH}
    assert packages <= set(LAYER), packages - set(LAYER)


def forbidden_edges() -> dict[tuple[str, str], list[str]]:
    bad: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, targets in GRAPH.items():
        source = package_of(module)
        for target, line in targets:
            dest = package_of(target)
            if dest == source or dest in MAY_IMPORT[source]:
                continue
            bad[(module, target)].append(f"{module}:{line} imports {target}")
    return bad


def test_imports_point_down_the_layers():
    bad = forbidden_edges()
    unexpected = {edge: where for edge, where in bad.items() if edge not in KNOWN_EDGES}
    assert not unexpected, "\n".join(line for where in unexpected.values() for line in where)


def test_the_known_edges_are_still_there():
    """A cleared edge must leave `KNOWN_EDGES` too, so the allowance never outlives it."""
    cleared = set(KNOWN_EDGES) - set(forbidden_edges())
    assert not cleared, f"remove from KNOWN_EDGES: {sorted(cleared)}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
                continue
            if child not in graph:
                continue
            if child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_module_imports_itself_in_a_circle():
    graph = {m: {t for t, _ in targets if t != m} for m, targets in RUNTIME_GRAPH.items()}
    assert _cycles(graph) == []


def test_the_numerics_packages_import_each_other_without_a_circle():
    graph: dict[str, set[str]] = {p: set() for p in NUMERICS}
    for module, targets in GRAPH.items():
        source = package_of(module)
        if source in NUMERICS:
            graph[source] |= {package_of(t) for t, _ in targets} & NUMERICS - {source}
    assert _cycles(graph) == []


def test_the_rules_are_enforced_on_a_forbidden_edge(tmp_path):
    """The checker itself: an upward import planted in a copy of a store module is found."""
    planted = tmp_path / ROOT / "store" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("from spatialtwin.services.views import twin_view\n")
    module = "spatialtwin.store.planted"
    targets = imports_of(planted, module, set(GRAPH))
    assert targets == [("spatialtwin.services.views", 1)]
    assert package_of(targets[0][0]) not in MAY_IMPORT[package_of(module)]
