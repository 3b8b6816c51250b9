r"""IVON's compiled kernels (``smoothlab/_native/ivon.c``) for float32 CPU parameters.

Three fused passes replace IVON's PyTorch sequence (about ten sweeps over parameter-sized
memory, and torch's Mersenne-Twister ``normal_``): :func:`sample_` draws
:math:`\epsilon` from a Philox4x32-10 counter-based generator and writes
:math:`\theta = m + \sigma \epsilon`; :func:`record_` turns one sample's gradient into
:math:`h - \hat h` and the momentum's share; :func:`update_` does the Hessian update, the
:math:`\sigma` refresh (implicitly: :math:`\sigma` is recomputed from :math:`h` when sampling)
and the mean update. The header of ``ivon.c`` states the maths and the noise layout.

The noise of one ``sampled_params`` call is fixed by a 64-bit Philox key drawn from the optimizer's
``torch.Generator`` (:class:`NoiseSource`) and, per parameter, its position in the optimizer (the
stream), so runs repeat from a seed, resume bitwise from a state dict, and do not depend on the
number of threads (on one machine: see ``ivon.c`` about FMA). The noise differs from the PyTorch
path's (identically distributed) noise. Without a compiler, with ``SMOOTHLAB_NATIVE=0`` or inside
:func:`smoothlab._native.disabled`, :func:`kernels` is ``None`` and IVON runs in PyTorch.

Reference: J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as easy
as 1, 2, 3", SC 2011; G. E. P. Box, M. E. Muller, "A note on the generation of random normal
deviates", 1958; Shen et al., ICML 2024, Algorithm 1.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from smoothlab import _native

__all__ = [
    "NoiseSource",
    "kernels",
    "normal_",
    "philox4x32",
    "record_",
    "sample_",
    "update_",
    "usable",
]

#: Elements per thread below which a call runs in the calling thread only: a quarter of a
#: millisecond of memory-bound work per thread, well above a thread hand-off (~50 us) and the
#: time PyTorch's OpenMP workers keep spinning after the backward pass.
GRAIN_ELEMENTS = 1 << 18

_P, _I64, _U32, _F, _INT = (
    ctypes.c_void_p,
    ctypes.c_int64,
    ctypes.c_uint32,
    ctypes.c_float,
    ctypes.c_int,
)
_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "sl_philox4x32": ([_U32, _U32, _U32, _U32, _U32, _U32, _I64, _P], None),
    "sl_ivon_normal": ([_U32, _U32, _U32, _I64, _I64, _P], None),
    "sl_ivon_sample": ([_U32, _U32, _U32, _I64, _I64, _P, _P, _P, _P, _F, _F], None),
    "sl_ivon_record": ([_I64, _P, _P, _P, _P, _P, _F, _F, _F, _F, _INT], None),
    "sl_ivon_update": ([_I64, _P, _P, _P, _P, *[_F] * 10], None),
}


def kernels() -> ctypes.CDLL | None:
    """The loaded ``ivon`` library with its entry points typed (:func:`smoothlab._native.bind`),
    or ``None`` (use PyTorch)."""
    return _native.bind("ivon", _SIGNATURES)


def usable(p: Tensor, state: dict[str, Any]) -> bool:
    """Whether parameter ``p`` (holding its mean) and its state can take the native kernels:
    float32, CPU, contiguous and of one shape (a state dict loaded from elsewhere may not be)."""
    return kernels() is not None and all(
        t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous()
        and t.shape == p.shape
        for t in (p, state["hess"], state["momentum"])
    )  # fmt: skip


class NoiseSource:
    """Where the noise of one ``sampled_params`` call comes from: ``generator``, and with
    ``native`` the Philox key, two 32-bit words from ``generator``.

    The key is drawn on first use, so a call that samples no native parameter leaves the
    generator as the PyTorch path would.
    """

    def __init__(self, generator: torch.Generator, *, native: bool) -> None:
        self.generator, self.native = generator, native
        self._key: tuple[int, int] | None = None

    def key(self) -> tuple[int, int]:
        """The key ``(k0, k1)``, drawing it the first time."""
        if self._key is None:
            g = self.generator
            words = torch.randint(0, 2**32, (2,), dtype=torch.int64, generator=g, device=g.device)
            self._key = (int(words[0]), int(words[1]))
        return self._key


def _lib() -> ctypes.CDLL:
    lib = kernels()
    if lib is None:
        raise RuntimeError("the native IVON kernels are unavailable (see smoothlab._native)")
    return lib


def philox4x32(key: tuple[int, int], counter: tuple[int, int, int, int], blocks: int) -> Tensor:
    """Philox4x32-10 output of ``blocks`` consecutive counters (the first word counts up).

    Returns ``(blocks, 4)`` int64 words in ``[0, 2^32)``. The known-answer test entry point.

    >>> kernels() is None or philox4x32((0, 0), (0, 0, 0, 0), 1)[0, 0].item() == 0x6627E8D5
    True
    """
    out = torch.empty(blocks, 4, dtype=torch.int32)
    _lib().sl_philox4x32(*key, *counter, blocks, out.data_ptr())
    return out.to(torch.int64) & 0xFFFFFFFF


def _split(n: int, call: Callable[[int, int], None]) -> None:
    """``call(lo, hi)`` over ranges of ``[0, n)``, one per thread (see ``_native.parallel``)."""
    _native.parallel(lambda lo, hi, _part: call(lo, hi), n, grain=GRAIN_ELEMENTS)


def normal_(out: Tensor, key: tuple[int, int], stream: int) -> Tensor:
    r"""Fill a contiguous float32 CPU tensor with the standard normals of ``stream``.

    Element :math:`j` is the :math:`j`-th normal of the stream under ``key`` (the layout in
    ``ivon.c``), whatever the tensor's shape or the number of threads.

    >>> z = torch.empty(100_000)
    >>> kernels() is None or abs(normal_(z, (1, 2), 0).std().item() - 1.0) < 0.01
    True
    """
    lib, base = _lib(), out.data_ptr()
    _split(out.numel(), lambda lo, hi: lib.sl_ivon_normal(*key, stream, lo, hi, base))
    return out


def sample_(
    mean: Tensor,
    hess: Tensor,
    sample: Tensor,
    noise: Tensor,
    *,
    key: tuple[int, int],
    stream: int,
    ess: float,
    weight_decay: float,
) -> None:
    r""":math:`\epsilon \sim \mathcal N(0, I)` into ``noise`` and
    :math:`\theta = m + \epsilon / \sqrt{\lambda (h + \delta)}` into ``sample``, one pass."""
    lib, n = _lib(), mean.numel()
    pointers = (mean.data_ptr(), hess.data_ptr(), sample.data_ptr(), noise.data_ptr())
    ess_wd = ess * weight_decay
    _split(n, lambda lo, hi: lib.sl_ivon_sample(*key, stream, lo, hi, *pointers, ess, ess_wd))


def record_(
    grad: Tensor,
    noise: Tensor,
    hess: Tensor,
    momentum: Tensor,
    diff: Tensor,
    *,
    ess: float,
    weight_decay: float,
    beta1: float,
    share: float,
    first: bool,
) -> None:
    r"""Record one sample: :math:`D \mathrel{(+)=} h - \hat g \epsilon \sqrt{\lambda (h +
    \delta)}` and the momentum's share :math:`(1 - \beta_1) \hat g / S`, one pass (the first
    sample of a step assigns :math:`D` and first decays the momentum by :math:`\beta_1`)."""
    lib = _lib()
    grad = grad.contiguous()
    tensors = (grad, noise, hess, momentum, diff)
    hyper = (ess, ess * weight_decay, beta1, (1.0 - beta1) * share, int(first))

    def work(lo: int, hi: int) -> None:
        lib.sl_ivon_record(hi - lo, *(_native.address(t, lo) for t in tensors), *hyper)

    _split(grad.numel(), work)


def update_(
    mean: Tensor,
    hess: Tensor,
    momentum: Tensor,
    diff: Tensor,
    *,
    ess: float,
    weight_decay: float,
    beta2: float,
    lr: float,
    debias: float,
    clip_radius: float,
    missing: int,
    samples: int,
) -> None:
    r"""One step from the recorded sum :math:`D`: the Hessian update with its correction term,
    then :math:`m \leftarrow m - \alpha\,\mathrm{clip}((b g + \delta m) / (h + \delta), r)`, one
    pass (see :mod:`smoothlab.optim._ivon_kernels` for the same lines in PyTorch)."""
    lib, a = _lib(), 1.0 - beta2
    tensors = (mean, hess, momentum, diff)
    hyper = (ess, ess * weight_decay, weight_decay, a, 0.5 * a * a * ess, missing, samples)
    step = (lr, debias, clip_radius)

    def work(lo: int, hi: int) -> None:
        lib.sl_ivon_update(hi - lo, *(_native.address(t, lo) for t in tensors), *hyper, *step)

    _split(mean.numel(), work)
