"""The objectives of a stack's runs as one expression over the run dimension.

Cross-entropy, (negative) label smoothing, the confidence penalty and label relaxation are
evaluated for all runs of a stack at once, each run with its own coefficients; any other
method's objective runs per run (:mod:`smoothlab.lab.train.stacked`). Per example, with
``log p = log_softmax(z)``:

.. math::
    \\ell = (1 - r)(-\\log p_y) - r\\,\\tfrac1K \\sum_j \\log p_j + \\beta \\sum_j p_j \\log p_j

(``r``: the smoothing rate, :func:`smoothlab.losses.label_smoothing_cross_entropy`;
``beta``: the confidence penalty, :func:`smoothlab.losses.confidence_penalty_loss`), and for a
label-relaxation run (:func:`smoothlab.losses.label_relaxation_loss`, Lienen & Hüllermeier,
AAAI 2021) ``0`` where ``p_y >= 1 - alpha``, else
``(1 - alpha) log((1 - alpha) / p_y) + alpha log(alpha / (1 - p_y))``. Before its
``switch_epoch`` every run trains cross-entropy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab.lab.plan.methods import CrossEntropy, LabelSmoothing, Method
from smoothlab.lab.plan.methods.smoothing import ConfidencePenalty, Ivon, LabelRelaxation
from smoothlab.losses._kernels import log1mexp  # the loss module's own, for equal numbers

__all__ = ["StackedObjective", "coefficients"]


def coefficients(method: Method) -> tuple[float, float, float] | None:
    """``(r, beta, alpha)`` of a method the stack evaluates in one expression, else None.

    >>> from smoothlab.lab.plan.methods.smoothing import LabelRelaxation, Sam
    >>> coefficients(LabelRelaxation(alpha=0.2)), coefficients(Ivon()), coefficients(Sam())
    ((0.0, 0.0, 0.2), (0.0, 0.0, 0.0), None)
    """
    if isinstance(method, CrossEntropy) or type(method) is Ivon:  # IVON trains cross-entropy
        return (0.0, 0.0, 0.0)
    if isinstance(method, LabelSmoothing):
        return (float(method.smoothing), 0.0, 0.0)
    if type(method) is ConfidencePenalty:  # a subclass may change the objective
        return (0.0, float(method.beta), 0.0)
    if type(method) is LabelRelaxation:
        return (0.0, 0.0, float(method.alpha))
    return None


def _relaxation(log_p_y: Tensor, alpha: Tensor) -> Tensor:
    """Label relaxation ``(R, B)`` from ``log p_y`` ``(R, B)`` and each run's ``alpha`` ``(R,)``,
    as :func:`smoothlab.losses.label_relaxation_loss` computes it unfused: the branch outside
    the credal set is evaluated at safe points only (no NaN gradients from the discarded one)."""
    a = alpha[:, None]
    border = torch.log1p(-a)
    inside = log_p_y >= border
    safe = torch.where(inside, border - 1.0, log_p_y)
    kl = (1 - a) * (border - safe) + a * (torch.log(a) - log1mexp(safe))
    return torch.where(inside, torch.zeros_like(kl), kl.clamp(min=0.0))


class StackedObjective:
    """The batch losses ``(R,)`` of a stack's runs whose methods have :func:`coefficients`;
    ``own`` lists the other runs (their entries are left at cross-entropy)."""

    def __init__(self, methods: list[Method], switch: Tensor) -> None:
        found = [coefficients(m) for m in methods]
        self.own = [i for i, c in enumerate(found) if c is None]
        table = torch.tensor([c or (0.0, 0.0, 0.0) for c in found], device=switch.device)
        self.rates, self.betas, alphas = table.unbind(1)
        self.relaxed = alphas > 0
        # any alpha in (0, 1) on the other rows: their relaxation branch is computed, finite,
        # and discarded
        self.alphas = torch.where(self.relaxed, alphas, torch.full_like(alphas, 0.5))
        self.switch = switch
        # decided once: a stack without such runs builds none of their terms per step
        self.penalised, self.relaxing = bool(self.betas.any()), bool(self.relaxed.any())

    def __call__(self, logits: Tensor, y: Tensor, epoch: int) -> Tensor:
        """Each run's mean loss over its batch: ``logits (R, B, K)``, labels ``y (R, B)``."""
        # over the classes as the middle axis of (R, K, B): the stack's feature-major logits
        # as they are (a row-major input is copied once). With the classes innermost, torch's
        # CPU softmax over 2-10 of them took 9-22x longer (benchmarks/RESULTS.md)
        log_p = torch.log_softmax(logits.float().transpose(1, 2), dim=1).transpose(1, 2)
        nll = -log_p.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        on = epoch >= self.switch
        r = torch.where(on, self.rates, torch.zeros_like(self.rates))[:, None]
        loss = (1 - r) * nll - r * log_p.mean(-1)
        if self.penalised:
            beta = torch.where(on, self.betas, torch.zeros_like(self.betas))[:, None]
            loss = loss + beta * (log_p.exp() * log_p).sum(-1)
        if self.relaxing:
            relax = (self.relaxed & on)[:, None]
            loss = torch.where(relax, _relaxation(-nll, self.alphas), loss)
        return loss.mean(1)
