"""The layout's one-way rule (docs/DESIGN.md): commands -> tasks -> engine / data / runs -> core.

Every import counts, also one inside a function: a lazy import still ties two modules together
(and a cycle through one is a cycle). Read from the source with `ast`, so the test imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "tasks", "tokenizer")

# lower number = lower floor; a module may import its own floor and the floors below
FLOORS = {
    "pipelines.errors": 0, "pipelines.atomic": 0, "pipelines.config": 0, "tokenizer": 0,
    # the GLUE table is data about the benchmark (names, columns, metrics): recipes check per_task
    # names against it, the report and the model cards read its metrics
    "pipelines.data.glue": 0, "pipelines.data.hub": 0,
    "pipelines.data": 1, "pipelines.runs": 1, "pipelines.engine": 2,
    "tasks": 3,
    "pipelines.commands": 4, "pipelines.__main__": 4, "pipelines": 4,
}
# within floor 1 and 2, which package may import which (the rest of the floor is off limits)
PACKAGE_DEPS = {
    "pipelines.data": set(),
    "pipelines.runs": {"pipelines.data"},  # the report and cards read the GLUE table
    "pipelines.engine": {"pipelines.data", "pipelines.runs"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every lmforge module `path` imports (top level or inside a function)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from .sampler import x` in pipelines.data
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pipelines.engine import loop`
    return {m for m in found if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for m in imports_of(path):
            while m and m not in modules:  # `from a.b import name`: the module is a.b
                m = m.rpartition(".")[0]
            if m and m != name:
                targets.add(m)
        edges[name] = targets
    return edges


def floor_of(module: str) -> tuple[str, int]:
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, FLOORS[prefix]
    raise AssertionError(f"{module} is on no floor: add it to FLOORS (and to docs/DESIGN.md's map)")


def test_every_module_is_on_a_floor():
    for module in graph():
        floor_of(module)


def test_imports_point_down():
    upward = []
    for module, targets in graph().items():
        home, level = floor_of(module)
        for target in targets:
            there, target_level = floor_of(target)
            if target_level > level:
                upward.append(f"{module} -> {target}")
            elif home != there and home in PACKAGE_DEPS and there in PACKAGE_DEPS and there not in PACKAGE_DEPS[home]:
                upward.append(f"{module} -> {target} ({home} may import only {sorted(PACKAGE_DEPS[home]) or 'core'})")
    assert not upward, "imports against the layout:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_only_commands_import_tasks():
    outside = [f"{m} -> {t}" for m, ts in graph().items() for t in ts
               if t.split(".")[0] == "tasks" and m.split(".")[0] == "pipelines"
               and not (m.startswith("pipelines.commands") or m == "pipelines.__main__")]
    assert not outside, "\n".join(outside)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_benchmarks_in_the_product(package):
    shipped = [str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py") if "bench" in p.stem]
    assert not shipped, f"benchmarks belong in bench/: {shipped}"


def test_every_package_folder_is_a_package():
    """Each folder of modules has its __init__.py (a namespace package imports too, but setuptools' package
    discovery skips it, and a file git ignores goes missing from a fresh clone without a word)."""
    folders = {p.parent for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    evaluate_modules = ROOT / "tasks" / "metrics"  # evaluate's local metric scripts: a folder each, no package
    missing = [str(f.relative_to(ROOT)) for f in sorted(folders)
               if not (f / "__init__.py").is_file() and f.parent != evaluate_modules]
    assert not missing, f"no __init__.py in {missing}"
