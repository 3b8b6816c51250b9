"""The compiled row kernels of the loss family (``smoothlab/_native/losses.c``), for float32 rows.

A job whose loss has a native form carries a :class:`NativeRows`: the loss kind and its per-row
coefficients, in the same terms as :mod:`smoothlab.losses._kernels` (``q = a e_y + b pi`` for
smoothing, plus ``r (w . T_i)`` for a per-example prior or probability targets ``T``; the
weight ``w`` as ``a`` for relaxation and the confidence penalty, whose cross-entropy is against
class indices or the rows ``w . T_i``). The fused path hands it ``(B, C, 1)`` float32 chunks;
anything else (other dtypes after conversion, spatial positions, or no compiler: see
:mod:`smoothlab._native`) runs the PyTorch kernels, which compute the same numbers.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from smoothlab import _native

__all__ = ["PENALTY", "RELAX", "SMOOTH", "NativeRows", "kernels"]

SMOOTH, RELAX, PENALTY = 0, 1, 2
#: Logits per thread below which a call runs in the calling thread only. A second thread costs
#: more than a hand-off: right after any parallel PyTorch operation (the class-index check
#: before the kernel is one), PyTorch's OpenMP workers keep spinning on the other core for up to
#: milliseconds. Measured on the 2-core machine: 65536 x 10 (0.65M logits) is faster in one
#: thread, 8192 x 1000 (8M) faster in two.
GRAIN_ELEMENTS = 1 << 21

_P, _I64, _D, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
_SIGNATURE: list[Any] = [
    *(_INT, _P, _P, _P, _I64, _I64, _P, _P, _D, _D, _P, _D, _P, _P, _P, _D, _D, _D, _D, _INT),
    *(_P, _P, _P),
]


_TYPED: list[ctypes.CDLL] = []  # libraries whose signatures are set


def kernels() -> ctypes.CDLL | None:
    """The loaded ``losses`` library with its signature set, or ``None`` (use PyTorch)."""
    lib = _native.library("losses")
    if lib is not None and not any(lib is done for done in _TYPED):
        lib.sl_rows.argtypes = _SIGNATURE
        lib.sl_rows.restype = _INT
        _TYPED.append(lib)
    return lib


def _rows(value: float | Tensor, start: int, stop: int) -> tuple[Tensor | None, float]:
    """A per-row coefficient for rows ``start:stop``: a float32 vector, or a constant."""
    if isinstance(value, Tensor):
        return value[start:stop].to(torch.float32).contiguous(), 0.0
    return None, float(value)


@dataclass(frozen=True)
class NativeRows:
    """A loss in the native kernel's terms (see the header of ``losses.c``).

    Attributes:
        kind: ``SMOOTH``, ``RELAX`` or ``PENALTY``.
        a: per-row ``a`` (smoothing) or weight ``w`` (the others): a float or a flat ``(N,)``
            tensor.
        b: per-row ``b`` (smoothing only).
        pi: ``(C,)`` class prior (times class weights), or ``None`` for uniform ``1 / C``.
        pi_sum: total mass of ``pi`` (1 for uniform).
        h1: ``alpha`` (relaxation) or ``beta`` (penalty).
        h2: the penalty's entropy threshold, NaN for none.
        rows: the smoothing's second term ``r (w . T_i)``: ``rows(start, stop)`` returns the
            rows' ``(stop - start, C)`` distributions ``T`` (a per-example prior, or probability
            targets); the kernel takes their sums itself.
        rows_weight: ``(C,)`` class weights ``w`` of ``T``, or ``None``.
        r: per-row coefficient of ``T``.
        scratch: ``rows`` returns a converted copy rather than a view, so the fused path
            bounds the rows per call.
        indexed: the loss reads class indices (everything but probability targets).
    """

    kind: int
    a: float | Tensor
    b: float | Tensor = 0.0
    pi: Tensor | None = None
    pi_sum: float = 1.0
    h1: float = 0.0
    h2: float = math.nan
    rows: Callable[[int, int], Tensor] | None = None
    rows_weight: Tensor | None = None
    r: float | Tensor = 0.0
    scratch: bool = False
    indexed: bool = True

    @staticmethod
    def usable(device: torch.device, compute: torch.dtype, dim: int = 2) -> bool:
        """Whether ``dim``-D logits on ``device``, computed in ``compute``, can run natively."""
        return (
            dim == 2 and device.type == "cpu" and compute == torch.float32 and kernels() is not None
        )

    def run(
        self,
        z: Tensor,
        g: Tensor | None,
        y: Tensor | None,
        valid: Tensor | None,
        start: int,
        stop: int,
        scale: float | None,
    ) -> tuple[Tensor, Tensor]:
        """Losses of the ``(B, C, 1)`` chunk ``z`` of rows ``start:stop``; gradient into ``g``.

        ``g`` (contiguous, may be ``z``) receives ``scale`` times the gradient unless ``scale``
        is ``None``; ``y`` (class indices) is ``None`` for probability targets. Returns the
        losses shaped ``(B, 1, 1)``, 0 where ``valid`` (a bool ``(B, 1, 1)`` mask, or ``None``)
        is false, and their sum (accumulated in float64).
        """
        lib = kernels()
        assert lib is not None and z.is_contiguous() and z.dtype == torch.float32
        rows, classes = int(z.shape[0]), int(z.shape[1])
        (a, a0), (b, b0) = _rows(self.a, start, stop), _rows(self.b, start, stop)
        (r, r0) = _rows(self.r, start, stop)
        pi = None if self.pi is None else self.pi.to(torch.float32).contiguous()
        tr = None if self.rows is None else self.rows(start, stop).to(torch.float32).contiguous()
        assert tr is None or tuple(tr.shape) == (rows, classes)
        rw = self.rows_weight
        rw = None if rw is None or tr is None else rw.to(torch.float32).contiguous()
        labels = None if y is None else y.reshape(-1).contiguous()
        mask = None if valid is None else valid.reshape(-1).contiguous()
        loss = torch.empty(rows, dtype=torch.float32)
        grad = scale is not None and g is not None
        assert not grad or (g is not None and g.is_contiguous() and g.dtype == torch.float32)
        parts = torch.zeros(_native.MAX_PARTS, dtype=torch.float64)
        owned = (g if grad else None, a, b, r, mask, labels, tr)
        pointers = [0 if t is None else t.data_ptr() for t in owned]
        fixed = (self.h1, self.h2, 0.0 if scale is None else scale, int(grad))
        vectors = (None if pi is None else pi.data_ptr(), self.pi_sum)

        def work(lo: int, hi: int, part: int) -> None:
            gp, ap, bp, rp, vp, yp, tp = pointers
            lib.sl_rows(
                self.kind, z.data_ptr() + 4 * lo * classes, gp + 4 * lo * classes if gp else None,
                yp + 8 * lo if yp else None, hi - lo, classes, ap + 4 * lo if ap else None,
                bp + 4 * lo if bp else None, a0, b0, *vectors,
                tp + 4 * lo * classes if tp else None, None if rw is None else rw.data_ptr(),
                rp + 4 * lo if rp else None, r0, *fixed, loss.data_ptr() + 4 * lo,
                vp + lo if vp else None, parts.data_ptr() + 8 * part,
            )  # fmt: skip

        _native.parallel(work, rows, grain=max(1, GRAIN_ELEMENTS // classes))
        return loss.view(rows, 1, 1), parts.sum().to(torch.float32)
