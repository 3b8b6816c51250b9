"""Optional Triton kernels for CUDA tensors (``pip install smoothlab[triton]``).

The loss family's fused path (:mod:`smoothlab.losses._fused`) hands ``(N, C, ...)`` logits on a CUDA
device to the row kernel of :mod:`smoothlab._triton.rows` when Triton can be imported; anything
else runs the CPU-native or PyTorch kernels, which compute the same numbers. Nothing here imports
Triton until a CUDA tensor (or the test switch below) asks for it, so ``import smoothlab`` stays
torch-and-numpy only.

Testing without a GPU: inside :func:`on_cpu` the kernels also take CPU tensors, which Triton
runs in its interpreter when ``TRITON_INTERPRET=1`` was set before Triton was first imported
(the interpreter is chosen when a kernel is decorated, Triton's own library functions included,
so the tests run it in a subprocess: the rest of the suite never sees the variable).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
from collections.abc import Iterator
from types import ModuleType

import torch
from torch import Tensor

__all__ = ["kernels", "on_cpu", "status", "takes"]

_LOCK = threading.Lock()
_MODULES: dict[str, ModuleType | None] = {}
_ERRORS: dict[str, str] = {}
_CPU = threading.local()
#: Logit dtypes the kernels read (computed in float32); float64 stays with PyTorch.
DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _load() -> ModuleType | None:
    """The kernel module, or ``None`` when Triton cannot be imported (its error kept)."""
    with _LOCK:
        if "rows" not in _MODULES:
            try:
                _MODULES["rows"] = importlib.import_module("smoothlab._triton.rows")
            except ImportError as error:  # triton is not installed
                _MODULES["rows"] = None
                _ERRORS["rows"] = f"unavailable: {error}"
        return _MODULES["rows"]


def kernels(device: torch.device) -> ModuleType | None:
    """The kernel module for tensors on ``device``, or ``None`` (no Triton for them)."""
    forced = device.type == "cpu" and int(getattr(_CPU, "depth", 0)) > 0
    if device.type == "cuda" or forced:
        return _load()
    return None


def takes(logits: Tensor) -> bool:
    """Whether the Triton row kernel runs these ``(N, C, ...)`` logits: half or float32, on CUDA,
    with positions that a ``(N, C, S)`` view reaches (the gradient may be written into them)."""
    if logits.dim() < 2 or logits.dtype not in DTYPES or kernels(logits.device) is None:
        return False
    try:
        logits.view(*logits.shape[:2], math.prod(logits.shape[2:]))
    except RuntimeError:  # e.g. a permuted spatial tensor: the PyTorch kernels copy it
        return False
    return True


@contextlib.contextmanager
def on_cpu() -> Iterator[None]:
    """Private test switch: CPU tensors take the Triton kernels (this thread); they run only in
    the interpreter (``TRITON_INTERPRET=1`` before Triton's first import).

    >>> with on_cpu():
    ...     takes(torch.zeros(2, 3))
    True
    >>> takes(torch.zeros(2, 3))
    False
    """
    _CPU.depth = getattr(_CPU, "depth", 0) + 1
    try:
        yield
    finally:
        _CPU.depth -= 1


def status() -> str:
    """``"available (triton X, CUDA tensors)"``, or ``"unavailable: <why>"``."""
    module = _load()
    if module is None:
        return _ERRORS["rows"]
    version = str(getattr(module.triton, "__version__", "?"))
    if not torch.cuda.is_available():
        return f"unavailable: no CUDA device (triton {version} is installed)"
    return f"available (triton {version}, CUDA tensors)"
