r"""IVON's compiled kernels (``smoothlab/_native/ivon.c``) for float32 CPU parameters.

Three fused passes replace IVON's PyTorch sequence (about ten sweeps over parameter-sized
memory, and torch's Mersenne-Twister ``normal_``): :func:`sample_` draws
:math:`\epsilon` from a Philox4x32-10 counter-based generator and writes
:math:`\theta = m + \sigma \epsilon`; :func:`record_` turns one sample's gradient into
:math:`h - \hat h` and the momentum's share; :func:`update_` does the Hessian update, the
:math:`\sigma` refresh (implicitly: :math:`\sigma` is recomputed from :math:`h` when sampling)
and the mean update. The header of ``ivon.c`` states the maths and the noise layout. The three
take one :class:`IvonArgs` of named fields and an element range, as the loss rows take
``RowsArgs`` (:mod:`smoothlab.losses._native_rows`), and ``lib=``, the library that IVON looks
up once per ``sampled_params`` block and once per step for all its parameters (default:
:func:`kernels`), since on small models the look-up (it reads the environment) is a sizeable
part of a kernel call.

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
    "IvonArgs",
    "NoiseSource",
    "fit",
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

_P, _I64, _U32, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32, ctypes.c_float


class IvonArgs(ctypes.Structure):
    """The named arguments of ``sl_ivon_sample``, ``sl_ivon_record`` and ``sl_ivon_update`` (the
    ``ivon_args_t`` struct of ``ivon.c``, field by field; each entry point reads its own fields,
    the others stay 0).

    Pointers address element 0 of one parameter's tensors; ``sl_ivon_*(args, lo, hi)`` runs
    elements ``[lo, hi)``, so threads share one struct and no caller computes byte offsets.
    """

    _fields_ = [
        *(("k0", _U32), ("k1", _U32), ("stream", _U32), ("first", ctypes.c_int32)),
        *(("m", _P), ("h", _P), ("theta", _P), ("eps", _P), ("g", _P), ("mom", _P), ("diff", _P)),
        *(("ess", _F), ("ess_wd", _F), ("wd", _F), ("keep", _F), ("share", _F)),
        *(("a", _F), ("c2", _F), ("missing", _F), ("samples", _F)),
        *(("lr", _F), ("debias", _F), ("clip", _F)),
    ]


_RANGE = ([ctypes.POINTER(IvonArgs), _I64, _I64], None)
_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "sl_philox4x32": ([_U32, _U32, _U32, _U32, _U32, _U32, _I64, _P], None),
    "sl_ivon_normal": ([_U32, _U32, _U32, _I64, _I64, _P], None),
    "sl_ivon_sample": _RANGE,
    "sl_ivon_record": _RANGE,
    "sl_ivon_update": _RANGE,
}


def kernels() -> ctypes.CDLL | None:
    """The loaded ``ivon`` library with its entry points typed (:func:`smoothlab._native.bind`),
    or ``None`` (use PyTorch)."""
    return _native.bind("ivon", _SIGNATURES)


def usable(p: Tensor, state: dict[str, Any]) -> bool:
    """Whether the kernels are loaded and parameter ``p`` and its state :func:`fit` them."""
    return kernels() is not None and fit(p, state)


def fit(p: Tensor, state: dict[str, Any]) -> bool:
    """Whether parameter ``p`` (holding its mean) and its state suit the native kernels:
    float32, CPU, contiguous and of one shape (a state dict loaded from elsewhere may not be).

    IVON asks :func:`kernels` once per block or step and this per parameter."""
    hess, momentum = state["hess"], state["momentum"]
    return (
        p.dtype == hess.dtype == momentum.dtype == torch.float32
        and p.is_cpu and hess.is_cpu and momentum.is_cpu
        and p.is_contiguous() and hess.is_contiguous() and momentum.is_contiguous()
        and p.shape == hess.shape == momentum.shape
    )  # fmt: skip


class NoiseSource:
    """Where the noise of one ``sampled_params`` call comes from: ``generator``, and with
    ``lib`` (the loaded kernels, looked up once for the call) the Philox key, two 32-bit words
    from ``generator``.

    The key is drawn on first use, so a call that samples no native parameter leaves the
    generator as the PyTorch path would.
    """

    def __init__(self, generator: torch.Generator, lib: ctypes.CDLL | None) -> None:
        self.generator, self.lib = generator, lib
        self._key: tuple[int, int] | None = None

    def key(self) -> tuple[int, int]:
        """The key ``(k0, k1)``, drawing it the first time."""
        if self._key is None:
            g = self.generator
            words = torch.randint(0, 2**32, (2,), dtype=torch.int64, generator=g, device=g.device)
            k0, k1 = words.tolist()
            self._key = (k0, k1)
        return self._key


def _lib(lib: ctypes.CDLL | None = None) -> ctypes.CDLL:
    """``lib``, the library a caller looked up already (IVON, once per block or step), else
    :func:`kernels`."""
    lib = kernels() if lib is None else lib
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


def _split(n: int, call: Callable[[int, int, int], None]) -> None:
    """``call(lo, hi, part)`` over ranges of ``[0, n)``, one per thread (``_native.parallel``)."""
    _native.parallel(call, n, grain=GRAIN_ELEMENTS)


def _run(entry: Callable[[Any, int, int], None], args: IvonArgs, n: int) -> None:
    """``entry(args, lo, hi)`` over ``[0, n)``, the threads sharing ``args``.

    Under two grains ``_native.parallel`` would make one range; the call is made directly then,
    since on a small tensor the dispatch's frames cost more than the kernel itself."""
    pointer = ctypes.byref(args)
    if n < 2 * GRAIN_ELEMENTS:
        entry(pointer, 0, n)
    else:
        _split(n, lambda lo, hi, _part: entry(pointer, lo, hi))


def normal_(out: Tensor, key: tuple[int, int], stream: int) -> Tensor:
    r"""Fill a contiguous float32 CPU tensor with the standard normals of ``stream``.

    Element :math:`j` is the :math:`j`-th normal of the stream under ``key`` (the layout in
    ``ivon.c``), whatever the tensor's shape or the number of threads.

    >>> z = torch.empty(100_000)
    >>> kernels() is None or abs(normal_(z, (1, 2), 0).std().item() - 1.0) < 0.01
    True
    """
    lib, base = _lib(), out.data_ptr()
    _split(out.numel(), lambda lo, hi, _part: lib.sl_ivon_normal(*key, stream, lo, hi, base))
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
    lib: ctypes.CDLL | None = None,
) -> None:
    r""":math:`\epsilon \sim \mathcal N(0, I)` into ``noise`` and
    :math:`\theta = m + \epsilon / \sqrt{\lambda (h + \delta)}` into ``sample``, one pass."""
    args = IvonArgs(
        k0=key[0], k1=key[1], stream=stream, m=mean.data_ptr(), h=hess.data_ptr(),
        theta=sample.data_ptr(), eps=noise.data_ptr(), ess=ess, ess_wd=ess * weight_decay,
    )  # fmt: skip
    _run(_lib(lib).sl_ivon_sample, args, mean.numel())


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
    lib: ctypes.CDLL | None = None,
) -> None:
    r"""Record one sample: :math:`D \mathrel{(+)=} h - \hat g \epsilon \sqrt{\lambda (h +
    \delta)}` and the momentum's share :math:`(1 - \beta_1) \hat g / S`, one pass (the first
    sample of a step assigns :math:`D` and first decays the momentum by :math:`\beta_1`)."""
    grad = grad.contiguous()
    args = IvonArgs(
        g=grad.data_ptr(), eps=noise.data_ptr(), h=hess.data_ptr(), mom=momentum.data_ptr(),
        diff=diff.data_ptr(), ess=ess, ess_wd=ess * weight_decay, keep=beta1,
        share=(1.0 - beta1) * share, first=int(first),
    )  # fmt: skip
    _run(_lib(lib).sl_ivon_record, args, grad.numel())


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
    lib: ctypes.CDLL | None = None,
) -> None:
    r"""One step from the recorded sum :math:`D`: the Hessian update with its correction term,
    then :math:`m \leftarrow m - \alpha\,\mathrm{clip}((b g + \delta m) / (h + \delta), r)`, one
    pass (see :mod:`smoothlab.optim._ivon_kernels` for the same lines in PyTorch)."""
    a = 1.0 - beta2
    args = IvonArgs(
        m=mean.data_ptr(), h=hess.data_ptr(), mom=momentum.data_ptr(), diff=diff.data_ptr(),
        ess=ess, ess_wd=ess * weight_decay, wd=weight_decay, a=a, c2=0.5 * a * a * ess,
        missing=missing, samples=samples, lr=lr, debias=debias, clip=clip_radius,
    )  # fmt: skip
    _run(_lib(lib).sl_ivon_update, args, mean.numel())
