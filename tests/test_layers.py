"""DESIGN's layers: imports point down only, and `import smoothlab` needs only torch and numpy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "smoothlab"

# Top-level module (or package) name -> layer. A module may import its own layer or lower.
LAYERS = {
    "_checks": 0,
    "_native": 0,
    "_triton": 0,
    "targets": 1,
    "losses": 1,
    "schedules": 1,
    "noise": 1,
    "metrics": 1,
    "theory": 1,
    "nn": 2,
    "online": 2,
    "distill": 1,
    "adafocal": 2,
    "_nn_family": 2,
    "_nn_robust": 2,
    "calibration": 2,
    "optim": 2,
    "analysis": 2,
    "datasets": 2,
    "lab": 3,
    "plots": 3,
    "integrations": 3,
}
# Third-party modules each layer may import at module level (anything else goes inside functions).
ALLOWED_THIRD_PARTY = {0: {"torch"}, 1: {"torch", "numpy"}, 2: {"torch", "numpy"}}
# Kernel modules that need their compiler at module level (decorators); imported lazily by
# their package, never by `import smoothlab`.
KERNEL_MODULES = {
    f"_triton/{name}.py": {"triton"} for name in ("rows", "rows_family", "ivon", "cce")
}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _layer_of(path: Path) -> tuple[str, int]:
    relative = path.relative_to(SRC)
    top = relative.parts[0].removesuffix(".py")
    if top == "__init__":
        return top, 3
    assert top in LAYERS, f"{relative} is in no layer: add it to LAYERS in {__file__}"
    return top, LAYERS[top]


def _module_level_imports(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append("smoothlab." + (node.module or ""))
            else:
                names.append(node.module or "")
        elif isinstance(node, ast.If):  # TYPE_CHECKING blocks are fine
            continue
    return names


def _resolve_relative(path: Path, node: ast.ImportFrom) -> str:
    package = path.relative_to(SRC).parent.parts
    base = list(package[: len(package) - node.level + 1])
    return ".".join(["smoothlab", *base, *([node.module] if node.module else [])])


SOURCES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    _, layer = _layer_of(path)
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = [_resolve_relative(path, node) if node.level else (node.module or "")]
        for target in targets:
            parts = target.split(".")
            if parts[0] != "smoothlab" or len(parts) < 2:
                continue
            other = parts[1]
            assert other in LAYERS, f"{path.name} imports unknown smoothlab.{other}"
            assert LAYERS[other] <= layer, (
                f"{path.relative_to(SRC)} (layer {layer}) imports smoothlab.{other} "
                f"(layer {LAYERS[other]})"
            )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_module_level_third_party_imports(path: Path) -> None:
    _, layer = _layer_of(path)
    if layer == 3:
        return
    tree = ast.parse(path.read_text())
    kernel = KERNEL_MODULES.get(path.relative_to(SRC).as_posix(), set())
    for target in _module_level_imports(tree):
        root = target.split(".")[0]
        if root in STDLIB or root == "smoothlab" or root in kernel:
            continue
        assert root in ALLOWED_THIRD_PARTY[layer], (
            f"{path.relative_to(SRC)} imports {root} at module level; "
            "optional dependencies are imported inside functions"
        )


def test_import_smoothlab_needs_only_torch_and_numpy() -> None:
    code = (
        "import sys, smoothlab\n"
        "heavy = {'sklearn', 'scipy', 'matplotlib', 'rich', 'ray', 'safetensors', 'pandas', 'triton',"
        " 'lightning', 'transformers'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
