"""Self-distillation targets: PS-KD (Kim et al., ICCV 2021) and Zipf's label smoothing (ECCV 2022).

Both are target transforms (house rule 2): they return ``(N, C, ...)`` distributions that
:func:`smoothlab.label_smoothing_cross_entropy` (with ``smoothing=0``) or ``F.cross_entropy``
consume as probability targets. The model's own predictions enter detached: the targets are
constants of the step, as in both papers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import (
    check_class_indices,
    check_floating,
    check_real,
    check_tensor,
    fail,
)
from smoothlab.schedules import Schedule, linear
from smoothlab.targets import smooth_targets

__all__ = [
    "progressive_self_distillation_schedule",
    "progressive_self_distillation_targets",
    "zipf_targets",
]


def progressive_self_distillation_targets(
    target: Tensor, previous_probs: Tensor, alpha: float
) -> Tensor:
    r"""PS-KD targets: the label mixed with the model's own predictions of the previous epoch.

    .. math::
        q = (1 - \alpha_t)\, e_y + \alpha_t\, p^{(t-1)}(x)

    where :math:`p^{(t-1)}(x)` is the softmax output for the same example saved at epoch
    :math:`t - 1` (the model is its own teacher) and :math:`\alpha_t` grows over training
    (:func:`progressive_self_distillation_schedule`). This is teacher smoothing,
    :func:`smoothlab.smooth_targets` with ``prior=previous_probs``.

    Args:
        target: class indices ``(N, d1, ...)``.
        previous_probs: last epoch's predicted distributions ``(N, C, d1, ...)`` (detached).
        alpha: :math:`\alpha_t \in [0, 1]`.

    Returns:
        ``(N, C, d1, ...)`` distributions in ``previous_probs``' dtype.

    >>> prev = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    >>> progressive_self_distillation_targets(torch.tensor([0, 1]), prev, 0.5)
    tensor([[0.8000, 0.1500, 0.0500],
            [0.1000, 0.6000, 0.3000]])

    Reference: K. Kim, B. Ji, D. Yoon, S. Hwang, "Self-Knowledge Distillation with Progressive
    Refinement of Targets", ICCV 2021.
    """
    a = check_real("alpha", alpha, low=0.0, high=1.0)
    probs = check_floating("previous_probs", previous_probs, min_dim=2)
    return smooth_targets(target, int(probs.shape[1]), a, prior=probs.detach())


def progressive_self_distillation_schedule(final: float, steps: int) -> Schedule:
    r"""PS-KD's weight :math:`\alpha_t = \alpha_T\, t / T`, constant after step ``T``.

    Kim et al. use :math:`\alpha_T = 0.8` with :math:`T` the number of epochs.

    >>> s = progressive_self_distillation_schedule(0.8, 4)
    >>> [round(s(t), 2) for t in range(6)]
    [0.0, 0.2, 0.4, 0.6, 0.8, 0.8]
    """
    alpha_final = check_real("final", final, low=0.0, high=1.0)
    return linear(0.0, alpha_final, steps)


def _non_target_ranks(target: Tensor, scores: Tensor) -> Tensor:
    """Rank 1, 2, ... of each non-target class by descending score; the target ranks last."""
    masked = scores.detach().scatter(1, target.unsqueeze(1), -torch.inf)
    order = torch.argsort(masked, dim=1, descending=True, stable=True)
    return torch.argsort(order, dim=1, stable=True) + 1


def zipf_targets(
    target: Tensor, scores: Tensor, *, smoothing: float = 0.1, power: float = 1.0
) -> Tensor:
    r"""Zipf's label smoothing: the smoothing mass follows Zipf's law over the model's ranking.

    .. math::
        q_j = (1 - \epsilon)\,[j = y] + \epsilon\, \frac{r_j^{-s}}{\sum_{r=1}^{K-1} r^{-s}}
        \ [j \ne y]

    where :math:`r_j \in \{1, \dots, K-1\}` is the rank of non-target class :math:`j` in the
    model's own ``scores`` (logits or probabilities of the same forward pass, detached; ties go
    to the lower class index). Liang et al. observe that ranked non-target predictions follow a
    power law and distil it back one pass at a time. ``power = 0`` is exclusive uniform
    smoothing, :math:`\epsilon/(K-1)` on each other class.

    Convention: the paper adds :math:`\lambda\,\mathrm{KL}(\text{Zipf} \| \hat p)` against the
    prediction renormalised over the non-target classes; as a target transform, the
    cross-entropy with :math:`q` is :math:`(1-\epsilon)` CE plus :math:`\epsilon` times that
    term plus :math:`-\epsilon\log(1 - p_y)` (and a constant): the same Zipf shape, with an
    extra pull away from full confidence like uniform smoothing's.

    Args:
        target: class indices ``(N, d1, ...)``.
        scores: ``(N, C, d1, ...)``, the model's logits (or probabilities) for ranking.
        smoothing: :math:`\epsilon \in [0, 1]`.
        power: the Zipf exponent :math:`s \ge 0` (1 in the paper).

    Returns:
        ``(N, C, d1, ...)`` distributions in ``scores``' dtype.

    >>> zipf_targets(torch.tensor([0]), torch.tensor([[3.0, 0.5, 2.0, -1.0]]), smoothing=0.22)
    tensor([[0.7800, 0.0600, 0.1200, 0.0400]])

    Reference: J. Liang, L. Li, Z. Bing, B. Zhao, Y. Tang, B. Lin, H. Fan, "Efficient One Pass
    Self-distillation with Zipf's Label Smoothing", ECCV 2022.
    """
    eps = check_real("smoothing", smoothing, low=0.0, high=1.0)
    s = check_real("power", power, low=0.0)
    check_tensor("target", target)
    z = check_floating("scores", scores, min_dim=2)
    k = int(z.shape[1])
    expected = (z.shape[0], *z.shape[2:])
    if k < 2 or tuple(target.shape) != expected:
        raise fail(
            "target",
            f"of shape {expected} with scores of shape (N, C >= 2, ...)",
            f"!shape {tuple(target.shape)} with scores of shape {tuple(z.shape)}",
        )
    check_class_indices("target", target, k)
    index = target.long()
    ranks = _non_target_ranks(index, z).to(z.dtype)
    harmonic = (torch.arange(1, k, dtype=torch.float64) ** -s).sum().item()
    zipf = (ranks**-s / harmonic).scatter(1, index.unsqueeze(1), 0.0)
    onehot = torch.zeros_like(zipf).scatter(1, index.unsqueeze(1), 1.0)
    return (1.0 - eps) * onehot + eps * zipf
