"""The compiled row kernels of the loss family (``smoothlab/_native/losses.c``), for float32 rows.

A job whose loss has a native form carries a :class:`NativeRows`: the loss kind and its per-row
coefficients in the family's one notation (``q = a e_y + b pi + r T``; see
:mod:`smoothlab.losses._kernels`), the weight as ``a`` for relaxation and the confidence
penalty. The same object describes the loss to the Triton kernel (:mod:`smoothlab._triton.rows`).
The fused path hands it ``(B, C, 1)`` float32 chunks; anything else (other dtypes after
conversion, spatial positions, or no compiler: see :mod:`smoothlab._native`) runs the PyTorch
kernels, which compute the same numbers.
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

__all__ = [
    "FAMILIES",
    "FOCAL",
    "GCE",
    "LOGITNORM",
    "LPEN",
    "MAXSUP",
    "MBLS",
    "PENALTY",
    "RELAX",
    "SCE",
    "SMOOTH",
    "NativeRows",
    "RowsArgs",
    "kernels",
    "rows_of",
    "viewable",
]

SMOOTH, RELAX, PENALTY = 0, 1, 2
#: The kinds of ``losses_kinds.h``: losses of ``log p_y`` alone, then cross-entropy plus a
#: function of the logits (class indices only).
FOCAL, GCE, SCE, LPEN, MAXSUP, MBLS, LOGITNORM = 3, 4, 5, 6, 7, 8, 9
#: Each kind's loss family, as :func:`smoothlab._native.status` names it.
FAMILIES = {
    SMOOTH: "smoothing",
    RELAX: "relaxation",
    PENALTY: "penalty",
    FOCAL: "focal",
    GCE: "generalized cross-entropy",
    SCE: "symmetric cross-entropy",
    LPEN: "logit penalty",
    MAXSUP: "max suppression",
    MBLS: "margin label smoothing",
    LOGITNORM: "logit norm",
}
#: Logits per thread below which a call runs in the calling thread only. A second thread costs
#: more than a hand-off: right after any parallel PyTorch operation (the class-index check
#: before the kernel is one), PyTorch's OpenMP workers keep spinning on the other core for up to
#: milliseconds. Measured on the 2-core machine: 65536 x 10 (0.65M logits) is faster in one
#: thread, 8192 x 1000 (8M) faster in two.
GRAIN_ELEMENTS = 1 << 21

_F, _P = ctypes.c_float, ctypes.c_void_p


class RowsArgs(ctypes.Structure):
    """The named arguments of ``sl_rows`` (the ``spec_t`` struct of ``losses.c``, field by field).

    Pointers address row 0 of the call's rows; ``sl_rows(args, lo, hi, total)`` runs rows
    ``[lo, hi)``, so threads share one struct and no caller computes byte offsets.
    """

    _fields_ = [
        *(("kind", ctypes.c_int32), ("grad", ctypes.c_int32), ("classes", ctypes.c_int64)),
        *(("z", _P), ("g", _P), ("y", _P), ("valid", _P), ("loss", _P)),
        *(("a", _P), ("b", _P), ("r", _P), ("a0", _F), ("b0", _F), ("r0", _F)),
        *(("pi", _P), ("pi_sum", _F), ("t", _P), ("tw", _P)),
        *(("strength", _F), ("tau", _F), ("scale", _F), ("zloss", _F), ("softcap", _F)),
        ("param", _F),
    ]


_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "sl_rows": ([ctypes.POINTER(RowsArgs), ctypes.c_int64, ctypes.c_int64, _P], ctypes.c_int),
}


def kernels() -> ctypes.CDLL | None:
    """The loaded ``losses`` library with its entry point typed, or ``None`` (use PyTorch)."""
    return _native.bind("losses", _SIGNATURES)


def rows_of(matrix: Tensor) -> Callable[[int, int], Tensor]:
    """``NativeRows.t_rows`` of an ``(N, C)`` matrix: its rows ``start:stop``."""
    return lambda start, stop: matrix[start:stop]


def viewable(tensor: Tensor) -> bool:
    """Whether the rows of an ``(N, C)`` tensor reach the kernel as views (no float32 copy)."""
    return tensor.dtype == torch.float32 and tensor.is_contiguous()


def _rows(value: float | Tensor, start: int, stop: int) -> tuple[Tensor | None, float]:
    """A per-row coefficient for rows ``start:stop``: a float32 vector, or a constant."""
    if isinstance(value, Tensor):
        return value[start:stop].to(torch.float32).contiguous(), 0.0
    return None, float(value)


@dataclass(frozen=True)
class NativeRows:
    """A loss in the native kernel's terms (see the header of ``losses.c``).

    Attributes:
        kind: ``SMOOTH``, ``RELAX``, ``PENALTY``, or a kind of ``losses_kinds.h`` (``FOCAL``
            ... ``LOGITNORM``, whose header there says what ``strength``, ``tau`` and
            ``param`` are for each).
        a: per-row ``a`` (smoothing) or weight ``w`` (the others): a float or a flat ``(N,)``
            tensor.
        b: per-row ``b`` (smoothing only).
        pi: ``(C,)`` class prior (times class weights), or ``None`` for uniform ``1 / C``.
        pi_sum: total mass of ``pi`` (1 for uniform).
        strength: ``alpha`` (relaxation) or ``beta`` (penalty).
        tau: the penalty's entropy threshold, NaN for none.
        t_rows: the term ``r T``: ``t_rows(start, stop)`` returns the rows'
            ``(stop - start, C)`` distributions (a per-example prior, or probability targets),
            which the kernels multiply by ``tw``; they take the sums themselves.
        tw: ``(C,)`` class weights ``w`` of ``T``, or ``None``.
        r: per-row coefficient of ``T``.
        scratch: ``t_rows`` returns a converted copy rather than a view, so the fused path
            bounds the rows per call.
        indexed: the loss reads class indices (everything but probability targets).
        zloss: ``lse_square_scale``: ``zloss lse^2`` is added at each counted position.
        softcap: the logits are ``softcap tanh(z / softcap)`` before anything else (0: none).
        param: a second hyperparameter of the kinds of ``losses_kinds.h``.
    """

    kind: int
    a: float | Tensor
    b: float | Tensor = 0.0
    pi: Tensor | None = None
    pi_sum: float = 1.0
    strength: float = 0.0
    tau: float = math.nan
    t_rows: Callable[[int, int], Tensor] | None = None
    tw: Tensor | None = None
    r: float | Tensor = 0.0
    scratch: bool = False
    indexed: bool = True
    zloss: float = 0.0
    softcap: float = 0.0
    param: float = 0.0

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
        t = None if self.t_rows is None else self.t_rows(start, stop).float().contiguous()
        assert t is None or tuple(t.shape) == (rows, classes)
        tw = None if self.tw is None or t is None else self.tw.to(torch.float32).contiguous()
        labels = None if y is None else y.reshape(-1).contiguous()
        mask = None if valid is None else valid.reshape(-1).contiguous()
        loss = torch.empty(rows, dtype=torch.float32)
        grad = scale is not None and g is not None
        assert not grad or (g is not None and g.is_contiguous() and g.dtype == torch.float32)
        parts = torch.zeros(_native.MAX_PARTS, dtype=torch.float64)
        at = _native.address
        args = RowsArgs(
            kind=self.kind, grad=int(grad), classes=classes, z=at(z), g=at(g) if grad else None,
            y=at(labels), valid=at(mask), loss=at(loss), a=at(a), b=at(b), r=at(r), a0=a0,
            b0=b0, r0=r0, pi=at(pi), pi_sum=self.pi_sum, t=at(t), tw=at(tw), strength=self.strength,
            tau=self.tau, scale=0.0 if scale is None else scale, zloss=self.zloss,
            softcap=self.softcap, param=self.param,
        )  # fmt: skip

        def work(lo: int, hi: int, part: int) -> None:
            if lib.sl_rows(ctypes.byref(args), lo, hi, at(parts, part)) != 0:
                raise MemoryError("sl_rows could not allocate a row buffer")

        _native.parallel(work, rows, grain=max(1, GRAIN_ELEMENTS // classes))
        return loss.view(rows, 1, 1), parts.sum().to(torch.float32)
