r"""Estimating the noise transition without clean labels, from anchor points.

A model trained on noisy labels estimates :math:`p(\tilde y = j \mid x) = \sum_i p(y = i \mid x)
T_{ij}`. At a *perfect anchor* of class ``i``, an input with :math:`p(y = i \mid x) = 1`, that sum
is row ``i`` of ``T``. Patrini et al. (CVPR 2017, "Making deep neural networks robust to label
noise: a loss correction approach") take as the anchor of class ``i`` the example with
the largest :math:`p(\tilde y = i \mid x)` and, for robustness to outliers, the example at a high
percentile (97 %) of that column instead. :func:`estimate_transition_from_anchors` is that
estimator; :func:`smoothlab.noise.estimate_transition` is the count for when clean labels exist.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from smoothlab._checks import check_distribution, check_floating, check_real, fail

__all__ = ["estimate_transition_from_anchors"]


def _anchor_position(quantile: float, n: int) -> int:
    """``ceil(q (N - 1))``, NumPy's ``"higher"`` quantile index; the product is rounded to 6
    decimals first so that a decimal quantile lands on the whole number it means (in floating
    point ``0.07 * 100`` is 7.000000000000001, whose ceiling would be 8)."""
    return math.ceil(round(quantile * (n - 1), 6))


def estimate_transition_from_anchors(probs: Tensor, *, quantile: float = 0.97) -> Tensor:
    r"""The transition matrix ``T[clean, noisy]`` read off a noisy-label model at anchor points.

    With :math:`p_n = p(\tilde y \mid x_n)` the model's softmax output for example ``n``, the
    anchor of class ``i`` is the example whose :math:`p_{ni}` is the ``quantile`` of column ``i``,
    and row ``i`` of the estimate is that example's output:

    .. math::
        a_i = \min\{n : p_{ni} = p_{(\lceil q (N - 1) \rceil),\, i}\}, \qquad
        \hat T_{ij} = \frac{p_{a_i j}}{\sum_l p_{a_i l}}

    where :math:`p_{(0), i} \le \dots \le p_{(N-1), i}` is column ``i`` sorted (0-based; NumPy's
    ``"higher"`` quantile) and ties go to the lowest example index. ``quantile = 1`` is the
    argmax rule of Patrini et al., :math:`a_i = \arg\max_n p_{ni}` (the first of equal
    maxima, as :func:`torch.argmax`); their experiments use the 97th percentile, the default,
    which skips the few examples the model is overconfident about. The division only removes the
    rounding of the rows' sums, so the result is row-stochastic in float64. If every class has
    perfect anchors among the examples, more than ``N - 1 - ceil(q (N - 1))`` of them (about a
    ``1 - quantile`` share), and the model is exact (``probs = onehot(clean) @ T``, with
    ``T[i, i] > T[c, i]`` for ``c != i``), the estimate is ``T``. It is a selection, so it carries
    no gradient.

    Args:
        probs: ``(N, K)`` softmax outputs of a model trained on the noisy labels, rows summing
            to 1 (within ``1e-4``; ``1e-2`` in half precision), ``N >= 1``.
        quantile: which order statistic of each column picks the anchor, in ``[0, 1]``.

    Returns:
        ``(K, K)`` float64 row-stochastic matrix on ``probs``' device.

    Shape:
        ``probs``: :math:`(N, K)`; output: :math:`(K, K)`.

    >>> T = torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.75, 0.25], [0.25, 0.0, 0.75]])
    >>> clean = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0]])
    >>> probs = clean @ T  # an exact model; the last example is half class 0, half class 1
    >>> estimate_transition_from_anchors(probs, quantile=1.0)  # perfect anchors: T itself
    tensor([[0.7500, 0.2500, 0.0000],
            [0.0000, 0.7500, 0.2500],
            [0.2500, 0.0000, 0.7500]], dtype=torch.float64)
    >>> estimate_transition_from_anchors(probs, quantile=0.5)  # the mixture anchors classes 0, 1
    tensor([[0.3750, 0.5000, 0.1250],
            [0.3750, 0.5000, 0.1250],
            [0.0000, 0.7500, 0.2500]], dtype=torch.float64)
    """
    tensor = check_floating("probs", probs)
    if tensor.dim() != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise fail("probs", "a 2-D tensor of shape (N, K) with N, K >= 1", tensor)
    # half precision keeps about 3 significant digits: its softmax rows are off by up to ~1e-3
    wide_type = tensor.dtype in (torch.float32, torch.float64)
    check_distribution("probs", tensor, dim=1, atol=1e-4 if wide_type else 1e-2)
    q = check_real("quantile", quantile, low=0.0, high=1.0)
    wide = tensor.detach().double()
    position = _anchor_position(q, wide.shape[0])
    values = wide.sort(dim=0).values[position]  # (K,): each column's quantile
    # argmax of a 0/1 mask is its first 1: the lowest example index holding the quantile
    anchors = (wide == values).to(torch.uint8).argmax(dim=0)
    rows = wide[anchors]
    return rows / rows.sum(dim=1, keepdim=True)
