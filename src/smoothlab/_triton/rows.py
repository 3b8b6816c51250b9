"""The Triton row kernel of the loss family: loss and gradient of a row in one program.

The same algebra as the C kernel (``smoothlab/_native/losses.c``), in the same notation (its
header defines it): per row the target is ``q = a e_y + b pi + r T`` (``pi`` a class vector,
``1/C`` when absent; ``T`` the row's own distribution times class weights ``tw``: a per-example
prior or probability targets), and every loss of the family has the gradient

    g_j = ce e_j + cez e_j z_j - cb pi_j - cr T_j,     g_y -= ca,

with ``e_j = exp(z_j - m)`` and per-row coefficients ``ce, cez, cb, cr, ca`` computed from the
row's statistics ``m = max z``, ``S = sum_j e_j`` (``lse = m + log S``), ``pz = pi . z``,
``tz = T . z``, ``tsum = sum(T)`` and ``ez = sum_j e_j z_j`` (products masked where the left
factor is 0, so that ``-inf`` logits with no target mass add exactly 0).

One program per row: the first loop over column blocks gathers the statistics with an online
log-sum-exp (``S`` and ``E`` rescaled whenever the running maximum grows), the second writes the
gradient (into the logits' own buffer when asked). Half-precision logits are read as fp32 and
everything is computed in fp32; the true-class term ``- t`` is subtracted in fp32 before the
gradient is rounded to the logits' dtype (``p_y - 1`` cancels in bf16).

Beyond the smoothing family, focal loss (FLSD too), GCE and SCE, losses of ``log p_y`` alone,
run here with ``e_y - p`` gradients (:func:`_py_math`; ``losses_kinds.h`` beside the C kernels
defines them); the logit regularisers have their own kernel (:mod:`smoothlab._triton.rows_family`),
to which :func:`run_rows` sends them.

Options beyond the CPU kernels: z-loss ``lse_square_scale * lse^2`` per non-ignored row
(PaLM, Chowdhery et al. 2022, Sec. 5) and a tanh softcap ``z <- cap tanh(z / cap)`` of the
logits (Gemma 2, Team et al. 2024), both with their exact gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = [
    "FOCAL",
    "GCE",
    "MAX_BLOCK",
    "PENALTY",
    "RELAX",
    "SCE",
    "SMOOTH",
    "RowSpec",
    "per_row",
    "run_rows",
]

SMOOTH, RELAX, PENALTY = 0, 1, 2
FOCAL, GCE, SCE = 3, 4, 5  # see _py_math; the kinds above them: rows_family
#: Widest column block: 4096 fp32 values per block keep a program's registers (8 warps) in use
#: without spilling; not yet tuned on a GPU.
MAX_BLOCK = 4096


@triton.jit
def _capped(z, cap, SOFTCAP: tl.constexpr):
    """``cap tanh(z / cap)``; tanh through exp(-2|x|), which never overflows."""
    if SOFTCAP:
        x = z / cap
        e = tl.exp(-2.0 * tl.abs(x))
        th = (1.0 - e) / (1.0 + e)
        z = cap * tl.where(x < 0, -th, th)
    return z


@triton.jit
def _row_stats(
    z_ptr, pi_ptr, t_ptr, tw_ptr, C, cap,
    KIND: tl.constexpr, HAS_PZ: tl.constexpr, HAS_PI: tl.constexpr, HAS_T: tl.constexpr,
    HAS_TW: tl.constexpr, SOFTCAP: tl.constexpr, BLOCK: tl.constexpr, z_col, t_col,
):  # fmt: skip
    """``(m, S, pz, ez, tz, tsum)`` of one row, in one pass (online log-sum-exp)."""
    m = -float("inf")
    s = 0.0
    pz = 0.0
    ez = 0.0
    tz = 0.0
    tsum = 0.0
    for c0 in range(0, C, BLOCK):
        offs = c0 + tl.arange(0, BLOCK)
        mask = offs < C
        z = tl.load(z_ptr + offs * z_col, mask=mask, other=0.0).to(tl.float32)
        z = tl.where(mask, _capped(z, cap, SOFTCAP), -float("inf"))
        m_new = tl.maximum(m, tl.max(z, 0))
        # a maximum of -inf (every logit so far -inf) would make exp(-inf - -inf) NaN
        base = tl.where(m_new == -float("inf"), 0.0, m_new)
        ej = tl.exp(z - base)
        rescale = tl.exp(m - base)
        s = s * rescale + tl.sum(ej, 0)
        if KIND == 2:
            ez = ez * rescale + tl.sum(tl.where(ej != 0.0, ej * z, 0.0), 0)
        if HAS_PZ and HAS_PI:
            pi = tl.load(pi_ptr + offs, mask=mask, other=0.0)
            pz += tl.sum(tl.where(pi != 0.0, pi * z, 0.0), 0)
        elif HAS_PZ:  # uniform pi = 1 / C
            pz += tl.sum(tl.where(mask, z, 0.0), 0) / C
        if HAS_T:
            tj = tl.load(t_ptr + offs * t_col, mask=mask, other=0.0).to(tl.float32)
            if HAS_TW:
                tj = tj * tl.load(tw_ptr + offs, mask=mask, other=0.0)
            tz += tl.sum(tl.where(tj != 0.0, tj * z, 0.0), 0)
            tsum += tl.sum(tj, 0)
        m = m_new
    return m, s, pz, ez, tz, tsum


@triton.jit
def _smooth_math(a, b, r, s, lse, zy, pz, tz, tsum, pi_sum, scale, per):
    """Cross-entropy against ``q = a e_y + b pi + r T``: loss ``Q lse - a z_y - b pz - r tz``."""
    mass = a + b * pi_sum + r * tsum
    loss = mass * lse - tl.where(a != 0.0, a * zy, 0.0)
    loss -= tl.where(b != 0.0, b * pz, 0.0)
    loss -= tl.where(r != 0.0, r * tz, 0.0)
    return loss, scale * mass / s, 0.0, per * b, scale * r, scale * a


@triton.jit
def _relax_math(w, s, lse, zy, ey, alpha, border, log_alpha, scale):
    """Label relaxation (Lienen & Hüllermeier, Eq. 5): gradient ``kappa (p - e_y)`` outside."""
    log_p_y = zy - lse
    p_y = ey / s
    rest = 1.0 - p_y
    inside = log_p_y >= border
    kl = (1.0 - alpha) * (border - log_p_y) + alpha * (log_alpha - tl.log(rest))
    coef = ((1.0 - alpha) - p_y) / rest * scale * w
    loss = tl.where(inside, 0.0, tl.where(kl < 0.0, 0.0, kl) * w)  # NaN stays NaN
    return loss, tl.where(inside, 0.0, coef / s), 0.0, 0.0, 0.0, tl.where(inside, 0.0, coef)


@triton.jit
def _penalty_math(
    w, s, lse, zy, ez, tz, tsum, beta, tau, scale, HAS_T: tl.constexpr, HINGE: tl.constexpr
):
    """Cross-entropy minus ``beta H(p)`` (hinged at ``tau``), weighted by ``w`` (Pereyra et al.)."""
    entropy = lse - ez / s
    gamma = beta
    penalty = -entropy
    if HINGE:
        penalty = tl.where(entropy > tau, 0.0, tau - entropy)
        gamma = tl.where(entropy < tau, beta, 0.0)
    sw = scale * w
    mass = 1.0
    xent = lse - zy
    cr = 0.0
    ca = sw
    if HAS_T:
        mass = tsum
        xent = tsum * lse - tz
        cr = sw
        ca = 0.0
    loss = w * (xent + beta * penalty)
    return loss, sw * (mass + gamma * (entropy - lse)) / s, sw * gamma / s, 0.0, cr, ca


@triton.jit
def _expm1(x):
    """``exp(x) - 1`` accurate near 0 (Kahan: ``(u - 1) x / log u`` with ``u = exp(x)``)."""
    u = tl.exp(x)
    ratio = (u - 1.0) * x / tl.log(u)
    return tl.where(u == 1.0, x, tl.where(u - 1.0 == -1.0, -1.0, ratio))


@triton.jit
def _pow(base, exponent):
    """``base ** exponent`` for ``base >= 0``, with ``0 ** 0 = 1`` as ``torch.pow``."""
    return tl.where(exponent == 0.0, 1.0, tl.exp(exponent * tl.log(base)))


@triton.jit
def _py_math(w, lse, zy, s, strength, tau, param, scale, KIND: tl.constexpr):
    """The losses ``w f(lp)`` of ``lp = log p_y`` alone (``losses_kinds.h`` defines them): focal
    (3), GCE (4) and SCE (5); the gradient ``s w f'(lp) (e_y - p)``."""
    lp = zy - lse
    if KIND == 3:
        p = tl.exp(lp)
        gamma = tl.where(p < tau, param, strength)
        base = -_expm1(lp)
        pw = _pow(base, gamma)
        slope = tl.where(gamma == 0.0, 0.0, gamma * _pow(base, gamma - 1.0) * p)
        f = -pw * lp
        d = -pw + slope * lp
    elif KIND == 4:
        f = -_expm1(strength * lp) / strength
        d = -tl.exp(strength * lp)
    else:
        f = -strength * lp - param * _expm1(lp)
        d = -strength - param * tl.exp(lp)
    c = tl.where(w != 0.0, scale * w * d, 0.0)
    return tl.where(w != 0.0, w * f, 0.0), -c / s, 0.0, 0.0, 0.0, -c


@triton.jit
def _write_grad(
    z_ptr, g_ptr, pi_ptr, t_ptr, tw_ptr, C, y, base, ce, cez, cb, cr, ca, cap,
    z_col, g_col, t_col,
    KIND: tl.constexpr, HAS_PZ: tl.constexpr, HAS_PI: tl.constexpr, HAS_T: tl.constexpr,
    HAS_TW: tl.constexpr, SOFTCAP: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """``g_j = ce e_j + cez e_j z_j - cb pi_j - cr T_j``, ``g_y -= ca``, rounded once at the end."""
    for c0 in range(0, C, BLOCK):
        offs = c0 + tl.arange(0, BLOCK)
        mask = offs < C
        raw = tl.load(z_ptr + offs * z_col, mask=mask, other=0.0).to(tl.float32)
        z = _capped(raw, cap, SOFTCAP)
        ej = tl.exp(z - base)
        g = tl.where(ej != 0.0, ej * (ce + cez * z), 0.0) if KIND == 2 else ce * ej
        if HAS_PZ and HAS_PI:
            g -= cb * tl.load(pi_ptr + offs, mask=mask, other=0.0)
        elif HAS_PZ:
            g -= cb
        if HAS_T:
            tj = tl.load(t_ptr + offs * t_col, mask=mask, other=0.0).to(tl.float32)
            if HAS_TW:
                tj = tj * tl.load(tw_ptr + offs, mask=mask, other=0.0)
            g -= cr * tj
        g = tl.where(offs == y, g - ca, g)
        if SOFTCAP:  # chain rule through cap tanh(z / cap)
            g = g * (1.0 - (z / cap) * (z / cap))
        tl.store(g_ptr + offs * g_col, g.to(g_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rows_kernel(
    z_ptr, g_ptr, y_ptr, valid_ptr, loss_ptr, a_ptr, b_ptr, r_ptr, pi_ptr, t_ptr, tw_ptr,
    z_row, z_col, z_sp, g_row, g_col, g_sp, t_row, t_col, t_sp, S, C,
    a0, b0, r0, pi_sum, strength, tau, border, log_strength, scale, per, zs, cap, param,
    KIND: tl.constexpr, HAS_Y: tl.constexpr, HAS_VALID: tl.constexpr, HAS_A: tl.constexpr,
    HAS_B: tl.constexpr, HAS_R: tl.constexpr, HAS_PZ: tl.constexpr, HAS_PI: tl.constexpr,
    HAS_T: tl.constexpr, HAS_TW: tl.constexpr, HINGE: tl.constexpr, GRAD: tl.constexpr,
    ZLOSS: tl.constexpr, SOFTCAP: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """One position (example ``n``, spatial index ``sp`` of ``S``): its statistics, the kind's
    row arithmetic, the loss, then (``GRAD``) the gradient."""
    row = tl.program_id(0).to(tl.int64)
    n = row // S
    sp = row - n * S
    z_ptr += n * z_row + sp * z_sp
    g_ptr += n * g_row + sp * g_sp
    t_ptr += n * t_row + sp * t_sp
    a = tl.load(a_ptr + row) if HAS_A else a0
    b = tl.load(b_ptr + row) if HAS_B else b0
    r = tl.load(r_ptr + row) if HAS_R else r0
    m, s, pz, ez, tz, tsum = _row_stats(
        z_ptr, pi_ptr, t_ptr, tw_ptr, C, cap,
        KIND, HAS_PZ, HAS_PI, HAS_T, HAS_TW, SOFTCAP, BLOCK, z_col, t_col,
    )  # fmt: skip
    base = tl.where(m == -float("inf"), 0.0, m)
    lse = m + tl.log(s)
    y = -1
    zy = 0.0
    if HAS_Y:
        y = tl.load(y_ptr + row)
        zy = _capped(tl.load(z_ptr + y * z_col).to(tl.float32), cap, SOFTCAP)
    if KIND == 0:
        loss, ce, cez, cb, cr, ca = _smooth_math(
            a, b, r, s, lse, zy, pz, tz, tsum, pi_sum, scale, per
        )
    elif KIND == 1:
        ey = tl.exp(zy - base)
        loss, ce, cez, cb, cr, ca = _relax_math(
            a, s, lse, zy, ey, strength, border, log_strength, scale
        )
    elif KIND == 2:
        loss, ce, cez, cb, cr, ca = _penalty_math(
            a, s, lse, zy, ez, tz, tsum, strength, tau, scale, HAS_T, HINGE
        )
    else:
        loss, ce, cez, cb, cr, ca = _py_math(a, lse, zy, s, strength, tau, param, scale, KIND)
    ok = True
    if HAS_VALID:
        ok = tl.load(valid_ptr + row) != 0
    if ZLOSS:  # + zs lse^2 on counted rows; its gradient 2 zs lse p_j joins ce
        loss += tl.where(ok, zs * lse * lse, 0.0)
        ce += tl.where(ok, 2.0 * scale * zs * lse / s, 0.0)
    tl.store(loss_ptr + row, tl.where(ok, loss, 0.0))
    if GRAD:
        _write_grad(
            z_ptr, g_ptr, pi_ptr, t_ptr, tw_ptr, C, y, base, ce, cez, cb, cr, ca, cap,
            z_col, g_col, t_col, KIND, HAS_PZ, HAS_PI, HAS_T, HAS_TW, SOFTCAP, BLOCK,
        )  # fmt: skip


class RowSpec(Protocol):
    """A loss in the kernel's terms (:class:`smoothlab.losses._native_rows.NativeRows` is one)."""

    kind: int
    a: float | Tensor
    b: float | Tensor
    pi: Tensor | None
    pi_sum: float
    strength: float
    tau: float
    t_rows: Callable[[int, int], Tensor] | None
    tw: Tensor | None
    r: float | Tensor
    param: float


def per_row(value: float | Tensor, dummy: Tensor, start: int) -> tuple[Tensor, float, bool]:
    """A per-row coefficient from row ``start`` on: (pointer tensor, constant, pointer read?)."""
    if isinstance(value, Tensor):
        rows = dummy.shape[0]
        return value[start : start + rows].to(torch.float32).contiguous(), 0.0, True
    return dummy, float(value), False


def _relax_constants(spec: RowSpec) -> tuple[float, float]:
    """``(log1p(-alpha), log(alpha))`` for relaxation (unused by the other kinds)."""
    if spec.kind != RELAX:
        return 0.0, 0.0
    return math.log1p(-spec.strength), math.log(spec.strength)


def run_rows(
    spec: RowSpec,
    z: Tensor,
    g: Tensor | None,
    y: Tensor | None,
    valid: Tensor | None,
    scale: float | None,
    *,
    start: int = 0,
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    """Per-position losses (float32 ``(P,)``, 0 where ``valid`` is false) of ``(N, C)`` or
    ``(N, C, S)`` logits ``z`` (``P = N S`` positions, example-major).

    ``g`` (of ``z``'s shape, any strides, may be ``z``) receives ``scale`` times the gradient in
    its own dtype unless ``scale`` is ``None``; ``y``: ``(P,)`` int64 class indices or ``None``
    (probability targets); ``valid``: ``(P,)`` bool or ``None``. ``z`` holds rows
    ``start:start + N`` of the batch that ``spec``'s per-position coefficients describe.
    ``lse_square_scale`` adds the z-loss, ``softcap`` caps the logits at ``softcap tanh(z /
    softcap)`` first.
    """
    if spec.kind > PENALTY and spec.kind not in (FOCAL, GCE, SCE):
        # imported here: rows_family imports this module for its helpers
        from smoothlab._triton import rows_family

        assert y is not None
        return rows_family.run_logit_rows(spec, z, g, y, valid, scale, start=start)
    z = z.view(*z.shape[:2], math.prod(z.shape[2:]))  # (N, C, S): a view, so that g may be z
    examples, classes, inner = (int(size) for size in z.shape)
    rows = examples * inner
    loss = torch.empty(rows, dtype=torch.float32, device=z.device)
    if rows == 0:
        return loss
    grad = scale is not None and g is not None
    out = g.view(z.shape) if grad and g is not None else z
    dummy = loss
    first = start * inner  # the first position's index in the per-position coefficients
    (a, a0, has_a), (b, b0, has_b) = per_row(spec.a, dummy, first), per_row(spec.b, dummy, first)
    r, r0, has_r = per_row(spec.r, dummy, first)
    pi = dummy if spec.pi is None else spec.pi.to(device=z.device, dtype=torch.float32).contiguous()
    t = None if spec.t_rows is None else spec.t_rows(start, start + examples).reshape(z.shape)
    tw = spec.tw if t is not None else None
    tw = dummy if tw is None else tw.to(torch.float32).contiguous()
    block = min(triton.next_power_of_2(classes), MAX_BLOCK)
    border, log_strength = _relax_constants(spec)
    per = (1.0 if spec.pi is not None else 1.0 / classes) * (scale or 0.0)
    flags: dict[str, Any] = {
        "KIND": spec.kind, "HAS_Y": y is not None, "HAS_VALID": valid is not None,
        "HAS_A": has_a, "HAS_B": has_b, "HAS_R": has_r, "HAS_PI": spec.pi is not None,
        "HAS_PZ": spec.kind == SMOOTH and (has_b or b0 != 0.0), "HAS_T": t is not None,
        "HAS_TW": t is not None and spec.tw is not None,
        "HINGE": not math.isnan(spec.tau), "GRAD": grad, "ZLOSS": lse_square_scale != 0.0,
        "SOFTCAP": softcap is not None, "BLOCK": block, "num_warps": 8 if block >= 2048 else 4,
        "enable_fp_fusion": True,  # a * b + c as one FMA, as the C kernel's MADD
    }  # fmt: skip
    _rows_kernel[(rows,)](
        z, out, dummy if y is None else y, dummy if valid is None else valid.view(torch.uint8),
        loss, a, b, r, pi, dummy if t is None else t, tw,
        *z.stride(), *out.stride(), *((0, 0, 0) if t is None else t.stride()), inner,
        classes, a0, b0, r0, spec.pi_sum, spec.strength, 0.0 if math.isnan(spec.tau) else spec.tau,
        border, log_strength, scale or 0.0, per, lse_square_scale, softcap or 1.0, spec.param,
        **flags,
    )  # fmt: skip
    return loss
