"""Compile a recorded Triton launch for a Hopper GPU (sm_90) without a GPU: the test helper of
the IVON and linear-head kernels (``test_triton_ivon.py``, ``test_triton_cce.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_POINTERS = {
    torch.float32: "*fp32",
    torch.bfloat16: "*bf16",
    torch.float16: "*fp16",
    torch.int64: "*i64",
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
