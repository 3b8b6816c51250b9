r"""Selective classification: the area under the risk-coverage curve (L1: torch only).

A selective classifier answers only when its confidence :math:`c_i = \max_k p_{ik}` is high
enough. Answering the :math:`k` most confident of :math:`N` samples covers :math:`k/N` of them at
the selective risk :math:`E_k / k`, with :math:`E_k` the errors among them; AURC averages that
risk over the coverages :math:`k/N`, and E-AURC subtracts the AURC of an oracle that ranks every
correct prediction above every error.

Ties: samples with equal confidence cannot be separated by any threshold, so the order inside a
tie group is arbitrary and the usual "sort and average" recipe depends on it. smoothlab averages
over every order of the tied samples: inside a group of :math:`g` samples with :math:`e` errors,
the expected errors after :math:`s` of them are :math:`E_{\text{before}} + s e / g`. Without ties
this is the usual definition; with every confidence equal it gives the error rate at every
coverage.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import check_bool
from smoothlab.metrics._validate import check_probs_target
from smoothlab.metrics.scores import top_label

__all__ = ["aurc"]


def _expected_cumulative_errors(conf: Tensor, error: Tensor) -> Tensor:
    """``E[E_k]`` for ``k = 1..N`` over uniformly random orders inside tie groups."""
    order = torch.argsort(conf, descending=True, stable=True)
    conf, error = conf[order], error[order]
    _, group, sizes = torch.unique_consecutive(conf, return_inverse=True, return_counts=True)
    group_errors = error.new_zeros(sizes.shape[0]).index_add_(0, group, error)
    ends = torch.cumsum(sizes, 0)
    errors_before = torch.cumsum(group_errors, 0) - group_errors
    position = torch.arange(1, conf.shape[0] + 1, device=conf.device)
    inside = position - (ends - sizes)[group]  # 1..g inside each group
    expected: Tensor = errors_before[group] + inside * group_errors[group] / sizes[group]
    return expected


def _oracle_area(errors: Tensor, n: int) -> Tensor:
    """AURC when all ``n - errors`` correct samples come first."""
    k = torch.arange(1, n + 1, dtype=torch.float64, device=errors.device)
    return ((k - (n - errors)).clamp(min=0) / k).mean()


def aurc(probs: Tensor, target: Tensor, *, excess: bool = False) -> Tensor:
    r"""Area under the risk-coverage curve (AURC) of the top label, or its excess (E-AURC).

    .. math::
        \mathrm{AURC} = \frac{1}{N} \sum_{k=1}^{N} \frac{\mathbb{E}[E_k]}{k}, \qquad
        \mathrm{E\text{-}AURC} = \mathrm{AURC} - \frac{1}{N} \sum_{k=1}^{N}
        \frac{\max(0,\, k - (N - E_N))}{k}

    with :math:`E_k` the errors among the :math:`k` most confident samples, its expectation
    taken over the orders of tied confidences (module docstring). Lower is better; AURC lies in
    :math:`[0, 1]` and E-AURC in :math:`[0, 1)`, 0 when every error is less confident than every
    correct prediction. The oracle term is the exact finite-:math:`N` sum; Geifman et al. write
    its large-:math:`N` limit :math:`\hat r + (1 - \hat r) \log(1 - \hat r)` with error rate
    :math:`\hat r`, which differs by :math:`O(\log N / N)`.

    Args:
        probs: ``(N, C)`` probabilities; rows sum to 1. The confidence is the top probability
            (softmax response); correctness is arg-max equals target.
        target: ``(N,)`` class indices in ``[0, C)``.
        excess: return E-AURC instead of AURC.

    Returns:
        A 0-dim float64 tensor (NaN when ``N = 0``).

    Confidences 0.9 (right), 0.8 (wrong), 0.6 (right): risks 0, 1/2, 1/3 at coverages 1/3, 2/3,
    1; the oracle's are 0, 0, 1/3:

    >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    >>> aurc(probs, torch.tensor([0, 1, 0])), aurc(probs, torch.tensor([0, 1, 0]), excess=True)
    (tensor(0.2778, dtype=torch.float64), tensor(0.1667, dtype=torch.float64))

    References: Geifman & El-Yaniv, "Selective Classification for Deep Neural Networks",
    NeurIPS 2017 (risk-coverage curve); Geifman, Uziel & El-Yaniv, "Bias-Reduced Uncertainty
    Estimation for Deep Neural Classifiers", ICLR 2019 (AURC, E-AURC).
    """
    probs, target = check_probs_target(probs, target)
    subtract = check_bool("excess", excess)
    conf, correct = top_label(probs, target)
    n = conf.shape[0]
    if n == 0:
        return conf.new_tensor(torch.nan)
    error = 1 - correct
    cumulative = _expected_cumulative_errors(conf, error)
    k = torch.arange(1, n + 1, dtype=torch.float64, device=conf.device)
    area = (cumulative / k).mean()
    return area - _oracle_area(error.sum(), n) if subtract else area
