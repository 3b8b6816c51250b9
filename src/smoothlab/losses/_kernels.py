"""Row kernels of the fused losses: loss and gradient of one chunk in a single sweep.

Every kernel works on a chunk ``z`` of shape ``(B, C, S)`` (class dimension 1) and writes the
gradient of the *scaled* loss into ``g`` (which may be ``z`` itself: each kernel reads what it
needs from ``z`` before the softmax overwrites it). Per-position coefficients are floats or
tensors of shape ``(B, 1, S)``. ``scale=None`` skips the gradient (forward only).

The algebra (proved in ``tests/test_fast_identities.py``), in the notation of the C and Triton
kernels (the header of ``smoothlab/_native/losses.c`` defines it): for a target
``q = a e_y + b pi + r T`` with mass ``Q = a + b sum(pi) + r sum(T)``,

    loss = Q lse(z) - a z_y - b pi.z - r T.z,        d loss / dz = Q softmax(z) - q,

so smoothing costs one softmax plus a dot product per row, and ``lse`` comes from the softmax
itself: ``lse = z_y - log p_y`` (rows where ``p_y`` underflows are recomputed with logsumexp).
Here the ``r T`` term (a per-example prior, or probability targets) arrives inside ``pi``
(:func:`smoothing_rows` with a per-position ``pi``) or as ``q`` (:func:`soft_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from smoothlab.losses._common import massed

__all__ = [
    "Chunk",
    "log1mexp",
    "penalty_rows",
    "relaxation_rows",
    "smoothing_rows",
    "soft_rows",
    "with_logit_options",
]

Coef = float | Tensor


@dataclass
class Chunk:
    """One chunk in kernel layout.

    Attributes:
        z: ``(B, C, S)`` logits in the compute dtype.
        g: ``(B, C, S)`` gradient buffer (may be ``z``).
        y: ``(B, 1, S)`` int64 class indices (ignored positions hold 0), or ``None``.
        scratch: a ``(B, C, S)`` buffer for temporaries, when the job asked for one.
    """

    z: Tensor
    g: Tensor
    y: Tensor | None
    scratch: Tensor | None = None


def softmax_into(z: Tensor, g: Tensor, y: Tensor | None) -> Tensor:
    """Write ``softmax(z)`` over dim 1 into ``g``; return ``lse(z)`` of shape ``(B, 1, S)``."""
    if z.shape[2] != 1 or not g.is_contiguous():
        # Classes not innermost: reductions over dim 1 vectorise across positions. (ATen's
        # row softmax also needs a contiguous output.)
        top = z.amax(1, keepdim=True)
        torch.sub(z, top, out=g)
        g.exp_()
        total = g.sum(1, keepdim=True)
        g.div_(total)
        return top + total.log()
    if y is None:
        top, arg = z.max(1, keepdim=True)
        torch._softmax(z.squeeze(2), 1, False, out=g.squeeze(2))
        return top - g.gather(1, arg).log()
    z_y = z.gather(1, y)
    aliased = g.data_ptr() == z.data_ptr()
    peak = z.amax(1, keepdim=True) if aliased else None  # z is overwritten next
    torch._softmax(z.squeeze(2), 1, False, out=g.squeeze(2))
    p_y = g.gather(1, y)
    lse = z_y - p_y.log()
    # p_y below ~1e-30 loses digits (or is 0): those rows get an exact logsumexp, or, when z is
    # gone, lse = max(z) - log max(p) (exact to rounding: the largest p is exp(0) / sum).
    if not float(p_y.min()) >= 1e-30:
        rows = (~(p_y >= 1e-30)).view(-1).nonzero().view(-1)
        if peak is None:
            lse[rows] = torch.logsumexp(z[rows], 1, keepdim=True)
        else:
            lse[rows] = peak[rows] - g[rows].amax(1, keepdim=True).log()
    return lse


def log1mexp(x: Tensor) -> Tensor:
    r"""``log(1 - exp(x))`` for ``x <= 0``, accurate near both ends (Mächler, 2012).

    .. math::
        \log(1 - e^x) = \begin{cases} \log(-\mathrm{expm1}(x)) & x > -\log 2 \\
        \mathrm{log1p}(-e^x) & \text{otherwise} \end{cases}

    >>> log1mexp(torch.tensor([-1e-10, -50.0]))
    tensor([-2.3026e+01, -1.9287e-22])
    """
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _as_tensor(value: Coef, like: Tensor) -> Tensor:
    """A per-position coefficient as a tensor shaped like ``like`` (``(B, 1, S)``)."""
    return value.expand_as(like) if isinstance(value, Tensor) else torch.full_like(like, value)


def _dot(left: Tensor, right: Tensor) -> Tensor:
    """``sum_j left_j right_j`` over dim 1, shape ``(B, 1, S)``, with no elementwise temporary."""
    dot: Tensor = torch.linalg.vecdot(left, right, dim=1)
    return dot.unsqueeze(1)


def _masked_dot(weights: Tensor, z: Tensor) -> Tensor:
    """``sum_j w_j z_j`` over dim 1, with 0 where ``w_j = 0`` even at infinite ``z_j``."""
    dot = _dot(weights.expand_as(z), z)
    if not bool(torch.isnan(dot).any()):
        return dot
    return torch.where(weights != 0, weights * z, 0.0).sum(1, keepdim=True)


def smoothing_rows(
    chunk: Chunk, a: Coef, b: Coef, pi: Tensor | None, pi_sum: Coef, scale: float | None
) -> Tensor:
    """Cross-entropy against ``q = a e_y + b pi`` (``pi=None``: uniform ``1/C``; ``b=0``: none).

    ``pi`` is ``(1, C, 1)`` (a class vector) or ``(B, C, S)`` (per position); ``pi_sum`` its
    total mass per position.
    """
    z, g, y = chunk.z, chunk.g, chunk.y
    assert y is not None
    z_y = z.gather(1, y)
    mass = a + b * pi_sum
    loss = -massed(a, z_y)  # a = 0 (a zero weight, r = 1) at z_y = -inf is no term, not NaN
    if isinstance(b, Tensor) or b != 0.0:
        dot = z.mean(1, keepdim=True) if pi is None else _masked_dot(pi, z)
        loss = loss - massed(b, dot)
    lse = softmax_into(z, g, y)
    loss = loss + mass * lse
    if scale is None:
        return loss
    if pi is None and not isinstance(mass, Tensor) and not isinstance(b, Tensor):
        shift = torch.tensor(-scale * b / z.shape[1], dtype=g.dtype, device=g.device)
        torch.add(shift, g, alpha=scale * mass, out=g)  # one sweep: s Q p - s b / C
    elif pi is None:  # per-position coefficients (weights, ignore_index): still one sweep
        shift = _as_tensor(-scale * b / z.shape[1], z_y)
        torch.addcmul(shift, g, _as_tensor(scale * mass, z_y), out=g)
    else:
        g.mul_(scale * mass)
        if isinstance(b, Tensor):
            g.addcmul_(pi, b, value=-scale)
        elif b != 0.0:
            g.add_(pi, alpha=-scale * b)
    g.scatter_add_(1, y, _as_tensor(-scale * a, z_y))
    return loss


def soft_rows(chunk: Chunk, q: Tensor, scale: float | None) -> Tensor:
    """Cross-entropy against an explicit (weighted) target distribution ``q`` ``(B, C, S)``."""
    z, g = chunk.z, chunk.g
    mass = q.sum(1, keepdim=True)
    loss = -_masked_dot(q, z)
    loss = loss + mass * softmax_into(z, g, None)
    if scale is not None:
        g.mul_(scale * mass).add_(q, alpha=-scale)
    return loss


def relaxation_rows(chunk: Chunk, alpha: float, w: Coef, scale: float | None) -> Tensor:
    """Label relaxation; its gradient is ``kappa (softmax(z) - e_y)``, zero inside the set.

    With ``kappa = ((1 - alpha) - p_y) / (1 - p_y)`` outside the set (Lienen & Hüllermeier,
    Eq. 5, differentiated through ``log p_y``).
    """
    z, g, y = chunk.z, chunk.g, chunk.y
    assert y is not None
    log_p_y = z.gather(1, y) - softmax_into(z, g, y)
    border = math.log1p(-alpha)
    inside = log_p_y >= border
    safe = torch.where(inside, border - 1.0, log_p_y)
    log_rest = log1mexp(safe)
    kl = (1 - alpha) * (border - safe) + alpha * (math.log(alpha) - log_rest)
    loss = torch.where(inside, 0.0, kl.clamp(min=0.0)) * w
    if scale is None:
        return loss
    kappa = torch.where(inside, 0.0, ((1 - alpha) - safe.exp()) / log_rest.exp())
    coef = kappa * (scale * w)
    g.mul_(coef)
    g.scatter_add_(1, y, _as_tensor(-coef, log_p_y))
    return loss


def penalty_rows(
    chunk: Chunk,
    beta: float,
    threshold: float | None,
    w: Coef,
    q: Tensor | None,
    scale: float | None,
) -> Tensor:
    """Cross-entropy minus ``beta`` H(p) (hinged at ``threshold``), scaled by ``w``.

    With ``q=None`` the cross-entropy is against ``e_y``, else against ``q`` (unscaled by ``w``).
    Gradient per row: ``w [p (Q + gamma (log p + H)) - q]``, ``gamma = beta`` where penalised.
    """
    z, g, y = chunk.z, chunk.g, chunk.y
    aliased = g.data_ptr() == z.data_ptr()
    scratch = chunk.scratch
    if scratch is None and (aliased or scale is not None):
        scratch = torch.empty_like(z)
    p = g if not aliased or scratch is None else scratch
    mass: Coef = 1.0
    if q is None:
        assert y is not None
        ce_dot = z.gather(1, y)
    else:
        ce_dot, mass = _masked_dot(q, z), q.sum(1, keepdim=True)
    lse = softmax_into(z, p, y if q is None else None)
    pz = _dot(p, z)
    broken = torch.isnan(pz)  # 0 * (-inf) where p is 0: those rows are summed with a mask
    any_broken = bool(broken.any())
    if any_broken:
        pz = torch.where(broken, torch.where(p > 0, p * z, 0.0).sum(1, keepdim=True), pz)
    entropy = lse - pz
    gamma: Coef = beta
    if threshold is None:
        penalty = -entropy
    else:
        penalty = (threshold - entropy).clamp(min=0.0)
        gamma = beta * (entropy < threshold).to(z.dtype)
    loss = w * (mass * lse - ce_dot + beta * penalty)
    if scale is None:
        return loss
    sw = scale * w
    dead = broken & (p == 0) if any_broken else None
    first = _as_tensor(sw * (mass + gamma * (entropy - lse)), lse)
    second = _as_tensor(sw * gamma, lse)
    if aliased:  # g is z: turn z into first + second z, then multiply by p
        z.mul_(second).add_(first).mul_(p)
    else:
        g.mul_(
            torch.addcmul(first, z, second, out=torch.empty_like(z) if scratch is None else scratch)
        )
    if dead is not None:
        g.masked_fill_(dead, 0.0)
    if q is None:
        assert y is not None
        g.scatter_add_(1, y, _as_tensor(-sw, lse))
    else:
        g.addcmul_(q, _as_tensor(sw, lse), value=-1.0)
    return loss


def with_logit_options(
    kernel: Callable[[Chunk], Tensor],
    chunk: Chunk,
    valid: Tensor | None,
    scale: float | None,
    lse_square_scale: float,
    softcap: float,
) -> Tensor:
    """``kernel(chunk)`` with the tanh softcap and the z-loss around it (the C and Triton kernels
    apply both inside).

    With ``softcap`` ``c``, the kernel runs on the copy ``capped = c tanh(z / c)`` (so ``g``
    never aliases what it reads) and its gradient is multiplied by ``1 - (capped / c)^2``; with
    ``lse_square_scale`` ``s``, ``s lse^2`` joins the losses and ``2 s lse softmax`` the gradient
    at the positions ``valid`` counts (all when ``None``).
    """
    z = chunk.z.div(softcap).tanh_().mul_(softcap) if softcap else chunk.z
    lse = torch.logsumexp(z, 1, keepdim=True) if lse_square_scale else None
    loss = kernel(replace(chunk, z=z))
    if lse is not None:
        loss = loss + lse_square_scale * lse.square()
        if scale is not None:
            share = 2.0 * scale * lse_square_scale * lse
            share = share if valid is None else share.masked_fill(~valid, 0.0)
            chunk.g.add_(torch.exp(z - lse).mul_(share))
    if softcap and scale is not None:
        chunk.g.mul_(1.0 - (z / softcap).square())
    return loss
