"""The layer order that docs/architecture.md states, held against every import in the code.

The layers are read from the doc itself (the numbered list under "Layering"), so the doc and the code
cannot drift apart. Every import counts: at module level and inside function bodies (a lazy import is
still a dependency); only ``if TYPE_CHECKING:`` blocks, which never run, are left out. A module may
import its own layer and the layers below it, never a higher one, and no import cycle may exist between
modules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("rest_em", "verifiers", "sandbox")


def stated_layers() -> list[list[str]]:
    """The doc's layers, lowest first: each a list of module prefixes (``rest_em.training``, ``verifiers``)."""
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## Layering", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        m = re.match(r"^\d+\.\s+(.*)$", line.strip())
        if m:
            layers.append(re.findall(r"`([a-z_][a-z_.]*)`", m.group(1).split(":")[0]))
    return layers


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its body."""
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                # `from pkg import sub` imports the module pkg.sub; `from pkg import name` the module pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # a module's own packages load with it
                    deps.add(t)
        graph[name] = deps
    return graph


def layer_of(module: str, layers: list[list[str]]) -> int:
    best, found = -1, -1
    for i, prefixes in enumerate(layers):
        for p in prefixes:
            covers = module == p or (p != "rest_em" and module.startswith(p + "."))  # `rest_em`: the root module only
            if covers and len(p) > best:
                best, found = len(p), i
    return found


def test_the_doc_states_layers_for_every_module():
    layers = stated_layers()
    assert len(layers) >= 5, "docs/architecture.md lost its numbered layer list under '## Layering'"
    unplaced = [m for m in modules() if m not in PACKAGES and layer_of(m, layers) < 0]
    assert unplaced == [], f"modules in no layer of docs/architecture.md: {unplaced}"


def test_no_module_imports_a_higher_layer():
    layers = stated_layers()
    mods = modules()
    upward = []
    for module, deps in imports(mods).items():
        if module in PACKAGES:
            continue
        for dep in deps:
            if dep in PACKAGES and dep != module.split(".")[0]:
                dep_layer = layer_of(dep, layers)
            elif dep in PACKAGES:
                continue  # a module's own package __init__
            else:
                dep_layer = layer_of(dep, layers)
            if dep_layer > layer_of(module, layers):
                upward.append(f"{module} (layer {layer_of(module, layers) + 1}) imports {dep} (layer {dep_layer + 1})")
    assert upward == []


def test_no_import_cycles():
    graph = imports(modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_checker_sees_lazy_imports_and_cycles(tmp_path):
    """The graph counts an import inside a function and ignores one under TYPE_CHECKING (so the tests above
    can fail)."""
    graph = imports(modules())
    assert "rest_em.registry" in graph["rest_em.config"]  # imported inside Config's methods only
    assert "rest_em.algorithms.base" in graph["rest_em.algorithms.dpo"]
    assert "rest_em.config" not in graph["rest_em.algorithms"]  # under TYPE_CHECKING there
    assert layer_of("rest_em.algorithms.dpo", stated_layers()) > layer_of("rest_em.config", stated_layers())
