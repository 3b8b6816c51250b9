"""Label relaxation (Lienen & Hüllermeier, AAAI 2021): the public function, its specification
(the composition, ``fused=False``) and the coefficient rule of the fused kernels
(``relaxation_job``), one hop from each backend."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from smoothlab._checks import check_real
from smoothlab.losses._common import (
    Batch,
    capped,
    check_logit_options,
    example_weight,
    finish_weighted,
    prepare,
    z_loss,
)
from smoothlab.losses._fused import Job, Layout, run_fused, use_fused
from smoothlab.losses._kernels import Chunk, log1mexp, relaxation_rows
from smoothlab.losses._native_rows import RELAX, NativeRows

__all__ = ["label_relaxation_loss", "log1mexp"]


def label_relaxation_loss(
    input: Tensor,
    target: Tensor,
    alpha: float = 0.1,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
    fused: bool = True,
    inplace_grad: bool = False,
) -> Tensor:
    r"""Label relaxation: KL divergence from the prediction's projection onto a credal set.

    The target is the set :math:`Q^\alpha = \{p : p_y \ge 1 - \alpha\}` of distributions that put
    at least :math:`1 - \alpha` on the true class. A prediction inside the set costs nothing;
    outside it, the loss is the KL divergence from its projection :math:`p^r` (which moves
    :math:`p_y` up to :math:`1 - \alpha` and rescales the other classes), which reduces to a
    two-outcome KL divergence (Lienen & Hüllermeier, Prop. 1-2 and Eq. 5):

    .. math::
        \ell = \begin{cases} 0 & p_y \ge 1 - \alpha \\
        (1-\alpha)\log\frac{1-\alpha}{p_y} + \alpha\log\frac{\alpha}{1-p_y} & \text{otherwise}
        \end{cases}

    Computed in log space from :math:`\log p_y = z_y - \mathrm{logsumexp}(z)`, with
    :math:`\log(1 - p_y)` by :func:`log1mexp`; loss and gradient are exactly zero inside the set,
    and the loss is continuous at its border. It is convex in :math:`p` (Prop. 3). ``weight``
    scales each example's loss by the weight of its class; ``mean`` divides by the total weight
    of the non-ignored positions (by their number without weights).

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)``.
        alpha: the relaxation, ``0 < alpha < 1``.
        weight: optional per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        lse_square_scale: the z-loss scale ``s >= 0`` (PaLM's auxiliary ``s lse^2``).
        softcap: ``c > 0`` caps the logits at ``c tanh(z / c)`` first (Gemma 2; see
            :func:`label_smoothing_cross_entropy`); ``None``: off.
        fused: compute the gradient in the forward pass (see :mod:`smoothlab.losses`): it is
            ``kappa (softmax(z) - e_y)`` with ``kappa = ((1 - alpha) - p_y) / (1 - p_y)``
            outside the set; ``False`` runs the composition of torch operations.
        inplace_grad: write the gradient into ``input``'s storage (the logits are destroyed).

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[4.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    >>> label_relaxation_loss(logits, torch.tensor([0, 0]), 0.1, reduction="none")
    tensor([0.0000, 0.4500])

    Reference: J. Lienen and E. Hüllermeier, "From Label Smoothing to Label Relaxation",
    AAAI 2021.
    """
    a = check_real("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    zs, cap = check_logit_options(lse_square_scale, softcap)
    fast = use_fused(fused, inplace_grad, weight)
    batch = prepare(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        allow_probs=False,
        upcast=not fast,
    )
    if fast:
        return run_fused(relaxation_job(batch, a).with_options(zs, cap), batch.logits, inplace_grad)
    batch = capped(batch, cap)
    log_p_y = batch.gather(torch.log_softmax(batch.logits, dim=1))
    border = math.log1p(-a)
    inside = log_p_y >= border
    # The "double where": evaluate the KL branch only at safe points, so that the discarded
    # branch cannot send NaN gradients (log(1 - p_y) has an infinite slope at p_y = 1).
    safe = torch.where(inside, border - 1.0, log_p_y)
    kl = (1 - a) * (border - safe) + a * (math.log(a) - log1mexp(safe))
    # KL >= 0; rounding can leave -1e-17 a hair outside the border.
    loss = torch.where(inside, torch.zeros_like(kl), kl.clamp(min=0.0))
    return finish_weighted(batch, loss, z_loss(batch, zs))


def relaxation_job(batch: Batch, alpha: float) -> Job:
    """The fused job: each position's relaxation loss times its weight ``w_y`` (the kernels'
    ``a``), ``alpha`` as their ``strength``."""
    w = example_weight(batch)

    def kernel(chunk: Chunk, layout: Layout, start: int, stop: int, scale: float | None) -> Tensor:
        return relaxation_rows(chunk, alpha, layout.coef(w, start, stop), scale)

    return Job.of(batch, kernel, False, NativeRows(RELAX, w, strength=alpha))
