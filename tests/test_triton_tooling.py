"""The Triton kernels' tooling without a GPU: compilation for sm_90, the GPU benchmark, its script.

The interpreter (``tests/test_triton_kernels.py``) checks the kernel's arithmetic but not what
Triton's compiler accepts: here every kernel variant that the losses launch is compiled to PTX and
a cubin for a Hopper GPU, which needs no GPU. ``bench_gpu.py`` runs end to end on tiny CPU tensors
with CUDA's timers stubbed, and ``gpu_check.sh --dry-run`` collects the CUDA tests.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from smoothlab import _triton
from smoothlab.losses import (
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
)
from smoothlab.losses._common import prepare
from smoothlab.losses._jobs import index_job

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = torch.cuda.is_available()


def _data(n: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, c, generator=g).to(torch.bfloat16)
    return z, torch.randint(0, c, (n,), generator=g)


def test_gpu_check_dry_run() -> None:
    """``gpu_check.sh --dry-run`` collects the CUDA tests and checks the benchmark on any machine."""
    script = ROOT / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(script), "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = re.search(r"test_triton_kernels.py: (\d+)", done.stdout)
    assert collected is not None and int(collected.group(1)) >= 30, done.stdout
    assert "losses: pytorch ls r=0.1, ls r=0.1," in done.stdout
    assert "heads: pytorch linear + ls r=0.1, ls r=0.1," in done.stdout
    assert "ivon 2048x6: torch AdamW fused step, ivon step()," in done.stdout
    assert re.search(r"test_triton_ivon.py: \d+", done.stdout), done.stdout
    assert done.stdout.rstrip().endswith("dry run done: nothing was measured")
    if not HAS_CUDA:
        bad = subprocess.run(
            ["bash", str(script)], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert bad.returncode == 2
        assert bad.stderr == "gpu_check.sh needs a CUDA device (none found); try --dry-run\n"


_TYPES = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.int64: "i64",
    torch.uint8: "u8",
}
_SOFT = torch.softmax(torch.randn(4, 5000, generator=torch.Generator().manual_seed(19)), 1)
COMPILED: dict[str, Callable[[torch.Tensor, torch.Tensor], object]] = {
    "ls ignore_index": lambda z, y: label_smoothing_cross_entropy(z, y, 0.1, ignore_index=3),
    "nls example weights": lambda z, y: label_smoothing_cross_entropy(
        z, y, -0.1, weight=torch.ones(5000), weighting="example"
    ),
    "exclusive class prior": lambda z, y: label_smoothing_cross_entropy(
        z, y, 0.1, prior=_SOFT[0], exclusive=True
    ),
    "teacher prior": lambda z, y: label_smoothing_cross_entropy(z, y, 0.1, prior=_SOFT),
    "soft targets": lambda z, y: label_smoothing_cross_entropy(
        z, _SOFT, 0.1, prior=_SOFT, weight=torch.ones(5000)
    ),
    "relaxation": lambda z, y: label_relaxation_loss(z, y, 0.1),
    "spatial": lambda z, y: label_smoothing_cross_entropy(
        z.view(2, 2, 5000).transpose(1, 2), y.view(2, 2), 0.1
    ),
    "penalty hinge": lambda z, y: confidence_penalty_loss(z, y, 0.1, threshold=1.0),
    "penalty soft": lambda z, y: confidence_penalty_loss(z, _SOFT, 0.1),
}


class _Recorder:
    """Stands in for the kernel: records each launch's arguments instead of running it."""

    def __init__(self) -> None:
        self.launches: list[tuple[tuple[object, ...], dict[str, object]]] = []

    def __getitem__(self, grid: object) -> Callable[..., None]:
        return lambda *args, **flags: self.launches.append((args, flags))


def _compile(kernel: Any, args: tuple[object, ...], flags: dict[str, object]) -> None:
    """Compile one recorded launch for sm_90 (PTX and cubin), as the GPU would at first call."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    signature: dict[str, str] = {}
    for name, value in zip(names, args, strict=False):
        if isinstance(value, torch.Tensor):
            signature[name] = "*" + _TYPES[value.dtype]
        elif isinstance(value, int):
            signature[name] = "i32" if -(2**31) <= value < 2**31 else "i64"
        else:
            signature[name] = "fp32"
    constexprs = {(names.index(k),): v for k, v in flags.items() if k in names}
    signature.update({k: "constexpr" for k in flags if k in names})
    source = ASTSource(kernel, signature, constexprs=constexprs)
    options = {key: flags[key] for key in ("num_warps", "enable_fp_fusion")}
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    assert "cubin" in compiled.asm


@pytest.mark.slow
@pytest.mark.parametrize("case", [*COMPILED, "z-loss and softcap", "forward only"])
def test_kernel_variants_compile_for_the_gpu(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton.backends.nvidia")
    from smoothlab._triton import rows

    kernel, recorder = rows._rows_kernel, _Recorder()
    monkeypatch.setattr(rows, "_rows_kernel", recorder)
    z, y = _data(4, 5000)
    with _triton.on_cpu():
        if case == "z-loss and softcap":
            job = index_job(prepare(z, y, upcast=False), 0.1, None, False, "pytorch")
            rows.run_rows(job.native, z, z, y, None, 1.0, lse_square_scale=1e-4, softcap=30.0)
        elif case == "forward only":
            with torch.no_grad():
                label_smoothing_cross_entropy(z, y, 0.1)
        else:
            COMPILED[case](z.requires_grad_(), y).backward()
    assert len(recorder.launches) == 1
    _compile(kernel, *recorder.launches[0])


class _Event:
    """A stand-in for ``torch.cuda.Event`` that times with the CPU clock."""

    def __init__(self, enable_timing: bool) -> None:
        self.at = 0.0

    def record(self) -> None:
        self.at = time.perf_counter()

    def elapsed_time(self, other: _Event) -> float:
        return 1e3 * (other.at - self.at)


def test_bench_gpu_tables_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench_gpu.py end to end on tiny CPU tensors, CUDA's clock and memory counters stubbed."""
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "DEVICE", "cpu")
    for name, value in {
        "is_available": lambda: True,
        "get_device_name": lambda: "stub",
        "synchronize": lambda: None,
        "reset_peak_memory_stats": lambda: None,
        "memory_allocated": lambda: 0,
        "max_memory_allocated": lambda: 1 << 20,
        "Event": _Event,
    }.items():
        monkeypatch.setattr(torch.cuda, name, value)
    assert (
        bench.main(["--shape", "8x50", "--head", "8x4x50", "--ivon", "16x2", "--repeats", "1"]) == 0
    )
    out = capsys.readouterr().out
    assert "device: stub" in out
    assert "prior r=0.1 logits-free" in bench.HEADS  # on CUDA only: not in this CPU run
    heads = [name for name in bench.HEADS if name not in bench.CUDA_ONLY]
    for name in [*bench.LOSSES, *heads, *bench.IVON_STEPS]:
        assert re.search(rf"^{re.escape(name)} +\d", out, re.MULTILINE), name
