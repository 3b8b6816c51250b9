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


def hessian_update_(hess: Tensor, hess_hat: Tensor, den: Tensor, *, beta2: float) -> None:
    r"""Update the Hessian estimate in place (Algorithm 1, line 5).

    .. math::
        h \leftarrow \beta_2 h + (1 - \beta_2)\hat h
        + \tfrac12 (1 - \beta_2)^2 \frac{(h - \hat h)^2}{h + \delta}

    computed as :math:`h + d\,(a + \tfrac12 a^2 d / (h + \delta))` with :math:`d = \hat h - h`,
    :math:`a = 1 - \beta_2`. The correction term keeps the precision positive: the minimum of the
    right-hand side over :math:`\hat h` is :math:`(h - \delta)/2`, so :math:`h + \delta` can at
    most halve per step (and :math:`h` itself stays positive when :math:`\delta = 0`).

    Args:
        hess: :math:`h`, updated in place.
        hess_hat: :math:`\hat h` (same shape); overwritten with :math:`\hat h - h`.
        den: :math:`h + \delta` before the update (same shape); overwritten with scratch.
        beta2: :math:`\beta_2 \in [0, 1]`.

    >>> h, h_hat = torch.tensor([1.0, 1.0]), torch.tensor([3.0, -1.0])
    >>> hessian_update_(h, h_hat, h + 0.0, beta2=0.5)  # -1 is the worst case: h halves
    >>> h
    tensor([2.5000, 0.5000])
    """
    a = 1.0 - beta2
    diff = hess_hat.sub_(hess)
    a_tensor = torch.tensor(a, dtype=hess.dtype, device=hess.device)
    factor = torch.addcdiv(a_tensor, diff, den, value=0.5 * a * a, out=den)
    hess.addcmul_(diff, factor)


def mean_update_(
    mean: Tensor,
    momentum: Tensor,
    den: Tensor,
    scratch: Tensor,
    *,
    lr: float,
    debias: float,
    weight_decay: float,
    clip_radius: float,
) -> None:
    r"""Move the posterior mean in place (Algorithm 1, lines 6-7, with the optional clipping).

    .. math::
        m \leftarrow m - \alpha\, \mathrm{clip}\Big(\frac{b\, g + \delta m}{h + \delta},
        \ r\Big), \qquad b = \frac{1}{1 - \beta_1^t}

    where clip limits every entry to :math:`[-r, r]` (no clipping for :math:`r = \infty`). With
    :math:`\delta > 0` the numerator is formed as :math:`\delta (m + (b/\delta) g)`, one pass
    instead of two.

    Args:
        mean: :math:`m`, updated in place.
        momentum: :math:`g`; den: :math:`h + \delta`; scratch: a buffer of the same shape.
        lr: :math:`\alpha`; debias: :math:`b`; weight_decay: :math:`\delta`; clip_radius: r.

    >>> m = torch.tensor([1.0, -1.0])
    >>> mean_update_(m, torch.tensor([0.5, 4.0]), torch.tensor([2.0, 2.0]), torch.empty(2),
    ...              lr=0.1, debias=2.0, weight_decay=0.0, clip_radius=1.0)
    >>> m
    tensor([ 0.9500, -1.1000])
    """
    if weight_decay > 0:
        numerator = torch.add(mean, momentum, alpha=debias / weight_decay, out=scratch)
        scale = weight_decay
    else:
        numerator, scale = momentum, debias
    if math.isinf(clip_radius):
        mean.addcdiv_(numerator, den, value=-lr * scale)
        return
    bound = clip_radius / scale
    update = torch.div(numerator, den, out=scratch).clamp_(-bound, bound)
    mean.add_(update, alpha=-lr * scale)


def refresh_scale_(
    hess: Tensor, den: Tensor, sigma: Tensor, *, ess: float, weight_decay: float
) -> None:
    r"""Recompute :math:`h + \delta` and :math:`\sigma = 1/\sqrt{\lambda (h + \delta)}` in place.

    The same three calls run after every step and when a resumed optimizer rebuilds its caches,
    so a resumed run samples bitwise the same :math:`\sigma` (Algorithm 1, line 8).

    >>> den, sigma = torch.empty(1), torch.empty(1)
    >>> refresh_scale_(torch.tensor([3.0]), den, sigma, ess=4.0, weight_decay=1.0)
    >>> sigma
    tensor([0.2500])
    """
    torch.add(hess, weight_decay, out=den)
    torch.mul(den, ess, out=sigma).rsqrt_()
