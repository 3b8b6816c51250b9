r"""The in-place arithmetic of one IVON step (Shen et al., ICML 2024, Algorithm 1, lines 3-8).

Each function is one line of Algorithm 1 written as few passes over memory as PyTorch allows:
on CPU an optimizer step is bound by memory traffic, so every kernel writes into a buffer it is
given (``out=``) instead of allocating, and fuses what one PyTorch call can fuse. The functions
work on one tensor; :class:`smoothlab.optim.IVON` calls them for every parameter.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["hessian_update_", "mean_update_", "refresh_scale_"]


def hessian_update_(
    hess: Tensor, diff: Tensor, precision: Tensor, *, beta2: float, ess: float
) -> None:
    r"""Update the Hessian estimate in place (Algorithm 1, line 5).

    .. math::
        h \leftarrow \beta_2 h + (1 - \beta_2)\hat h
        + \tfrac12 (1 - \beta_2)^2 \frac{(h - \hat h)^2}{h + \delta}

    computed as :math:`h + D\,(\tfrac12 a^2 D / (h + \delta) - a)` with :math:`D = h - \hat h`,
    :math:`a = 1 - \beta_2`, and :math:`h + \delta = P / \lambda` from the posterior precision
    :math:`P = \lambda (h + \delta)`. The correction term keeps the precision positive: the
    minimum of the right-hand side over :math:`\hat h` is :math:`(h - \delta)/2`, so
    :math:`h + \delta` can at most halve per step (and :math:`h` stays positive if
    :math:`\delta = 0`).

    Args:
        hess: :math:`h`, updated in place.
        diff: :math:`D = h - \hat h` (same shape).
        precision: :math:`P = \lambda (h + \delta)` before the update; overwritten with scratch.
        beta2: :math:`\beta_2 \in [0, 1]`; ess: :math:`\lambda`.

    >>> h, h_hat = torch.tensor([1.0, 1.0]), torch.tensor([3.0, -1.0])
    >>> hessian_update_(h, h - h_hat, 2.0 * h, beta2=0.5, ess=2.0)  # -1 is the worst: h halves
    >>> h
    tensor([2.5000, 0.5000])
    """
    a = 1.0 - beta2
    minus_a = torch.tensor(-a, dtype=hess.dtype, device=hess.device)
    factor = torch.addcdiv(minus_a, diff, precision, value=0.5 * a * a * ess, out=precision)
    hess.addcmul_(diff, factor)


def mean_update_(
    mean: Tensor,
    momentum: Tensor,
    precision: Tensor,
    scratch: Tensor,
    *,
    lr: float,
    debias: float,
    weight_decay: float,
    ess: float,
    clip_radius: float,
) -> None:
    r"""Move the posterior mean in place (Algorithm 1, lines 6-7, with the optional clipping).

    .. math::
        m \leftarrow m - \alpha\, \mathrm{clip}\Big(\frac{b\, g + \delta m}{h + \delta},
        \ r\Big), \qquad b = \frac{1}{1 - \beta_1^t}

    where clip limits every entry to :math:`[-r, r]` (no clipping for :math:`r = \infty`), and
    :math:`h + \delta = P / \lambda`. With :math:`\delta > 0` the numerator is formed as
    :math:`\delta (m + (b/\delta) g)`, one pass instead of two.

    Args:
        mean: :math:`m`, updated in place.
        momentum: :math:`g`; precision: :math:`P = \lambda (h + \delta)`; scratch: a buffer.
        lr: :math:`\alpha`; debias: :math:`b`; weight_decay: :math:`\delta`; ess: :math:`\lambda`;
        clip_radius: :math:`r`.

    >>> m = torch.tensor([1.0, -1.0])
    >>> mean_update_(m, torch.tensor([0.5, 4.0]), torch.tensor([2.0, 2.0]), torch.empty(2),
    ...              lr=0.1, debias=2.0, weight_decay=0.0, ess=1.0, clip_radius=1.0)
    >>> m
    tensor([ 0.9500, -1.1000])
    """
    if weight_decay > 0:
        numerator = torch.add(mean, momentum, alpha=debias / weight_decay, out=scratch)
        scale = weight_decay * ess
    else:
        numerator, scale = momentum, debias * ess
    if math.isinf(clip_radius):
        mean.addcdiv_(numerator, precision, value=-lr * scale)
        return
    bound = clip_radius / scale
    update = torch.div(numerator, precision, out=scratch).clamp_(-bound, bound)
    mean.add_(update, alpha=-lr * scale)


def refresh_scale_(
    hess: Tensor, precision: Tensor, sigma: Tensor, *, ess: float, weight_decay: float
) -> None:
    r"""Recompute :math:`P = \lambda (h + \delta)` and :math:`\sigma = 1/\sqrt P` in place.

    The same two calls run after every step and when a resumed optimizer rebuilds its caches,
    so a resumed run samples bitwise the same :math:`\sigma` (Algorithm 1, line 8).

    >>> precision, sigma = torch.empty(1), torch.empty(1)
    >>> refresh_scale_(torch.tensor([3.0]), precision, sigma, ess=4.0, weight_decay=1.0)
    >>> precision, sigma
    (tensor([16.]), tensor([0.2500]))
    """
    offset = torch.tensor(ess * weight_decay, dtype=hess.dtype, device=hess.device)
    torch.add(offset, hess, alpha=ess, out=precision)
    torch.rsqrt(precision, out=sigma)
