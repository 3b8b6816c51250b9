"""The lab's layout (DESIGN, "The lab (L3), by stage"): stages import downwards only, no module of
the lab imports itself back through others (function-local imports included), no file is long."""

from __future__ import annotations

import ast
from pathlib import Path

LAB = Path(__file__).resolve().parents[1] / "src" / "smoothlab" / "lab"
# plan < train < run < report < the command line on top (cli, demo, the package itself)
STAGES = {"plan": 0, "train": 1, "run": 2, "report": 3}
TOP = 4


def _module_name(path: Path) -> str:
    parts = path.relative_to(LAB.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.get(parts[2], TOP) if len(parts) > 2 else TOP


def _lab_imports(source: str, package: str) -> set[str]:
    """Every ``smoothlab.lab`` module that ``source`` (a module of ``package``) imports anywhere
    (functions and ``TYPE_CHECKING`` blocks included), relative imports resolved."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: up from the package, then down to the module
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module]).rstrip(".")
            # ``from a.b import c``: c may be a module (a.b.c) or a name in a.b; keep both
            found |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
    return {name for name in found if name.startswith("smoothlab.lab")}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(LAB.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _lab_imports(path.read_text(), package)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of ``graph`` as a list of modules, or [] when there is none (depth-first)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node], cycle = 1, []
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return cycle

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_lab_has_no_import_cycle() -> None:
    graph = _graph()
    assert "smoothlab.lab.plan.methods" in graph and len(graph) > 20
    assert _find_cycle(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_local_import() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    source = "import os\ndef f():\n    from smoothlab.lab.plan import grid\n    from . import x\n"
    found = _lab_imports(source, "smoothlab.lab.run")
    assert found == {
        "smoothlab.lab.plan",
        "smoothlab.lab.plan.grid",
        "smoothlab.lab.run",
        "smoothlab.lab.run.x",
    }


def test_stages_import_downwards_only() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _stage(target) > _stage(module)
    ]
    assert upward == []


def test_no_lab_file_is_longer_than_400_lines() -> None:
    lengths = {
        p.relative_to(LAB).as_posix(): len(p.read_text().splitlines()) for p in LAB.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > 400} == {}
    assert set(STAGES) <= {p.parent.name for p in LAB.rglob("*.py")}
