"""Cross-entropy with a logit regulariser: MaxSup, margin-based LS, LogitNorm, the logit penalty.

Each loss is cross-entropy plus (or, for LogitNorm, of) a function of the logits alone. With
class-index targets ``weight`` scales each position's whole loss by :math:`w_y` and ``mean``
divides by :math:`\\sum_n w_{y_n}` (so a zero regulariser is ``F.cross_entropy`` with the same
weights); with probability targets (mixup, cutmix) the cross-entropy term follows PyTorch and
the regulariser is unweighted.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import check_real
from smoothlab.losses._common import Batch, finish, finish_weighted, prepare, soft_cross_entropy
from smoothlab.schedules import Schedule, linear

__all__ = [
    "logit_norm_loss",
    "logit_penalty_loss",
    "margin_label_smoothing_loss",
    "max_suppression_loss",
    "max_suppression_schedule",
]


def _prepare(
    input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: str
) -> Batch:
    return prepare(input, target, weight=weight, ignore_index=ignore_index, reduction=reduction)


def _cross_entropy_plus(batch: Batch, logits: Tensor, penalty: Tensor | float) -> Tensor:
    """Cross-entropy of ``logits`` against the batch's targets plus a per-position penalty."""
    log_p = torch.log_softmax(logits, dim=1)
    if batch.probs is not None:
        return finish(batch, soft_cross_entropy(batch, batch.probs, log_p) + penalty, None)
    return finish_weighted(batch, -batch.gather(log_p) + penalty)


def max_suppression_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Max suppression (MaxSup): cross-entropy plus ``alpha`` times the top logit's lead.

    .. math::
        \ell = \mathrm{CE}(z, y) + \alpha\,\Big(\max_j z_j - \frac{1}{K}\sum_j z_j\Big)

    Label smoothing with rate :math:`\alpha` (mass :math:`\alpha/K` on every class) is exactly
    :math:`\mathrm{CE}(z, y) + \alpha(z_y - \bar z)`; MaxSup replaces :math:`z_y` by the top
    logit, so it penalises the prediction's confidence whether or not it is correct, where LS
    rewards a misclassified example's top logit (Zhou et al.). When the top class is
    :math:`y` the two losses coincide. The authors ramp ``alpha`` from 0.1 to 0.2 over
    training: :func:`max_suppression_schedule`. Logits must be finite.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)`` or probabilities of the input's shape.
        alpha: the suppression weight (the smoothing rate it replaces), ``alpha >= 0``.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)`` or ``(N, C, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [2.0, 0.5, -1.0]])
    >>> max_suppression_loss(logits, torch.tensor([0, 1]), alpha=0.1, reduction="none")
    tensor([0.3913, 1.8913])

    Reference: Y. Zhou, H. Li, Z. Cheng, X. Yan, Y. Dong, M. Fritz, M. Keuper, "MaxSup:
    Overcoming Representation Collapse in Label Smoothing", NeurIPS 2025.
    """
    a = check_real("alpha", alpha, low=0.0)
    batch = _prepare(input, target, weight, ignore_index, reduction)
    z = batch.logits
    return _cross_entropy_plus(batch, z, a * (z.amax(dim=1) - z.mean(dim=1)))


def max_suppression_schedule(steps: int, *, start: float = 0.1, end: float = 0.2) -> Schedule:
    r"""MaxSup's weight schedule: linear from ``start`` to ``end`` over ``steps`` steps.

    .. math:: \alpha(t) = \alpha_0 + (\alpha_1 - \alpha_0)\,\min(t / T, 1)

    The authors' ImageNet recipe raises :math:`\alpha` from 0.1 to 0.2 over the training
    epochs; the loop sets ``alpha = schedule(epoch)`` (house rule 4).

    >>> s = max_suppression_schedule(4)
    >>> [round(s(t), 3) for t in range(6)]
    [0.1, 0.125, 0.15, 0.175, 0.2, 0.2]

    Reference: Zhou et al., "MaxSup", NeurIPS 2025 (and their released training code).
    """
    return linear(start, end, steps)


def margin_label_smoothing_loss(
    input: Tensor,
    target: Tensor,
    *,
    margin: float = 10.0,
    alpha: float = 0.1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Margin-based label smoothing (MbLS): penalise logit gaps beyond a margin only.

    .. math::
        \ell = \mathrm{CE}(z, y) + \alpha \sum_j \max\big(0,\ \max_k z_k - z_j - m\big)

    Liu et al. show that label smoothing amounts to pushing every logit distance
    :math:`\max_k z_k - z_j` towards zero (an equality constraint), and relax it to the
    inequality :math:`\le m` (their defaults: :math:`m = 10`, :math:`\lambda = 0.1`). The sum
    runs over the classes as printed; implementations that average over the classes use
    :math:`\alpha / K` for the same loss.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)`` or probabilities of the input's shape.
        margin: the allowed gap :math:`m \ge 0`.
        alpha: the penalty weight :math:`\lambda \ge 0`.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)`` or ``(N, C, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[8.0, 0.0, -4.0], [1.0, 0.0, 0.0]])
    >>> margin_label_smoothing_loss(logits, torch.tensor([0, 0]), reduction="none")
    tensor([0.2003, 0.5514])

    Reference: B. Liu, I. Ben Ayed, A. Galdran, J. Dolz, "The Devil is in the Margin:
    Margin-based Label Smoothing for Network Calibration", CVPR 2022.
    """
    m = check_real("margin", margin, low=0.0)
    a = check_real("alpha", alpha, low=0.0)
    batch = _prepare(input, target, weight, ignore_index, reduction)
    z = batch.logits
    gaps = z.amax(dim=1, keepdim=True) - z
    return _cross_entropy_plus(batch, z, a * torch.relu(gaps - m).sum(dim=1))


def logit_norm_loss(
    input: Tensor,
    target: Tensor,
    *,
    temperature: float = 0.04,
    eps: float = 1e-7,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""LogitNorm: cross-entropy of the logits scaled to a fixed norm ``1 / temperature``.

    .. math::
        \ell = \mathrm{CE}\Big(\frac{z}{\tau\,(\lVert z \rVert_2 + \epsilon)},\ y\Big)

    Normalising removes the incentive to grow the logits' norm, which cross-entropy rewards
    long after the argmax is right and which makes networks overconfident (Wei et al.,
    with :math:`\tau = 0.04` on CIFAR-10). :math:`\epsilon` keeps an all-zero logit vector
    finite. The norm is over the class dimension.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)`` or probabilities of the input's shape.
        temperature: :math:`\tau > 0`.
        eps: :math:`\epsilon > 0` added to the norm.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)`` or ``(N, C, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[3.0, 4.0, 0.0], [30.0, 40.0, 0.0]])
    >>> logit_norm_loss(logits, torch.tensor([1, 1]), temperature=0.5, reduction="none")
    tensor([0.6271, 0.6271])

    Reference: H. Wei, R. Xie, H. Cheng, L. Feng, B. An, Y. Li, "Mitigating Neural Network
    Overconfidence with Logit Normalization", ICML 2022.
    """
    tau = check_real("temperature", temperature, low=0.0, low_open=True)
    epsilon = check_real("eps", eps, low=0.0, low_open=True)
    batch = _prepare(input, target, weight, ignore_index, reduction)
    z = batch.logits
    norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    return _cross_entropy_plus(batch, z / (tau * (norm + epsilon)), 0.0)


def logit_penalty_loss(
    input: Tensor,
    target: Tensor,
    *,
    beta: float,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy plus an L2 penalty on the logits.

    .. math::
        \ell = \mathrm{CE}(z, y) + \frac{\beta}{2}\,\lVert z \rVert_2^2

    Dauphin & Cubuk find that much of batch normalisation's benefit comes from keeping the
    output logits small, and recover it with this penalty (their "standardizing logits";
    the norm is over the class dimension).

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)`` or probabilities of the input's shape.
        beta: the penalty weight, ``beta >= 0`` (no default: its scale depends on the model).
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)`` or ``(N, C, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> logit_penalty_loss(logits, torch.tensor([0, 1]), beta=0.1, reduction="none")
    tensor([0.5038, 0.6014])

    Reference: Y. Dauphin and E. D. Cubuk, "Deconstructing the Regularization of BatchNorm",
    ICLR 2021.
    """
    b = check_real("beta", beta, low=0.0)
    batch = _prepare(input, target, weight, ignore_index, reduction)
    z = batch.logits
    return _cross_entropy_plus(batch, z, 0.5 * b * (z * z).sum(dim=1))
