"""Label-smoothing cross-entropy: uniform, prior, teacher and negative (generalized) smoothing."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from smoothlab._checks import check_bool, check_real, fail
from smoothlab.losses._common import (
    Batch,
    compute_dtype,
    exclusive_split,
    finish,
    massed,
    prepare,
    soft_cross_entropy,
)
from smoothlab.losses._fused import run_fused, use_fused
from smoothlab.losses._jobs import index_job, soft_job
from smoothlab.targets import check_prior

__all__ = ["Weighting", "label_smoothing_cross_entropy"]

Weighting = Literal["pytorch", "example"]


def label_smoothing_cross_entropy(
    input: Tensor,
    target: Tensor,
    smoothing: float = 0.1,
    *,
    prior: Tensor | None = None,
    exclusive: bool = False,
    weight: Tensor | None = None,
    weighting: Weighting = "pytorch",
    ignore_index: int = -100,
    reduction: str = "mean",
    fused: bool = True,
    inplace_grad: bool = False,
) -> Tensor:
    r"""Cross-entropy against smoothed targets ``(1 - r) * onehot + r * prior``.

    Unreduced, for an example with logits :math:`z`, :math:`\log p = \mathrm{log\_softmax}(z)`,
    class-index target :math:`y` and prior :math:`\pi` (uniform :math:`1/K` by default):

    .. math::
        \ell = -(1 - r)\, w_y \log p_y \;-\; r \sum_j w_j\, \pi_j \log p_j

    with :math:`w = 1` when ``weight`` is ``None``. For ``r`` in [0, 1], no prior and any
    ``weight`` / ``ignore_index`` / ``reduction`` / shape, this equals
    ``F.cross_entropy(input, target, label_smoothing=r, ...)``, including PyTorch's weight
    semantics: the smoothing term weights class :math:`j` by :math:`w_j`, and ``mean`` divides by
    :math:`\sum_n w_{y_n}` over non-ignored positions. That distorts the smoothed distribution
    (rare classes receive extra mass); ``weighting="example"`` is the non-distorting alternative,
    :math:`\ell = w_y \cdot \mathrm{CE}(q, p)` with the same denominator.

    With probability targets :math:`t` of the input's shape, :math:`q = (1 - r) t + r \pi` and
    :math:`\ell = -\sum_j w_j q_j \log p_j`; ``mean`` divides by the number of positions (as
    PyTorch does).

    Negative ``r`` is generalized / negative label smoothing (Wei et al., "To Smooth or Not?",
    ICML 2022): the wrong classes get negative target mass, so **the loss is unbounded below**
    (it decreases without limit as the logit gap grows); use it with a bounded number of steps,
    or after a cross-entropy warm-up as Wei et al. do. PyTorch silently treats ``r < 0`` as 0;
    smoothlab never does. Terms with zero target mass :math:`w_j q_j` (a zero probability or a
    zero class weight) contribute exactly 0, even at ``-inf`` logits, on every path. PyTorch
    computes :math:`0 \cdot \infty` there and returns NaN: the one place where the numbers
    differ from PyTorch's. Half-precision inputs are computed in float32 and the loss is
    returned in float32. A ``mean`` over no positions (empty or all ignored) is NaN, a ``sum``
    is 0 (as in PyTorch).

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)`` or probabilities of the input's shape.
        smoothing: ``r <= 1``; negative for negative label smoothing.
        prior: ``None`` (uniform), a class prior ``(C,)``, or per-example distributions
            ``(N, C, ...)`` (a teacher's predictions).
        exclusive: spread ``r`` over the other ``K - 1`` classes only (``r / (K - 1)`` each).
        weight: per-class weights ``(C,)``.
        weighting: ``"pytorch"`` (default, PyTorch's semantics) or ``"example"``.
        ignore_index: class index whose positions contribute nothing (class-index targets).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        fused: compute the gradient in the forward pass (see :mod:`smoothlab.losses`);
            ``False`` runs the composition of torch operations (double backward, forward AD).
        inplace_grad: write the gradient into ``input``'s storage (the logits are destroyed;
            for callers that no longer need them).

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)`` or ``(N, C, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> label_smoothing_cross_entropy(logits, torch.tensor([0, 1]), 0.1)
    tensor(0.5047)
    >>> torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]), label_smoothing=0.1)
    tensor(0.5047)
    >>> label_smoothing_cross_entropy(logits, torch.tensor([0, 1]), -0.5)  # negative smoothing
    tensor(-0.1453)

    References: Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016; Wei et al.,
    ICML 2022; Xu et al., "Towards Understanding Label Smoothing", 2020 (teacher prior).
    """
    rate = check_real("smoothing", smoothing, high=1.0)
    if weighting not in ("pytorch", "example"):
        raise fail("weighting", "one of 'pytorch', 'example'", weighting)
    if not use_fused(fused, inplace_grad, target, prior, weight):
        return _reference(
            input, target, rate, prior, exclusive, weight, weighting, ignore_index, reduction
        )
    batch = prepare(
        input, target, weight=weight, ignore_index=ignore_index, reduction=reduction, upcast=False
    )
    rate, pi = _resolve(batch, rate, prior, exclusive, weighting)
    if batch.probs is not None:
        return run_fused(soft_job(batch, rate, pi), batch.logits, inplace_grad)
    job = index_job(batch, rate, pi, exclusive and pi is not None, weighting)
    return run_fused(job, batch.logits, inplace_grad)


def _reference(
    input: Tensor,
    target: Tensor,
    rate: float,
    prior: Tensor | None,
    exclusive: bool,
    weight: Tensor | None,
    weighting: Weighting,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    """The composition of differentiable torch operations (the specification of the fused path)."""
    batch = prepare(input, target, weight=weight, ignore_index=ignore_index, reduction=reduction)
    rate, pi = _resolve(batch, rate, prior, exclusive, weighting)
    log_p = torch.log_softmax(batch.logits, dim=1)
    if batch.probs is not None:
        return _soft_target_loss(batch, log_p, rate, pi)
    if exclusive and pi is not None:
        pi = _exclusive(batch, pi)
    return _index_target_loss(batch, log_p, rate, pi, weighting)


def _resolve(
    batch: Batch, rate: float, prior: Tensor | None, exclusive: bool, weighting: Weighting
) -> tuple[float, Tensor | None]:
    """Check the prior and the options against the targets (both paths); return rate and prior.

    The prior comes back in the compute dtype, broadcastable against the logits.
    """
    num_classes = batch.num_classes
    check_bool("exclusive", exclusive)
    pi = None if prior is None else check_prior(prior, num_classes, tuple(batch.logits.shape))
    pi = None if pi is None else pi.to(compute_dtype(batch.logits.dtype))
    if batch.probs is not None:
        if weighting == "example":
            raise fail("weighting", "'pytorch' with probability targets", weighting)
        if exclusive:
            raise fail("target", "class indices when exclusive=True", batch.probs, kind=TypeError)
    elif exclusive and pi is None:
        if num_classes < 2:  # there is no other class to put r on
            raise fail("input", "at least 2 classes when exclusive=True", batch.logits)
        # r / (K - 1) on each other class is the uniform form with rate r K / (K - 1).
        rate = rate * num_classes / (num_classes - 1)
    return rate, pi


def _index_target_loss(
    batch: Batch, log_p: Tensor, rate: float, pi: Tensor | None, weighting: Weighting
) -> Tensor:
    nll = -batch.gather(log_p)
    w_y = batch.target_weight()
    example = weighting == "example" and w_y is not None
    class_w = None if example else batch.weight
    mass = 1.0 - rate if w_y is None or example else (1.0 - rate) * w_y
    loss = massed(mass, nll)  # a zero weight (or r = 1) at a -inf true logit: no term
    if rate != 0.0:
        loss = loss + rate * _smoothing_term(batch, log_p, pi, class_w)
    if example and w_y is not None:
        loss = massed(w_y, loss)
    return finish(batch, loss, None if w_y is None else w_y.sum())


def _smoothing_term(
    batch: Batch, log_p: Tensor, pi: Tensor | None, weight: Tensor | None
) -> Tensor:
    """``-sum_j w_j pi_j log p_j``, with exact zeros where ``w_j pi_j = 0``."""
    if pi is None:
        if weight is None:
            return -log_p.mean(dim=1)
        coef = batch.class_view(weight) / batch.num_classes
    else:
        coef = pi if weight is None else pi * batch.class_view(weight)
    return -massed(coef, log_p).sum(dim=1)


def _soft_target_loss(batch: Batch, log_p: Tensor, rate: float, pi: Tensor | None) -> Tensor:
    assert batch.probs is not None
    q = batch.probs
    if rate != 0.0:
        prior = pi if pi is not None else torch.full_like(q[:1], 1.0 / batch.num_classes)
        q = (1.0 - rate) * q + rate * prior
    return finish(batch, soft_cross_entropy(batch, q, log_p), None)


def _exclusive(batch: Batch, pi: Tensor) -> Tensor:
    """Per-example prior ``pi_j / (1 - pi_y)`` on the classes other than ``y``, 0 on ``y``.

    (``1 - pi_y`` is the mass of the other classes, summed: exact for a prior that is not.)
    """
    pi = pi.expand_as(batch.logits)
    _, rest = exclusive_split(batch, pi)
    assert batch.index is not None
    others = pi.scatter(1, batch.index.unsqueeze(1), 0.0)
    return others / rest.unsqueeze(1)
