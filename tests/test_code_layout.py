"""The code's shape: dependencies point down (no import cycle between t2v's modules; the product does
not import the Shapes world) and no module in t2v/ grows past 500 lines."""

import ast
from pathlib import Path


T2V = Path(__file__).parents[1] / "t2v"
PRODUCT = ("t2v.cli", "t2v.generate", "t2v.request", "t2v.pipelines", "t2v.server", "t2v.models")


def module_imports() -> dict[str, set[str]]:
    """Each t2v module -> the t2v modules it imports at module level (function-local imports aside)."""
    mods = {}
    for path in T2V.rglob("*.py"):
        name = ".".join(path.relative_to(T2V.parent).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = path
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base
                    if target in mods and target != name:
                        found.add(target)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name in mods}
        graph[name] = {t for t in found if not t.startswith(name + ".")}  # a package's own submodules
    return graph


def test_no_import_cycles():
    graph, state, cycles = module_imports(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_the_product_does_not_import_the_shapes_world():
    """Only the embedded model's defaults reach the world (its region planner, looked up by name)."""
    graph = module_imports()
    product = [m for m in graph if m.startswith(PRODUCT)]
    assert len(product) > 10
    offenders = {m: sorted(t for t in graph[m] if t.startswith("t2v.world")) for m in product}
    assert not any(offenders.values()), offenders


def test_no_module_over_500_lines():
    sizes = {str(p.relative_to(T2V)): p.read_text().count("\n") for p in T2V.rglob("*.py")}
    assert not {p: n for p, n in sizes.items() if n > 500}
