r"""IVON's step as Triton kernels: sample, record and update, one launch per parameter chunk.

The same per-element maths as the C kernels (``smoothlab/_native/ivon.c``), with precision
:math:`P = \lambda (h + \delta)` (Shen et al., ICML 2024, Algorithm 1):

.. math::
    \text{sample}\quad & \theta = m + \epsilon / \sqrt P,\quad \epsilon = z \\
    \text{record}\quad & D \mathrel{(+)=} h - \hat g \epsilon \sqrt P, \quad
        g \leftarrow k g + s \hat g \ (k = \beta_1 \text{ on a step's first sample, else } 1) \\
    \text{update}\quad & d = (D + \text{missing}\ h) / S,\quad
        h \leftarrow h + d\,(c_2 d / P - a),\quad
        m \leftarrow m - \alpha\,\mathrm{clip}\big((b g + \delta m) / (h + \delta), r\big)

with :math:`a = 1 - \beta_2`, :math:`c_2 = a^2 \lambda / 2`, :math:`s = (1 - \beta_1)/S` and
the debiasing :math:`b = 1/(1 - \beta_1^t)`. State is float32; the sample :math:`\theta` (and,
for half-precision parameters, the parameter after the update) is rounded once to the
parameter's dtype.

**One launch per chunk.** A launch serves a list of parameter tensors of one dtype (a chunk of a
parameter group): an ``int64`` table holds each tensor's data pointers and sizes, and every
program handles ``BLOCK`` elements of one tensor, found through a per-program owner table, so
that a model of a hundred tensors costs three launches per step rather than three hundred. With
one sample per step (``S = 1``) record and update run as one kernel at ``step()`` (``step_``):
:math:`D` is never written.

**Bytes per float32 parameter.** The noise is never stored: the record (and ``step_``)
regenerates :math:`\epsilon` from the sample's key and stream, through the one function that the
sample drew it with, so it has the sampled bits. A step with one sample reads and writes 40 bytes
(sample: read :math:`m, h`, write :math:`\theta`; ``step_``: read :math:`m, h, g, \hat g`, write
:math:`m, h, g`), where storing :math:`\epsilon` cost 48; with :math:`S \ge 2` samples each
sample costs 12 + 24 (record; 20 on a step's first sample, which does not read :math:`D`) and the
update 24. Torch's fused AdamW moves 28.

**Noise.** The counter-based Philox4x32-10 generator (Salmon et al., SC 2011) in the layout of
the C kernel: element :math:`j` of stream :math:`s` (the parameter's position in the optimizer)
is word :math:`w = (j \bmod 256) / 64` of the block with counter
:math:`(\mathrm{lo}(b), \mathrm{hi}(b), s, 0)`, :math:`b = 64 \lfloor j / 256 \rfloor + j \bmod
64`, under the key :math:`(k_0, k_1)` that IVON draws from its ``torch.Generator`` per
``sampled_params`` call. The words are those of the C kernel bit for bit; uniforms
:math:`u = (x \gg 8)\, 2^{-24} + 2^{-25}` become normals by Box-Muller,
:math:`z_0 = \sqrt{-2\ln u_0}\cos(2\pi(u_1 - \tfrac12))`, :math:`z_1` with the sine. The
normals differ from the C kernel's in the last bits (its ``log``, ``sin`` and ``cos`` are
polynomials), so a run repeats and resumes bitwise on one backend and one device. The key stays
on the device (drawing it never waits for the GPU), where the dispatch keeps it until the record.

Reference: Y. Shen et al., "Variational Learning is Effective for Large Deep Networks", ICML
2024; J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as easy as
1, 2, 3", SC 2011; G. E. P. Box, M. E. Muller, 1958.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.language.random import philox_impl

__all__ = ["BLOCK", "record_", "sample_", "step_", "update_"]

#: Elements per program: four 256-element chunks of the noise layout (a multiple of 256).
BLOCK = 1024
_TYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}
BLOCK_: tl.constexpr = tl.constexpr(BLOCK)


@triton.jit
def _tile(info_ptr, owner_ptr):
    """This program's tensor ``t``, its ``info`` row ``(stream, flag, size, first program)`` read
    as ``(stream, flag, size)``, and the program's first element."""
    t = tl.load(owner_ptr + tl.program_id(0)).to(tl.int64)
    stream = tl.load(info_ptr + 4 * t)
    flag = tl.load(info_ptr + 4 * t + 1)
    n = tl.load(info_ptr + 4 * t + 2)
    start = (tl.program_id(0) - tl.load(info_ptr + 4 * t + 3)) * BLOCK_
    return t, stream, flag, n, start


@triton.jit
def _unit(x):
    """The uniform ``(x >> 8) 2^-24 + 2^-25`` in (0, 1) of a uint32 word."""
    return (x >> 8).to(tl.int32).to(tl.float32) * 5.9604644775390625e-08 + 2.98023223876953125e-08


@triton.jit
def _normals(key_ptr, stream, start):
    """The four ``(BLOCK / 256, 64)`` normals ``z_w`` of the chunks from element ``start``, and
    their element offsets ``chunk * 256 + w * 64 + lane`` for ``w = 0``. The sample and the
    record call this one function, so a regenerated normal has the bits of the sampled one."""
    k0 = tl.load(key_ptr).to(tl.uint32)
    k1 = tl.load(key_ptr + 1).to(tl.uint32)
    chunk = start // 256 + tl.arange(0, BLOCK_ // 256)[:, None]
    block = chunk * 64 + tl.arange(0, 64)[None, :]  # int64 counters
    c0 = block.to(tl.uint32)
    c1 = (block >> 32).to(tl.uint32)
    c2 = c0 * 0 + stream.to(tl.uint32)
    x0, x1, x2, x3 = philox_impl(c0, c1, c2, c0 * 0, k0, k1)
    ra = tl.sqrt(-2.0 * tl.log(_unit(x0)))
    rb = tl.sqrt(-2.0 * tl.log(_unit(x2)))
    ta = 6.283185307179586 * (_unit(x1) - 0.5)
    tb = 6.283185307179586 * (_unit(x3) - 0.5)
    offs = chunk * 256 + tl.arange(0, 64)[None, :]
    return ra * tl.cos(ta), ra * tl.sin(ta), rb * tl.cos(tb), rb * tl.sin(tb), offs


@triton.jit
def _rounded(x, DTYPE: tl.constexpr):
    """``x`` rounded to the nearest ``DTYPE`` value, ties to even. bfloat16 is rounded with
    integer arithmetic: Triton's interpreter truncates a plain ``.to(tl.bfloat16)``, and the
    tests compare the interpreter's bits with PyTorch's."""
    if DTYPE == tl.bfloat16:  # noqa: SIM300 (a constexpr compared to a dtype)
        bits = x.to(tl.uint32, bitcast=True)
        bits = bits + ((bits >> 16) & 1) + 0x7FFF
        y = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        return tl.where(x != x, x.to(tl.bfloat16), y)  # a NaN stays NaN
    else:
        return x.to(DTYPE)


@triton.jit
def _sample_word(mean, hess, theta, offs, n, z, ess, ess_wd, THETA: tl.constexpr):
    """Store the sample that one word's normals ``z`` give, at element offsets ``offs``."""
    mask = offs < n
    m = tl.load(mean + offs, mask=mask, other=0.0)
    h = tl.load(hess + offs, mask=mask, other=1.0)
    tl.store(theta + offs, _rounded(m + z / tl.sqrt(ess * h + ess_wd), THETA), mask=mask)


@triton.jit
def _sample_kernel(
    ptrs, info, owner, key_ptr, ess, ess_wd,
    THETA: tl.constexpr,
):  # fmt: skip
    """``theta = m + z / sqrt(P)``; ``ptrs`` rows: mean, hess, theta. The noise is not stored."""
    t, stream, _, n, start = _tile(info, owner)
    mean = tl.load(ptrs + 3 * t).to(tl.pointer_type(tl.float32))
    hess = tl.load(ptrs + 3 * t + 1).to(tl.pointer_type(tl.float32))
    theta = tl.load(ptrs + 3 * t + 2).to(tl.pointer_type(THETA))
    z0, z1, z2, z3, offs = _normals(key_ptr, stream, start)
    _sample_word(mean, hess, theta, offs, n, z0, ess, ess_wd, THETA)
    _sample_word(mean, hess, theta, offs + 64, n, z1, ess, ess_wd, THETA)
    _sample_word(mean, hess, theta, offs + 128, n, z2, ess, ess_wd, THETA)
    _sample_word(mean, hess, theta, offs + 192, n, z3, ess, ess_wd, THETA)


@triton.jit
def _record_word(grad, hess, mom, diff, offs, n, e, first, ess, ess_wd, keep, share):
    """Record one word's elements, whose regenerated noise is ``e``."""
    mask = offs < n
    g = tl.load(grad + offs, mask=mask, other=0.0).to(tl.float32)
    h = tl.load(hess + offs, mask=mask, other=1.0)
    later = mask & (offs * 0 + first == 0)  # a first sample assigns D: no read
    old = tl.load(diff + offs, mask=later, other=0.0)
    tl.store(diff + offs, old + (h - g * e * tl.sqrt(ess * h + ess_wd)), mask=mask)
    k = tl.where(first != 0, keep, 1.0)
    tl.store(mom + offs, k * tl.load(mom + offs, mask=mask, other=0.0) + share * g, mask=mask)


@triton.jit
def _record_kernel(
    ptrs, info, owner, key_ptr, ess, ess_wd, keep, share,
    GRAD: tl.constexpr,
):  # fmt: skip
    """``D (+)= h - g eps sqrt(P)``, ``mom = k mom + s g``, ``eps`` regenerated from the
    sample's key; ``ptrs`` rows: grad, hess, momentum, diff; ``info`` flag: first sample of the
    step?"""
    t, stream, first, n, start = _tile(info, owner)
    grad = tl.load(ptrs + 4 * t).to(tl.pointer_type(GRAD))
    hess = tl.load(ptrs + 4 * t + 1).to(tl.pointer_type(tl.float32))
    mom = tl.load(ptrs + 4 * t + 2).to(tl.pointer_type(tl.float32))
    diff = tl.load(ptrs + 4 * t + 3).to(tl.pointer_type(tl.float32))
    z0, z1, z2, z3, offs = _normals(key_ptr, stream, start)
    _record_word(grad, hess, mom, diff, offs, n, z0, first, ess, ess_wd, keep, share)
    _record_word(grad, hess, mom, diff, offs + 64, n, z1, first, ess, ess_wd, keep, share)
    _record_word(grad, hess, mom, diff, offs + 128, n, z2, first, ess, ess_wd, keep, share)
    _record_word(grad, hess, mom, diff, offs + 192, n, z3, first, ess, ess_wd, keep, share)


@triton.jit
def _move(mean, hess, param, offs, mask, m, h, d, mo, debias, ess, ess_wd, wd, a, c2, lr, clip,
          write_param, PARAM: tl.constexpr):  # fmt: skip
    """From ``d = h - h_hat``: the Hessian update, then the clipped mean step, stored."""
    hn = h + d * (c2 * d / (ess * h + ess_wd) - a)
    u = (debias * mo + wd * m) / (hn + wd)
    u = tl.where(u > clip, clip, u)  # comparisons, as the C kernel: a NaN stays NaN
    u = tl.where(u < -clip, -clip, u)
    m = m - lr * u
    tl.store(hess + offs, hn, mask=mask)
    tl.store(mean + offs, m, mask=mask)
    if write_param != 0:  # a half-precision parameter holds the rounded mean
        tl.store(param + offs, _rounded(m, PARAM), mask=mask)


@triton.jit
def _update_kernel(
    ptrs, info, owner, scalars, ess, ess_wd, wd, a, c2, samples, lr, clip,
    PARAM: tl.constexpr,
):  # fmt: skip
    """The update from the recorded ``D``; ``ptrs`` rows: mean, hess, momentum, diff, parameter
    (written when it is not the mean: the ``info`` flag); ``scalars`` rows: debias, missing."""
    t, _, write_param, n, start = _tile(info, owner)
    mean = tl.load(ptrs + 5 * t).to(tl.pointer_type(tl.float32))
    hess = tl.load(ptrs + 5 * t + 1).to(tl.pointer_type(tl.float32))
    mom = tl.load(ptrs + 5 * t + 2).to(tl.pointer_type(tl.float32))
    diff = tl.load(ptrs + 5 * t + 3).to(tl.pointer_type(tl.float32))
    param = tl.load(ptrs + 5 * t + 4).to(tl.pointer_type(PARAM))
    debias = tl.load(scalars + 2 * t)
    missing = tl.load(scalars + 2 * t + 1)
    offs = start + tl.arange(0, BLOCK_)
    mask = offs < n
    m = tl.load(mean + offs, mask=mask, other=0.0)
    h = tl.load(hess + offs, mask=mask, other=1.0)
    d = (tl.load(diff + offs, mask=mask, other=0.0) + missing * h) / samples
    mo = tl.load(mom + offs, mask=mask, other=0.0)
    _move(mean, hess, param, offs, mask, m, h, d, mo, debias, ess, ess_wd, wd, a, c2, lr, clip,
          write_param, PARAM)  # fmt: skip


@triton.jit
def _step_word(mean, hess, mom, grad, param, offs, n, e, debias, ess, ess_wd, wd, a, c2, lr, clip,
               keep, share, write_param, PARAM: tl.constexpr):  # fmt: skip
    """Record and update one word's elements, whose regenerated noise is ``e``."""
    mask = offs < n
    g = tl.load(grad + offs, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(mean + offs, mask=mask, other=0.0)
    h = tl.load(hess + offs, mask=mask, other=1.0)
    d = h - g * e * tl.sqrt(ess * h + ess_wd)
    mo = keep * tl.load(mom + offs, mask=mask, other=0.0) + share * g
    tl.store(mom + offs, mo, mask=mask)
    _move(mean, hess, param, offs, mask, m, h, d, mo, debias, ess, ess_wd, wd, a, c2, lr, clip,
          write_param, PARAM)  # fmt: skip


@triton.jit
def _step_kernel(
    ptrs, info, owner, scalars, key_ptr, ess, ess_wd, wd, a, c2, lr, clip, keep, share,
    PARAM: tl.constexpr, GRAD: tl.constexpr,
):  # fmt: skip
    """Record and update in one pass, for one sample per step (``D = h - h_hat``, the momentum
    ``keep g + share g_hat``), the noise regenerated from the sample's key; ``ptrs`` rows: mean,
    hess, momentum, gradient, parameter; ``scalars`` rows: debias."""
    t, stream, write_param, n, start = _tile(info, owner)
    mean = tl.load(ptrs + 5 * t).to(tl.pointer_type(tl.float32))
    hess = tl.load(ptrs + 5 * t + 1).to(tl.pointer_type(tl.float32))
    mom = tl.load(ptrs + 5 * t + 2).to(tl.pointer_type(tl.float32))
    grad = tl.load(ptrs + 5 * t + 3).to(tl.pointer_type(GRAD))
    param = tl.load(ptrs + 5 * t + 4).to(tl.pointer_type(PARAM))
    debias = tl.load(scalars + t)
    z0, z1, z2, z3, offs = _normals(key_ptr, stream, start)
    _step_word(mean, hess, mom, grad, param, offs, n, z0, debias, ess, ess_wd, wd, a, c2, lr,
               clip, keep, share, write_param, PARAM)  # fmt: skip
    _step_word(mean, hess, mom, grad, param, offs + 64, n, z1, debias, ess, ess_wd, wd, a, c2,
               lr, clip, keep, share, write_param, PARAM)  # fmt: skip
    _step_word(mean, hess, mom, grad, param, offs + 128, n, z2, debias, ess, ess_wd, wd, a, c2,
               lr, clip, keep, share, write_param, PARAM)  # fmt: skip
    _step_word(mean, hess, mom, grad, param, offs + 192, n, z3, debias, ess, ess_wd, wd, a, c2,
               lr, clip, keep, share, write_param, PARAM)  # fmt: skip


@functools.lru_cache(maxsize=64)
def _owners(sizes: tuple[int, ...], device: torch.device) -> tuple[Tensor, tuple[int, ...]]:
    """The owner of each program (``int64``) and each tensor's first program, for ``sizes``."""
    tiles = [triton.cdiv(n, BLOCK) for n in sizes]
    firsts = (0, *itertools.accumulate(tiles[:-1]))
    owner = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(tiles))
    return owner.to(device), firsts


@functools.lru_cache(maxsize=256)
def _table(values: tuple[int, ...], device: torch.device) -> Tensor:
    """``values`` as an int64 tensor on ``device``. Cached: a training loop's tables repeat step
    after step (the caching allocator gives the gradients the same addresses), so most launches
    reuse a table already on the device rather than copying a new one."""
    return torch.tensor(values, dtype=torch.int64, device=device)


def _tables(
    pointers: Sequence[Sequence[Tensor]], streams: Sequence[int], flags: Sequence[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """``(ptrs, info, owner)`` for tensors whose first column gives the sizes: ``info`` rows are
    ``(streams[t], flags[t], size, first program)``."""
    device = pointers[0][0].device
    sizes = tuple(row[0].numel() for row in pointers)
    owner, firsts = _owners(sizes, device)
    ptrs = tuple(t.data_ptr() for row in pointers for t in row)
    rows = zip(streams, flags, sizes, firsts, strict=True)
    return _table(ptrs, device), _table(tuple(v for row in rows for v in row), device), owner


def _writes(params: Sequence[Tensor], means: Sequence[Tensor]) -> list[int]:
    """1 for a parameter that is not its mean's storage (half precision: written rounded)."""
    return [int(p.data_ptr() != m.data_ptr()) for p, m in zip(params, means, strict=True)]


_FLAGS = {"num_warps": 4, "enable_fp_fusion": True}


def sample_(
    means: Sequence[Tensor],
    hess: Sequence[Tensor],
    samples: Sequence[Tensor],
    streams: Sequence[int],
    key: Tensor,
    *,
    ess: float,
    weight_decay: float,
) -> None:
    r"""Draw :math:`\theta = m + \epsilon / \sqrt P` into ``samples`` (one dtype, float32 or
    half) for every tensor, in one launch; :math:`\epsilon` is not stored (:func:`record_` and
    :func:`step_` regenerate it from ``key`` and ``streams``).

    ``key``: two int64 words in ``[0, 2^32)`` on the tensors' device; ``streams``: each tensor's
    noise stream. All tensors contiguous, float32 but ``samples``.
    """
    ptrs, info, owner = _tables(
        list(zip(means, hess, samples, strict=True)), streams, [0] * len(streams)
    )
    theta = _TYPES[samples[0].dtype]
    _sample_kernel[(owner.numel(),)](
        ptrs, info, owner, key, ess, ess * weight_decay, THETA=theta, **_FLAGS
    )


def record_(
    grads: Sequence[Tensor],
    hess: Sequence[Tensor],
    momentum: Sequence[Tensor],
    diff: Sequence[Tensor],
    first: Sequence[bool],
    streams: Sequence[int],
    key: Tensor,
    *,
    ess: float,
    weight_decay: float,
    beta1: float,
    share: float,
) -> None:
    r"""Record one sample for every tensor, one launch: :math:`D \mathrel{(+)=} h - \hat g
    \epsilon \sqrt P`, momentum :math:`\leftarrow k g + (1 - \beta_1) s \hat g` (a tensor whose
    ``first`` is true starts the step: :math:`D` assigned, :math:`k = \beta_1`; else
    :math:`k = 1`), with :math:`\epsilon` regenerated from the ``key`` and ``streams`` that
    :func:`sample_` drew it with. ``grads``: one dtype, contiguous."""
    rows = list(zip(grads, hess, momentum, diff, strict=True))
    ptrs, info, owner = _tables(rows, streams, [int(f) for f in first])
    grad = _TYPES[grads[0].dtype]
    _record_kernel[(owner.numel(),)](
        ptrs, info, owner, key, ess, ess * weight_decay, beta1, (1.0 - beta1) * share,
        GRAD=grad, **_FLAGS,
    )  # fmt: skip


def step_(
    means: Sequence[Tensor],
    hess: Sequence[Tensor],
    momentum: Sequence[Tensor],
    grads: Sequence[Tensor],
    params: Sequence[Tensor],
    debias: Sequence[float],
    streams: Sequence[int],
    key: Tensor,
    *,
    ess: float,
    weight_decay: float,
    beta1: float,
    beta2: float,
    lr: float,
    clip_radius: float,
) -> None:
    r"""Record the one sample of a step and update, one launch and one pass (:func:`record_`
    then :func:`update_` with ``samples=1``, without writing :math:`D`), :math:`\epsilon`
    regenerated from ``key`` and ``streams``. ``grads``: one dtype, contiguous."""
    rows = list(zip(means, hess, momentum, grads, params, strict=True))
    ptrs, info, owner = _tables(rows, streams, _writes(params, means))
    table = torch.tensor(list(debias), dtype=torch.float32, device=means[0].device)
    a = 1.0 - beta2
    _step_kernel[(owner.numel(),)](
        ptrs, info, owner, table, key, ess, ess * weight_decay, weight_decay, a,
        0.5 * a * a * ess, lr, clip_radius, beta1, 1.0 - beta1, PARAM=_TYPES[params[0].dtype],
        GRAD=_TYPES[grads[0].dtype], **_FLAGS,
    )  # fmt: skip


def update_(
    means: Sequence[Tensor],
    hess: Sequence[Tensor],
    momentum: Sequence[Tensor],
    diff: Sequence[Tensor],
    params: Sequence[Tensor],
    debias: Sequence[float],
    missing: Sequence[int],
    *,
    ess: float,
    weight_decay: float,
    beta2: float,
    lr: float,
    clip_radius: float,
    samples: int,
) -> None:
    r"""One posterior update of every tensor, one launch (the module docstring's lines).

    ``params``: the parameters (one dtype); a parameter that is not its mean's storage (half
    precision) receives the rounded mean. ``debias`` and ``missing`` are per tensor.
    """
    rows = list(zip(means, hess, momentum, diff, params, strict=True))
    ptrs, info, owner = _tables(rows, [0] * len(rows), _writes(params, means))
    scalars = [v for pair in zip(debias, missing, strict=True) for v in pair]
    table = torch.tensor(scalars, dtype=torch.float32, device=means[0].device)
    a = 1.0 - beta2
    _update_kernel[(owner.numel(),)](
        ptrs, info, owner, table, ess, ess * weight_decay, weight_decay, a, 0.5 * a * a * ess,
        float(samples), lr, clip_radius, PARAM=_TYPES[params[0].dtype], **_FLAGS,
    )  # fmt: skip
