"""Test helpers of the Triton kernels (``test_triton_kernels.py``, ``test_triton_ivon.py``,
``test_triton_cce.py``, ``test_triton_field.py``): the devices a case runs on, the row kernels'
device fixture, the same file rerun in Triton's interpreter, and a recorded launch compiled for
a Hopper GPU (sm_90) without a GPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
HAS_CUDA = torch.cuda.is_available()

if INTERPRETED:
    DEVICES = [pytest.param("cpu", id="interpreter")]
else:
    _no_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
    DEVICES = [pytest.param("cuda", marks=[pytest.mark.cuda, _no_gpu], id="cuda")]


def rows_device(device: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The body of the row kernels' ``device`` fixture: the Triton path switched on for
    ``device`` (CPU tensors in the interpreter, with small blocks so that rows span several),
    and a spy that fails the case if it never reached :func:`smoothlab._triton.rows.run_rows`."""
    pytest.importorskip("triton")
    from smoothlab import _triton
    from smoothlab._checks import device_checks
    from smoothlab._triton import rows

    launches: list[int] = []
    launch = rows.run_rows

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        launches.append(1)
        return launch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rows, "run_rows", spy)
    if device == "cpu":
        monkeypatch.setattr(rows, "MAX_BLOCK", 16)
        # and the code paths of a GPU's tensors: no host reads, device asserts, the gradient
        # scale of a mean applied in the backward pass (smoothlab._checks.host_reads)
        with _triton.on_cpu(), device_checks():
            yield "cpu"
    else:
        yield "cuda"
    assert launches, "the case never reached the Triton kernel"


def run_interpreter_suite(path: str, minimum: int) -> None:
    """Run the test file ``path`` on CPU tensors in Triton's interpreter, in a subprocess, and
    check that it passes with at least ``minimum`` tests."""
    pytest.importorskip("triton")
    # a fresh pytest: none of this run's PYTEST_* variables (xdist's worker id, the current test)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["TRITON_INTERPRET"] = "1"
    # numpy warns about the NaN that masked-off lanes compute and discard (0 * -inf)
    quiet = ["-W", "ignore::RuntimeWarning:triton.runtime.interpreter"]
    command = [sys.executable, "-m", "pytest", path, "-p", "no:cacheprovider", "-x", *quiet]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed is not None and int(passed.group(1)) >= minimum, done.stdout[-3000:]


_POINTERS = {
    torch.float32: "*fp32",
    torch.bfloat16: "*bf16",
    torch.float16: "*fp16",
    torch.int64: "*i64",
    torch.uint8: "*u8",
}


class Recorder:
    """Stands in for a kernel: records each launch's arguments instead of running it."""

    def __init__(self) -> None:
        self.launches: list[tuple[tuple[object, ...], dict[str, object]]] = []

    def __getitem__(self, grid: object) -> Callable[..., None]:
        return lambda *args, **flags: self.launches.append((args, flags))


def compile_sm90(kernel: Any, args: tuple[object, ...], flags: dict[str, object]) -> None:
    """Compile one recorded launch to PTX and a cubin, as the GPU would at its first call."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    signature = {}
    for name, value in zip(names, args, strict=False):
        if isinstance(value, torch.Tensor):
            signature[name] = _POINTERS[value.dtype]
        else:
            signature[name] = "i32" if isinstance(value, int) else "fp32"
    kernel_flags = {k: v for k, v in flags.items() if k in names}
    constexprs = {(names.index(k),): v for k, v in kernel_flags.items()}
    signature.update(dict.fromkeys(kernel_flags, "constexpr"))
    source = ASTSource(kernel, signature, constexprs=constexprs)
    options = {k: v for k, v in flags.items() if k in ("num_warps", "enable_fp_fusion")}
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    assert "cubin" in compiled.asm
