"""The bitwise reference of IVON's Triton kernels: the noise stored by the sample and read back.

Until the noise was regenerated (issue 16), ``smoothlab/_triton/ivon.py`` stored each sample's
normals in a float32 buffer, which the record (or the fused record + update of one sample per
step) read back, element by element in order. :class:`StoredNoise` is that path, built from the
production module's own per-element helpers (the normals, the sample, record and step formulas)
with the same launch signatures, so that ``test_triton_ivon.py`` can run IVON through it and
require the regenerating kernels to give the same bits. :func:`normals` writes the normals of
one stream, for the tests that compare the noise itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
ivon = pytest.importorskip("smoothlab._triton.ivon")
BLOCK_: tl.constexpr = tl.constexpr(ivon.BLOCK)


@triton.jit
def _noise_word(mean, hess, theta, eps, offs, n, z, ess, ess_wd, THETA: tl.constexpr):
    tl.store(eps + offs, z, mask=offs < n)
    ivon._sample_word(mean, hess, theta, offs, n, z, ess, ess_wd, THETA)


@triton.jit
def _sample_kernel(ptrs, info, owner, key_ptr, ess, ess_wd, THETA: tl.constexpr):
    """The sample and its normals; ``ptrs`` rows: mean, hess, theta, eps."""
    t, stream, _, n, start = ivon._tile(info, owner)
    mean = tl.load(ptrs + 4 * t).to(tl.pointer_type(tl.float32))
    hess = tl.load(ptrs + 4 * t + 1).to(tl.pointer_type(tl.float32))
    theta = tl.load(ptrs + 4 * t + 2).to(tl.pointer_type(THETA))
    eps = tl.load(ptrs + 4 * t + 3).to(tl.pointer_type(tl.float32))
    z0, z1, z2, z3, offs = ivon._normals(key_ptr, stream, start)
    _noise_word(mean, hess, theta, eps, offs, n, z0, ess, ess_wd, THETA)
    _noise_word(mean, hess, theta, eps, offs + 64, n, z1, ess, ess_wd, THETA)
    _noise_word(mean, hess, theta, eps, offs + 128, n, z2, ess, ess_wd, THETA)
    _noise_word(mean, hess, theta, eps, offs + 192, n, z3, ess, ess_wd, THETA)


@triton.jit
def _record_kernel(ptrs, info, owner, ess, ess_wd, keep, share, GRAD: tl.constexpr):
    """The record with the stored noise; ``ptrs`` rows: grad, eps, hess, momentum, diff."""
    t, _, first, n, start = ivon._tile(info, owner)
    grad = tl.load(ptrs + 5 * t).to(tl.pointer_type(GRAD))
    eps = tl.load(ptrs + 5 * t + 1).to(tl.pointer_type(tl.float32))
    hess = tl.load(ptrs + 5 * t + 2).to(tl.pointer_type(tl.float32))
    mom = tl.load(ptrs + 5 * t + 3).to(tl.pointer_type(tl.float32))
    diff = tl.load(ptrs + 5 * t + 4).to(tl.pointer_type(tl.float32))
    offs = start + tl.arange(0, BLOCK_)
    e = tl.load(eps + offs, mask=offs < n, other=0.0)
    ivon._record_word(grad, hess, mom, diff, offs, n, e, first, ess, ess_wd, keep, share)


@triton.jit
def _step_kernel(
    ptrs, info, owner, scalars, ess, ess_wd, wd, a, c2, lr, clip, keep, share,
    PARAM: tl.constexpr, GRAD: tl.constexpr,
):  # fmt: skip
    """Record and update with the stored noise; ``ptrs`` rows: mean, hess, momentum, eps,
    gradient, parameter."""
    t, _, write_param, n, start = ivon._tile(info, owner)
    mean = tl.load(ptrs + 6 * t).to(tl.pointer_type(tl.float32))
    hess = tl.load(ptrs + 6 * t + 1).to(tl.pointer_type(tl.float32))
    mom = tl.load(ptrs + 6 * t + 2).to(tl.pointer_type(tl.float32))
    eps = tl.load(ptrs + 6 * t + 3).to(tl.pointer_type(tl.float32))
    grad = tl.load(ptrs + 6 * t + 4).to(tl.pointer_type(GRAD))
    param = tl.load(ptrs + 6 * t + 5).to(tl.pointer_type(PARAM))
    offs = start + tl.arange(0, BLOCK_)
    e = tl.load(eps + offs, mask=offs < n, other=0.0)
    ivon._step_word(mean, hess, mom, grad, param, offs, n, e, tl.load(scalars + t), ess, ess_wd,
                    wd, a, c2, lr, clip, keep, share, write_param, PARAM)  # fmt: skip


def normals(n: int, key: Tensor, stream: int) -> Tensor:
    """The ``n`` float32 normals of ``stream`` under ``key`` (a sample at m = 0, h = 1)."""
    zeros, ones = torch.zeros(n, device=key.device), torch.ones(n, device=key.device)
    eps, theta = torch.empty_like(zeros), torch.empty_like(zeros)
    ptrs, info, owner = ivon._tables([[zeros, ones, theta, eps]], [stream], [0])
    _sample_kernel[(owner.numel(),)](ptrs, info, owner, key, 1.0, 0.0, THETA=tl.float32,
                                     **ivon._FLAGS)  # fmt: skip
    return eps


class StoredNoise:
    """Stands in for ``smoothlab._triton.ivon`` (same functions and arguments), keeping each
    stream's noise in a buffer from the sample to the record, as the kernels once did."""

    def __init__(self) -> None:
        self.noise: dict[int, Tensor] = {}

    def sample_(self, means: Sequence[Tensor], hess: Sequence[Tensor],
                samples: Sequence[Tensor], streams: Sequence[int], key: Tensor, *, ess: float,
                weight_decay: float) -> None:  # fmt: skip
        pairs = zip(streams, means, strict=True)
        noise = [self.noise.setdefault(s, torch.empty_like(m)) for s, m in pairs]
        rows = list(zip(means, hess, samples, noise, strict=True))
        ptrs, info, owner = ivon._tables(rows, streams, [0] * len(rows))
        theta = ivon._TYPES[samples[0].dtype]
        _sample_kernel[(owner.numel(),)](ptrs, info, owner, key, ess, ess * weight_decay,
                                         THETA=theta, **ivon._FLAGS)  # fmt: skip

    def record_(self, grads: Sequence[Tensor], hess: Sequence[Tensor],
                momentum: Sequence[Tensor], diff: Sequence[Tensor], first: Sequence[bool],
                streams: Sequence[int], key: Tensor, *, ess: float, weight_decay: float,
                beta1: float, share: float) -> None:  # fmt: skip
        noise = [self.noise[s] for s in streams]
        rows = list(zip(grads, noise, hess, momentum, diff, strict=True))
        ptrs, info, owner = ivon._tables(rows, streams, [int(f) for f in first])
        _record_kernel[(owner.numel(),)](
            ptrs, info, owner, ess, ess * weight_decay, beta1, (1.0 - beta1) * share,
            GRAD=ivon._TYPES[grads[0].dtype], **ivon._FLAGS,
        )  # fmt: skip

    def step_(self, means: Sequence[Tensor], hess: Sequence[Tensor],
              momentum: Sequence[Tensor], grads: Sequence[Tensor], params: Sequence[Tensor],
              debias: Sequence[float], streams: Sequence[int], key: Tensor, *, ess: float,
              weight_decay: float, beta1: float, beta2: float, lr: float,
              clip_radius: float) -> None:  # fmt: skip
        noise = [self.noise[s] for s in streams]
        rows = list(zip(means, hess, momentum, noise, grads, params, strict=True))
        ptrs, info, owner = ivon._tables(rows, streams, ivon._writes(params, means))
        table = torch.tensor(list(debias), dtype=torch.float32, device=means[0].device)
        a = 1.0 - beta2
        _step_kernel[(owner.numel(),)](
            ptrs, info, owner, table, ess, ess * weight_decay, weight_decay, a,
            0.5 * a * a * ess, lr, clip_radius, beta1, 1.0 - beta1,
            PARAM=ivon._TYPES[params[0].dtype], GRAD=ivon._TYPES[grads[0].dtype], **ivon._FLAGS,
        )  # fmt: skip

    update_ = staticmethod(ivon.update_)  # the update reads no noise
