"""Proper scores and accuracies of probabilistic classifiers: NLL, Brier, top-1 and top-k accuracy.

All results are float64 (the sums are taken in float64 whatever the input dtype). Inputs are
``(N, C)`` probabilities whose rows sum to 1 (within 1e-4; 1e-2 for half precision) and ``(N,)``
class indices; :func:`probs_from_logits` converts logits. The accuracies take any scores (logits or
probabilities: the arg-max is the same). Ties are broken towards the lower class index, as
:func:`torch.argmax` does. A mean over no samples is NaN, as in PyTorch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from smoothlab._checks import (
    Reduction,
    check_floating,
    check_int,
    check_reduction,
    fail,
    reduce_loss,
)
from smoothlab.metrics._validate import check_probs_target, check_scores_target

__all__ = [
    "accuracy",
    "brier_per_sample",
    "brier_score",
    "negative_log_likelihood",
    "nll_per_sample",
    "probs_from_logits",
    "top_k_accuracy",
    "top_label",
]


def top_label(probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Float64 confidence ``max_k p_ik`` and correctness ``[argmax_k p_ik = y_i]`` (trusted)."""
    prediction = probs.argmax(dim=1)
    conf = probs.gather(1, prediction.unsqueeze(1)).squeeze(1).to(torch.float64)
    return conf, (prediction == target).to(torch.float64)


def nll_per_sample(probs: Tensor, target: Tensor) -> Tensor:
    """Float64 ``-log p_{i, y_i}`` per sample (trusted inputs)."""
    return -probs.gather(1, target.unsqueeze(1)).squeeze(1).to(torch.float64).log()


def brier_per_sample(probs: Tensor, target: Tensor) -> Tensor:
    """Float64 ``sum_k (p_ik - [k = y_i])^2`` per sample (trusted inputs)."""
    onehot = F.one_hot(target, probs.shape[1]).to(torch.float64)
    return (probs.to(torch.float64) - onehot).square().sum(dim=1)


def probs_from_logits(logits: Tensor, *, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Softmax over the class dimension, computed in ``dtype`` (float64 by default).

    .. math:: p_{ik} = \exp(z_{ik}) / \textstyle\sum_j \exp(z_{ij})

    Args:
        logits: ``(N, C)`` finite logits.
        dtype: ``torch.float64`` (default) or ``torch.float32``; the logits are cast first, so
            float16 logits get accurate probabilities.

    Returns:
        ``(N, C)`` probabilities in ``dtype``.

    >>> probs_from_logits(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    tensor([[0.5000, 0.5000],
            [0.8808, 0.1192]], dtype=torch.float64)
    """
    tensor = check_floating("logits", logits)
    if tensor.dim() != 2:
        raise fail("logits", "a 2-D tensor of shape (N, C)", tensor)
    if dtype not in (torch.float32, torch.float64):
        raise fail("dtype", "torch.float32 or torch.float64", f"!{dtype}")
    if not bool(torch.isfinite(tensor).all()):
        raise fail("logits", "finite", "!a tensor containing NaN or inf")
    return torch.softmax(tensor.to(dtype), dim=1)


def negative_log_likelihood(
    probs: Tensor, target: Tensor, *, reduction: Reduction = "mean"
) -> Tensor:
    r"""Negative log-likelihood (log loss) of the true class, natural log.

    .. math:: \ell_i = -\log p_{i, y_i}

    A probability of exactly 0 on the true class gives ``inf``: no clipping, so the number is
    honest (clip the probabilities yourself if you want a bounded score).

    Args:
        probs: ``(N, C)`` probabilities; rows sum to 1.
        target: ``(N,)`` class indices in ``[0, C)``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (shape ``(N,)``).

    >>> probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    >>> negative_log_likelihood(probs, torch.tensor([0, 0]))
    tensor(0.3993, dtype=torch.float64)

    Reference: Quiñonero-Candela et al., "Evaluating predictive uncertainty challenge", 2006;
    used for calibration by Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """
    mode = check_reduction(reduction)
    probs, target = check_probs_target(probs, target)
    return reduce_loss(nll_per_sample(probs, target), mode)


def brier_score(probs: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    r"""Multi-class Brier score: squared error summed over classes, averaged over samples.

    .. math:: \mathrm{BS}_i = \sum_{k=1}^{C} (p_{ik} - [k = y_i])^2 \in [0, 2]

    This is Brier's original multi-class score (Brier, 1950). Some libraries report the binary
    form on the top label, or divide by ``C``; we do neither.

    Args:
        probs: ``(N, C)`` probabilities; rows sum to 1.
        target: ``(N,)`` class indices in ``[0, C)``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (shape ``(N,)``).

    >>> probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    >>> brier_score(probs, torch.tensor([0, 0]))
    tensor(0.2600, dtype=torch.float64)

    Reference: G. W. Brier, "Verification of forecasts expressed in terms of probability",
    Monthly Weather Review 78(1), 1950.
    """
    mode = check_reduction(reduction)
    probs, target = check_probs_target(probs, target)
    return reduce_loss(brier_per_sample(probs, target), mode)


def accuracy(scores: Tensor, target: Tensor) -> Tensor:
    r"""Fraction of samples whose arg-max class is the target.

    .. math:: \mathrm{acc} = \frac{1}{N} \sum_i [\arg\max_k s_{ik} = y_i]

    Args:
        scores: ``(N, C)`` logits or probabilities (no NaN); ties go to the lower index.
        target: ``(N,)`` class indices in ``[0, C)``.

    >>> accuracy(torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]), torch.tensor([1, 1, 0]))
    tensor(0.6667, dtype=torch.float64)
    """
    scores, target = check_scores_target(scores, target)
    return (scores.argmax(dim=1) == target).to(torch.float64).mean()


def top_k_accuracy(scores: Tensor, target: Tensor, *, k: int = 5) -> Tensor:
    r"""Fraction of samples whose target is among the ``k`` highest-scoring classes.

    Classes are ranked by score, ties broken towards the lower index (so ``k = 1`` equals
    :func:`accuracy`); the rank of the target is

    .. math:: r_i = \#\{j : s_{ij} > s_{iy_i}\} + \#\{j < y_i : s_{ij} = s_{iy_i}\},
        \qquad \mathrm{acc@k} = \frac{1}{N} \sum_i [r_i < k]

    Args:
        scores: ``(N, C)`` logits or probabilities (no NaN).
        target: ``(N,)`` class indices in ``[0, C)``.
        k: ``1 <= k <= C``.

    >>> scores = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    >>> top_k_accuracy(scores, torch.tensor([1, 0]), k=2)
    tensor(0.5000, dtype=torch.float64)
    """
    scores, target = check_scores_target(scores, target)
    count = check_int("k", k, low=1)
    if count > scores.shape[1]:
        raise fail("k", f"<= the number of classes ({scores.shape[1]})", k)
    true_score = scores.gather(1, target.unsqueeze(1))
    before = torch.arange(scores.shape[1], device=scores.device) < target.unsqueeze(1)
    rank = (scores > true_score).sum(1) + ((scores == true_score) & before).sum(1)
    return (rank < count).to(torch.float64).mean()
