"""Cross-entropy with a logit regulariser: MaxSup, margin-based LS, LogitNorm, the logit penalty.

Each loss is cross-entropy plus (or, for LogitNorm, of) a function of the logits alone. With
class-index targets ``weight`` scales each position's whole loss by :math:`w_y` and ``mean``
divides by :math:`\\sum_n w_{y_n}` (so a zero regulariser is ``F.cross_entropy`` with the same
weights); with probability targets (mixup, cutmix) the cross-entropy term follows PyTorch and
the regulariser is unweighted.

With class indices, each has a fused path (``logit_job``: a kind of the C and Triton row kernels,
loss and gradient in one sweep of a row, see ``smoothlab/_native/losses_kinds.h``); probability
targets, float64, spatial CPU positions and ``fused=False`` run the composition of torch
operations, their specification.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import check_real
from smoothlab.losses._common import (
    Batch,
    example_weight,
    finish,
    finish_weighted,
    prepare,
    soft_cross_entropy,
)
from smoothlab.losses._fused import Job, use_fused
from smoothlab.losses._native_rows import LOGITNORM, LPEN, MAXSUP, MBLS, NativeRows
from smoothlab.losses._served import run_or_compose
from smoothlab.schedules import Schedule, linear

__all__ = [
    "logit_norm_loss",
    "logit_penalty_loss",
    "margin_label_smoothing_loss",
    "max_suppression_loss",
    "max_suppression_schedule",
]


def _prepare(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    fast: bool = False,
) -> Batch:
    return prepare(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        upcast=not fast,
    )


def _fast(fused: object, inplace_grad: object, target: object, weight: Tensor | None) -> bool:
    """Whether the fused kernels may serve: :func:`use_fused`, and class-index targets."""
    indexed = isinstance(target, Tensor) and not target.is_floating_point()
    return use_fused(fused, inplace_grad, weight) and indexed


def logit_job(batch: Batch, kind: int, strength: float, param: float = 0.0) -> Job:
    """The fused job of a kind of ``losses_kinds.h`` (``LPEN``, ``MAXSUP``, ``MBLS``,
    ``LOGITNORM``): ``w_y`` times cross-entropy plus the regulariser; its header says what
    ``strength`` and ``param`` are for each kind."""
    native = NativeRows(kind, example_weight(batch), strength=strength, param=param)
    return Job.of(batch, None, False, native)


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
    fused: bool = True,
    inplace_grad: bool = False,
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
        fused: compute loss and gradient in one sweep of each row (C kernels for float32 or
            half ``(N, C)`` CPU logits with class indices, Triton for CUDA); ``False`` (and
            every other input) runs the composition of torch operations, with the same numbers.
        inplace_grad: write the gradient into ``input``'s storage (the fused path only).

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
    fast = _fast(fused, inplace_grad, target, weight)
    batch = _prepare(input, target, weight, ignore_index, reduction, fast)

    def composition(batch: Batch) -> Tensor:
        z = batch.logits
        return _cross_entropy_plus(batch, z, a * (z.amax(dim=1) - z.mean(dim=1)))

    if fast:
        return run_or_compose(logit_job(batch, MAXSUP, a), batch, inplace_grad, composition)
    return composition(batch)


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
    fused: bool = True,
    inplace_grad: bool = False,
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
        fused: as :func:`max_suppression_loss`.
        inplace_grad: as :func:`max_suppression_loss`.

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
    fast = _fast(fused, inplace_grad, target, weight)
    batch = _prepare(input, target, weight, ignore_index, reduction, fast)

    def composition(batch: Batch) -> Tensor:
        z = batch.logits
        gaps = z.amax(dim=1, keepdim=True) - z
        return _cross_entropy_plus(batch, z, a * torch.relu(gaps - m).sum(dim=1))

    if fast:
        return run_or_compose(logit_job(batch, MBLS, a, m), batch, inplace_grad, composition)
    return composition(batch)


def logit_norm_loss(
    input: Tensor,
    target: Tensor,
    *,
    temperature: float = 0.04,
    eps: float = 1e-7,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    fused: bool = True,
    inplace_grad: bool = False,
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
        fused: as :func:`max_suppression_loss`.
        inplace_grad: as :func:`max_suppression_loss`.

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
    fast = _fast(fused, inplace_grad, target, weight)
    batch = _prepare(input, target, weight, ignore_index, reduction, fast)

    def composition(batch: Batch) -> Tensor:
        z = batch.logits
        norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
        return _cross_entropy_plus(batch, z / (tau * (norm + epsilon)), 0.0)

    if fast:
        job = logit_job(batch, LOGITNORM, tau, epsilon)
        return run_or_compose(job, batch, inplace_grad, composition)
    return composition(batch)


def logit_penalty_loss(
    input: Tensor,
    target: Tensor,
    *,
    beta: float,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    fused: bool = True,
    inplace_grad: bool = False,
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
        fused: as :func:`max_suppression_loss`.
        inplace_grad: as :func:`max_suppression_loss`.

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
    fast = _fast(fused, inplace_grad, target, weight)
    batch = _prepare(input, target, weight, ignore_index, reduction, fast)

    def composition(batch: Batch) -> Tensor:
        z = batch.logits
        return _cross_entropy_plus(batch, z, 0.5 * b * (z * z).sum(dim=1))

    if fast:
        return run_or_compose(logit_job(batch, LPEN, b), batch, inplace_grad, composition)
    return composition(batch)
