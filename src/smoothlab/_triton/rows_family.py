"""The Triton row kernel of the logit regularisers: cross-entropy plus a function of the logits.

The kinds ``LPEN`` (logit penalty), ``MAXSUP`` (max suppression), ``MBLS`` (margin-based label
smoothing) and ``LOGITNORM`` of the C kernels, in the notation of their header
(``smoothlab/_native/losses_kinds.h``, which defines every coefficient): per row, with weight
``w``, ``e_j = exp(k (z_j - m))`` (``k = 1`` but for LogitNorm) and ``S = sum_j e_j``,

    g_j = ce e_j + cz z_j - cb + cm [z_j = m] - cact [(m - z_j) - margin > 0],   g_y -= ca.

One program per position, three passes over the row: ``m``, ``sum z^2`` and ``sum z``; then
``S``, ``sum e_j z_j``, the tied maxima and MbLS's active gaps; then the gradient (into the
logits' own buffer when asked, as :mod:`smoothlab._triton.rows`, whose ``run_rows`` sends these
kinds here). Half-precision logits are read as fp32 and everything is computed in fp32.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from smoothlab._triton import rows

__all__ = ["KINDS", "LOGITNORM", "LPEN", "MAXSUP", "MBLS", "run_logit_rows"]

LPEN, MAXSUP, MBLS, LOGITNORM = 6, 7, 8, 9
KINDS = (LPEN, MAXSUP, MBLS, LOGITNORM)


@triton.jit
def _first_pass(z_ptr, z_col, C, BLOCK: tl.constexpr):
    """``(m, sum z^2, sum z)`` of one row."""
    m = -float("inf")
    zz = 0.0
    zsum = 0.0
    for c0 in range(0, C, BLOCK):
        offs = c0 + tl.arange(0, BLOCK)
        mask = offs < C
        z = tl.load(z_ptr + offs * z_col, mask=mask, other=0.0).to(tl.float32)
        m = tl.maximum(m, tl.max(tl.where(mask, z, -float("inf")), 0))
        zz += tl.sum(z * z, 0)
        zsum += tl.sum(z, 0)
    return m, zz, zsum


@triton.jit
def _second_pass(z_ptr, z_col, C, m, k, margin, BLOCK: tl.constexpr):
    """``(S, sum e_j z_j, #{z_j = m}, #{gap_j > margin}, sum relu(gap_j - margin))``."""
    s = 0.0
    ez = 0.0
    cnt = 0.0
    act = 0.0
    hinge = 0.0
    for c0 in range(0, C, BLOCK):
        offs = c0 + tl.arange(0, BLOCK)
        mask = offs < C
        z = tl.load(z_ptr + offs * z_col, mask=mask, other=0.0).to(tl.float32)
        e = tl.where(mask, tl.exp(k * (z - m)), 0.0)
        gap = (m - z) - margin
        on = mask & (gap > 0.0)
        s += tl.sum(e, 0)
        ez += tl.sum(e * z, 0)
        cnt += tl.sum(tl.where(mask & (z == m), 1.0, 0.0), 0)
        act += tl.sum(tl.where(on, 1.0, 0.0), 0)
        hinge += tl.sum(tl.where(on, gap, 0.0), 0)
    return s, ez, cnt, act, hinge


@triton.jit
def _logit_kernel(
    z_ptr, g_ptr, y_ptr, valid_ptr, loss_ptr, w_ptr,
    z_row, z_col, z_sp, g_row, g_col, g_sp, S, C, w0, strength, param, scale,
    KIND: tl.constexpr, HAS_VALID: tl.constexpr, HAS_W: tl.constexpr, GRAD: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    """One position: its statistics, the kind's coefficients, the loss, then the gradient."""
    row = tl.program_id(0).to(tl.int64)
    n = row // S
    sp = row - n * S
    z_ptr += n * z_row + sp * z_sp
    g_ptr += n * g_row + sp * g_sp
    w = tl.load(w_ptr + row) if HAS_W else w0
    margin = 0.0
    if KIND == 8:
        margin = param
    m, zz, zsum = _first_pass(z_ptr, z_col, C, BLOCK)
    norm = tl.sqrt(zz)
    k = 1.0
    if KIND == 9:
        k = 1.0 / (strength * (norm + param))
    s, ez, cnt, act, hinge = _second_pass(z_ptr, z_col, C, m, k, margin, BLOCK)
    y = tl.load(y_ptr + row)
    zy = tl.load(z_ptr + y * z_col).to(tl.float32)
    sw = scale * w
    extra = 0.0
    cz = 0.0
    cb = 0.0
    cm = 0.0
    cact = 0.0
    if KIND == 6:
        extra = 0.5 * strength * zz
        cz = sw * strength
    elif KIND == 7:
        extra = strength * (m - zsum / C)
        cb = sw * strength / C
        cm = sw * strength / cnt
    elif KIND == 8:
        extra = strength * hinge
        cm = sw * strength * act / cnt
        cact = sw * strength
    else:
        dot = ez / s - zy
        cz = tl.where(norm > 0.0, -sw * k * dot / (norm * (norm + param)), 0.0)
    loss = tl.where(w != 0.0, w * (k * m + tl.log(s) - k * zy + extra), 0.0)
    if HAS_VALID:
        loss = tl.where(tl.load(valid_ptr + row) != 0, loss, 0.0)
    tl.store(loss_ptr + row, loss)
    if GRAD:
        live = w != 0.0  # a row of weight 0 (ignored) gets exactly 0
        ce = tl.where(live, sw * k / s, 0.0)
        ca = tl.where(live, sw * k, 0.0)
        for c0 in range(0, C, BLOCK):
            offs = c0 + tl.arange(0, BLOCK)
            mask = offs < C
            z = tl.load(z_ptr + offs * z_col, mask=mask, other=0.0).to(tl.float32)
            g = ce * tl.exp(k * (z - m)) + cz * z - cb
            g += tl.where(z == m, cm, 0.0)
            g -= tl.where((m - z) - margin > 0.0, cact, 0.0)
            g = tl.where(live, tl.where(offs == y, g - ca, g), 0.0)
            tl.store(g_ptr + offs * g_col, g.to(g_ptr.dtype.element_ty), mask=mask)


def run_logit_rows(
    spec: rows.RowSpec,
    z: Tensor,
    g: Tensor | None,
    y: Tensor,
    valid: Tensor | None,
    scale: float | None,
    *,
    start: int = 0,
) -> Tensor:
    """:func:`smoothlab._triton.rows.run_rows` for the kinds here (class indices only; no
    z-loss or softcap)."""
    z = z.view(*z.shape[:2], math.prod(z.shape[2:]))
    examples, classes, inner = (int(size) for size in z.shape)
    positions = examples * inner
    loss = torch.empty(positions, dtype=torch.float32, device=z.device)
    if positions == 0:
        return loss
    grad = scale is not None and g is not None
    out = g.view(z.shape) if grad and g is not None else z
    w, w0, has_w = rows.per_row(spec.a, loss, start * inner)
    block = min(triton.next_power_of_2(classes), rows.MAX_BLOCK)
    flags: dict[str, Any] = {
        "KIND": spec.kind, "HAS_VALID": valid is not None, "HAS_W": has_w, "GRAD": grad,
        "BLOCK": block, "num_warps": 8 if block >= 2048 else 4, "enable_fp_fusion": True,
    }  # fmt: skip
    _logit_kernel[(positions,)](
        z, out, y, loss if valid is None else valid.view(torch.uint8), loss, w,
        *z.stride(), *out.stride(), inner, classes, w0, spec.strength, spec.param,
        scale or 0.0, **flags,
    )  # fmt: skip
    return loss
