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

__all__ = ["hessian_update_", "mean_update_", "record_", "refresh_scale_", "update_"]


def record_(
    grad: Tensor,
    noise: Tensor,
    sigma: Tensor,
    hess: Tensor,
    momentum: Tensor,
    diff: Tensor,
    *,
    beta1: float,
    share: float,
    first: bool,
) -> None:
    r"""Record one Monte Carlo sample's gradient (Algorithm 1, lines 3-4, one sample's part).

    .. math::
        \hat h = \hat g\, \epsilon / \sigma, \qquad D \mathrel{(+)=} h - \hat h, \qquad
        g \leftarrow \beta_1 g + s\,(1 - \beta_1) \hat g \ \text{(first sample)},
        \quad g \leftarrow g + s\,(1 - \beta_1)\hat g \ \text{(later ones)}

    with the share :math:`s = 1/S` for :math:`S` samples per step, so that :math:`\hat g`
    needs no buffer of its own. The first sample of a step assigns :math:`D`, later ones add.

    Args:
        grad: :math:`\hat g`; noise: :math:`\epsilon` (overwritten with scratch); sigma:
            :math:`\sigma`; hess: :math:`h`; momentum: :math:`g`, updated; diff: :math:`D`.
        beta1: :math:`\beta_1`; share: :math:`s`; first: whether this is the step's first sample.

    >>> g, d = torch.tensor([0.0]), torch.empty(1)
    >>> record_(torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([0.25]), torch.tensor([3.0]),
    ...         g, d, beta1=0.5, share=1.0, first=True)
    >>> g, d  # h_hat = 2 * 0.5 / 0.25 = 4
    (tensor([1.]), tensor([-1.]))
    """
    g_eps = noise.mul_(grad)
    if first:
        torch.addcdiv(hess, g_eps, sigma, value=-1.0, out=diff)
    else:
        diff.add_(torch.addcdiv(hess, g_eps, sigma, value=-1.0, out=g_eps))
    if first and share == 1.0 and grad.dtype == momentum.dtype:  # one pass
        momentum.lerp_(grad, 1.0 - beta1)
    else:
        if first:
            momentum.mul_(beta1)
        momentum.add_(grad, alpha=(1.0 - beta1) * share)


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


def update_(
    mean: Tensor,
    hess: Tensor,
    momentum: Tensor,
    diff: Tensor,
    precision: Tensor,
    sigma: Tensor,
    scratch: Tensor,
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
    r"""One posterior update from the recorded samples (Algorithm 1, lines 5-8).

    :math:`D = \sum_s (h - \hat h_s)` over the ``samples - missing`` samples that had a gradient
    (the others count :math:`\hat h = 0`) becomes the mean :math:`(D + \text{missing}\, h) / S`,
    then :func:`hessian_update_`, :func:`refresh_scale_` and :func:`mean_update_` run in turn.

    Args:
        mean, hess, momentum: :math:`m, h, g`; diff: :math:`D` (overwritten); precision,
            sigma: :math:`P` and :math:`\sigma` for the current :math:`h` (refreshed);
            scratch: a buffer. Keywords as in the three functions; samples: :math:`S`.

    >>> m, h, d = torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([-2.0])
    >>> p, s = torch.tensor([2.0]), torch.empty(1)
    >>> update_(m, h, torch.tensor([0.5]), d, p, s, torch.empty(1), ess=2.0, weight_decay=0.0,
    ...         beta2=0.5, lr=0.1, debias=2.0, clip_radius=math.inf, missing=1, samples=2)
    >>> h, m  # D / S = (-2 + 1) / 2, so h_hat = 1.5 and h = 0.5 + 0.75 + 0.5 * 0.25 * 0.25 / 1
    (tensor([1.2812]), tensor([0.9220]))
    """
    if missing:
        diff.add_(hess, alpha=missing)
    if samples > 1:
        diff.div_(samples)
    hessian_update_(hess, diff, precision, beta2=beta2, ess=ess)
    refresh_scale_(hess, precision, sigma, ess=ess, weight_decay=weight_decay)
    mean_update_(mean, momentum, precision, scratch, lr=lr, debias=debias,
                 weight_decay=weight_decay, ess=ess, clip_radius=clip_radius)  # fmt: skip
