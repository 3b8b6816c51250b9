r"""A linear head whose logits never reach memory: smoothing cross-entropy of ``z = W h + b``.

For the targets ``q = a e_y + b pi`` of uniform and class-prior smoothing (``a = 1 - r``,
``b = r``, ``pi`` a class distribution or ``1/V``; plain cross-entropy is ``r = 0``, negative
smoothing ``r < 0``) the loss of a row needs three numbers of its logits only,

.. math::
    \ell = (a + b)\,\mathrm{lse}(z) - a\, z_y - b\, D, \qquad D = \pi \cdot z
    = h \cdot (\pi^\top W) + \pi \cdot b,

and its gradient is :math:`\partial \ell / \partial z_j = (a + b)\, p_j - a [j = y] - b \pi_j`
with :math:`p = \mathrm{softmax}(z)`. So a blockwise matmul with an online log-sum-exp computes
the loss (Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", ICLR 2025):

- forward: each program takes ``BM`` rows and one slice of the vocabulary, forms ``BM x BN``
  logit tiles in registers (fp32 accumulation over ``BK``-wide slices of ``h`` and ``W``) and
  keeps the running max, the rescaled exponential sum, ``D`` and ``z_y``; the slices' partial
  statistics are combined afterwards (``(4, slices, N)`` floats: no ``N x V`` buffer);
- backward: each program recomputes one ``BM x BN`` tile, forms ``g (dl/dz)`` in fp32 (the
  true-class entry ``p_y - a`` is never formed in half precision), and adds ``dz W`` into
  ``dh``, ``dz^T h`` into ``dW`` and the column sums into ``db`` with fp32 atomics.

Peak extra memory is the fp32 gradient accumulators (``dh``, ``dW``, ``db``; cast to the inputs'
dtypes at the end) and the per-row statistics. The atomics make ``dh``, ``dW`` and ``db``
independent of nothing but the order of fp32 additions: equal to float rounding, not bitwise,
from run to run. ``ignore_index`` rows add nothing; reductions as PyTorch (``mean`` over the
rows not ignored).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from smoothlab._checks import fail

__all__ = ["BLOCK_K", "BLOCK_M", "BLOCK_N", "SLICES", "linear_smoothing_cross_entropy"]

#: Tile sizes (rows, vocabulary, hidden): Triton's dot needs 16 or more; not yet tuned on a GPU.
BLOCK_M, BLOCK_N, BLOCK_K = 64, 128, 64
#: Vocabulary slices of the forward pass, so that few rows still fill the GPU.
SLICES = 16
_TYPES = (torch.float32, torch.bfloat16, torch.float16)


@triton.jit
def _dot(x, y, acc, DOT: tl.constexpr, UPCAST: tl.constexpr):
    """``acc + x y`` in fp32. ``UPCAST`` (the interpreter only, which multiplies half-precision
    tiles as raw integers) multiplies in fp32: exact, as a product of two half values fits."""
    if UPCAST:
        return tl.dot(x.to(tl.float32), y.to(tl.float32), acc, input_precision="ieee")
    else:
        return tl.dot(x, y, acc, input_precision=DOT)


@triton.jit
def _logit_tile(
    h_ptr, w_ptr, rows, cols, N, V, H, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
    DOT: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    """``h[rows] W[cols]^T`` as a ``(BM, BN)`` fp32 tile (0 outside the matrices)."""
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, H, BK):
        ks = k0 + tl.arange(0, BK)
        hk = tl.load(h_ptr + rows[:, None] * H + ks[None, :],
                     mask=(rows[:, None] < N) & (ks[None, :] < H), other=0.0)  # fmt: skip
        wk = tl.load(w_ptr + cols[None, :] * H + ks[:, None],
                     mask=(cols[None, :] < V) & (ks[:, None] < H), other=0.0)  # fmt: skip
        acc = _dot(hk, wk, acc, DOT, UPCAST)
    return acc


@triton.jit
def _forward_kernel(
    h_ptr, w_ptr, b_ptr, y_ptr, pi_ptr, stats_ptr, N, V, H, per_slice,
    HAS_BIAS: tl.constexpr, HAS_PI: tl.constexpr, DOT: tl.constexpr, UPCAST: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """Partial ``(max, sum exp(z - max), D, z_y)`` of ``BM`` rows over one vocabulary slice."""
    rows = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)  # V H may pass 2^31
    piece = tl.program_id(1)
    y = tl.load(y_ptr + rows, mask=rows < N, other=-1)
    m = tl.full((BM,), -float("inf"), tl.float32)
    s = tl.zeros((BM,), tl.float32)
    d = tl.zeros((BM,), tl.float32)
    zy = tl.zeros((BM,), tl.float32)
    lo = piece * per_slice
    hi = tl.minimum(lo + per_slice, V)
    for v0 in range(lo, hi, BN):
        cols = (v0 + tl.arange(0, BN)).to(tl.int64)
        ok = cols < hi
        z = _logit_tile(h_ptr, w_ptr, rows, cols, N, V, H, BM, BN, BK, DOT, UPCAST)
        if HAS_BIAS:
            z += tl.load(b_ptr + cols, mask=ok, other=0.0).to(tl.float32)[None, :]
        if HAS_PI:
            pi = tl.load(pi_ptr + cols, mask=ok, other=0.0)
            d += tl.sum(tl.where(pi[None, :] != 0.0, pi[None, :] * z, 0.0), 1)
        else:  # uniform pi = 1 / V
            d += tl.sum(tl.where(ok[None, :], z, 0.0), 1) / V
        zy += tl.sum(tl.where(cols[None, :] == y[:, None], z, 0.0), 1)
        z = tl.where(ok[None, :], z, -float("inf"))
        m_new = tl.maximum(m, tl.max(z, 1))
        base = tl.where(m_new == -float("inf"), 0.0, m_new)  # all -inf so far: no NaN
        s = s * tl.exp(m - base) + tl.sum(tl.exp(z - base[:, None]), 1)
        m = m_new
    out = stats_ptr + piece * N + rows
    step = tl.num_programs(1) * N
    tl.store(out, m, mask=rows < N)
    tl.store(out + step, s, mask=rows < N)
    tl.store(out + 2 * step, d, mask=rows < N)
    tl.store(out + 3 * step, zy, mask=rows < N)


@triton.jit
def _backward_kernel(
    h_ptr, w_ptr, b_ptr, y_ptr, pi_ptr, lse_ptr, g_ptr, dh_ptr, dw_ptr, db_ptr,
    N, V, H, a, b, q,
    HAS_BIAS: tl.constexpr, HAS_PI: tl.constexpr, DOT: tl.constexpr, UPCAST: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """One ``(BM, BN)`` tile of ``dz = g (q p - a e_y - b pi)``, pushed into dh, dW and db."""
    rows = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)  # V H may pass 2^31
    cols = tl.program_id(1).to(tl.int64) * BN + tl.arange(0, BN)
    row_ok, col_ok = rows < N, cols < V
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
    if tl.max(tl.abs(g), 0) == 0.0:  # ignored or padding rows only: nothing to add
        return
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    z = _logit_tile(h_ptr, w_ptr, rows, cols, N, V, H, BM, BN, BK, DOT, UPCAST)
    if HAS_BIAS:
        z += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    dz = q * tl.exp(z - lse[:, None])
    if HAS_PI:
        dz -= b * tl.load(pi_ptr + cols, mask=col_ok, other=0.0)[None, :]
    else:
        dz -= b / V
    dz = tl.where(cols[None, :] == y[:, None], dz - a, dz)
    dz = tl.where(row_ok[:, None] & col_ok[None, :] & (g[:, None] != 0.0), g[:, None] * dz, 0.0)
    if HAS_BIAS:
        tl.atomic_add(db_ptr + cols, tl.sum(dz, 0), mask=col_ok)
    dzc = dz.to(h_ptr.dtype.element_ty)  # one rounding of the fp32 gradient, for the dots
    for k0 in range(0, H, BK):
        ks = k0 + tl.arange(0, BK)
        k_ok = ks < H
        wk = tl.load(w_ptr + cols[:, None] * H + ks[None, :],
                     mask=col_ok[:, None] & k_ok[None, :], other=0.0)  # fmt: skip
        tl.atomic_add(dh_ptr + rows[:, None] * H + ks[None, :],
                      _dot(dzc, wk, tl.zeros((BM, BK), tl.float32), DOT, UPCAST),
                      mask=row_ok[:, None] & k_ok[None, :])  # fmt: skip
        hk = tl.load(h_ptr + rows[:, None] * H + ks[None, :],
                     mask=row_ok[:, None] & k_ok[None, :], other=0.0)  # fmt: skip
        tl.atomic_add(dw_ptr + cols[:, None] * H + ks[None, :],
                      _dot(tl.trans(dzc), hk, tl.zeros((BN, BK), tl.float32), DOT, UPCAST),
                      mask=col_ok[:, None] & k_ok[None, :])  # fmt: skip


def _flags(h: Tensor) -> dict[str, Any]:
    # float32 inputs are multiplied in IEEE fp32, as F.linear (TF32 is off by default in torch)
    return {
        "DOT": "ieee" if h.dtype == torch.float32 else "tf32",
        "UPCAST": os.environ.get("TRITON_INTERPRET") == "1",
        "BM": BLOCK_M, "BN": BLOCK_N, "BK": BLOCK_K,
        "num_warps": 8 if BLOCK_M * BLOCK_N >= 8192 else 4, "enable_fp_fusion": True,
    }  # fmt: skip


def _statistics(
    h: Tensor, w: Tensor, bias: Tensor | None, y: Tensor, pi: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(lse, D, z_y)`` of every row, fp32 ``(N,)`` each, from the sliced forward kernel."""
    (n, hidden), vocab = h.shape, w.shape[0]
    slices = max(1, min(SLICES, triton.cdiv(vocab, BLOCK_N)))
    per_slice = triton.cdiv(triton.cdiv(vocab, slices), BLOCK_N) * BLOCK_N
    slices = triton.cdiv(vocab, per_slice)
    stats = torch.empty(4, slices, n, dtype=torch.float32, device=h.device)
    if n == 0:  # no rows: no launch of an empty grid
        return stats[0, 0], stats[0, 0], stats[0, 0]
    _forward_kernel[(triton.cdiv(n, BLOCK_M), slices)](
        h, w, h if bias is None else bias, y, h if pi is None else pi, stats,
        n, vocab, hidden, per_slice, HAS_BIAS=bias is not None, HAS_PI=pi is not None,
        **_flags(h),
    )  # fmt: skip
    m, s, d, zy = stats.unbind(0)
    top = m.amax(0)
    base = torch.where(top == -torch.inf, 0.0, top)
    lse = top + torch.log((s * torch.exp(m - base)).sum(0))
    return lse, d.sum(0), zy.sum(0)


class _LinearSmoothingCE(torch.autograd.Function):
    """Per-row losses ``(a + b) lse - a z_y - b D`` (0 on ignored rows) and their gradients."""

    @staticmethod
    def forward(
        ctx: Any, h: Tensor, w: Tensor, bias: Tensor | None, y: Tensor, pi: Tensor | None,
        valid: Tensor, a: float, b: float,
    ) -> Tensor:  # fmt: skip
        lse, d, zy = _statistics(h, w, bias, y, pi)
        ctx.save_for_backward(h, w, bias, y, pi, lse, valid)
        ctx.coefficients = (a, b)
        loss = (a + b) * lse - a * zy - b * d
        return torch.where(valid, loss, 0.0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        h, w, bias, y, pi, lse, valid = ctx.saved_tensors
        a, b = ctx.coefficients
        g = torch.where(valid, grad.to(torch.float32), 0.0).contiguous()
        dh = torch.zeros(h.shape, dtype=torch.float32, device=h.device)
        dw = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
        db = torch.zeros(w.shape[0], dtype=torch.float32, device=w.device)
        grid = (triton.cdiv(h.shape[0], BLOCK_M), triton.cdiv(w.shape[0], BLOCK_N))
        if h.shape[0]:  # no rows: zero gradients, and no launch of an empty grid
            _backward_kernel[grid](
                h, w, h if bias is None else bias, y, h if pi is None else pi, lse, g, dh, dw,
                db, h.shape[0], w.shape[0], h.shape[1], a, b, a + b,
                HAS_BIAS=bias is not None, HAS_PI=pi is not None, **_flags(h),
            )  # fmt: skip
        dbias = None if bias is None else db.to(bias.dtype)
        return dh.to(h.dtype), dw.to(w.dtype), dbias, None, None, None, None, None


def _check(h: Tensor, w: Tensor, bias: Tensor | None, y: Tensor, prior: Tensor | None) -> None:
    """The kernel's assumptions, in the house error template."""
    if h.dim() != 2 or h.dtype not in _TYPES:
        raise fail("hidden", "a 2-D float32, bfloat16 or float16 tensor", h)
    if w.dim() != 2 or w.shape[1] != h.shape[1] or w.dtype != h.dtype:
        raise fail("weight", f"(V, {h.shape[1]}) of dtype {h.dtype}", w)
    if bias is not None and (bias.shape != w.shape[:1] or bias.dtype != h.dtype):
        raise fail("bias", f"({w.shape[0]},) of dtype {h.dtype}", bias)
    if y.shape != h.shape[:1] or y.dtype != torch.int64:
        raise fail("target", f"({h.shape[0]},) int64 class indices", y)
    if prior is not None and prior.shape != w.shape[:1]:
        raise fail("prior", f"a class distribution of shape ({w.shape[0]},)", prior)


def linear_smoothing_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    smoothing: float = 0.0,
    prior: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy of ``F.linear(hidden, weight, bias)`` against ``(1 - r) e_y + r pi``,
    logits never in memory (the module docstring's kernels; CUDA tensors, or CPU ones in the
    interpreter).

    Shape: ``hidden (N, H)``, ``weight (V, H)``, ``bias (V,)``, ``target (N,)`` int64,
    ``prior (V,)`` (uniform when ``None``); the loss is ``(N,)`` float32 for ``"none"``, else a
    float32 scalar. ``r`` may be negative; rows whose target is ``ignore_index`` add nothing and
    ``"mean"`` divides by the rows that remain (NaN when none does, as PyTorch).
    """
    _check(hidden, weight, bias, target, prior)
    if reduction not in ("mean", "sum", "none"):
        raise fail("reduction", "'mean', 'sum' or 'none'", reduction)
    valid = target != ignore_index
    pi = None if prior is None else prior.to(device=hidden.device, dtype=torch.float32)
    losses: Tensor = _LinearSmoothingCE.apply(  # type: ignore[no-untyped-call]
        hidden.contiguous(), weight.contiguous(), None if bias is None else bias.contiguous(),
        target.contiguous(), None if pi is None else pi.contiguous(), valid,
        1.0 - smoothing, smoothing,
    )  # fmt: skip
    if reduction == "none":
        return losses
    total: Tensor = losses.sum()
    return total if reduction == "sum" else total / valid.sum()
