r"""Instance-dependent label noise: the generation algorithm of Xia et al. (NeurIPS 2020).

Real annotators err more on some examples than on others, so the transition depends on the example:
``T(x)[i, j] = P(noisy = j | clean = i, x)``. The scheme here is the "instance-dependent label
noise generation" algorithm of Xia, Liu, Han, Wang, Gong, Liu, Niu, Tao & Sugiyama, "Part-dependent
Label Noise: Towards Instance-dependent Label Noise", NeurIPS 2020 (appendix), widely used as the
"IDN" benchmark:

1. draw a flip rate per example, :math:`q_n \sim \mathcal N(\tau, \sigma^2)` truncated to
   :math:`[0, 1]` (the paper uses :math:`\sigma = 0.1`);
2. draw one projection per clean class, :math:`W_c \in \mathbb R^{S \times K}` with standard normal
   entries;
3. for example ``n`` of class :math:`y_n`: :math:`p = x_n W_{y_n}`, set :math:`p_{y_n} = -\infty`,
   then the row is :math:`q_n\,\mathrm{softmax}(p)` off the diagonal and :math:`1 - q_n` on it;
4. draw the noisy label from that row.

Two choices of ours, stated where they bite: features are flattened and scaled to unit L2 norm
before the projection (the paper leaves the scale to the image preprocessing; unit norm makes
:math:`x_n W_c` standard normal, so the softmax is neither one-hot nor flat whatever the input
units), and ``rate = 0`` means no noise (the truncated normal at :math:`\tau = 0` would still have
mean :math:`\sigma\sqrt{2/\pi} \approx 0.08`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from smoothlab._checks import (
    check_class_indices,
    check_floating,
    check_generator,
    check_int,
    check_real,
    fail,
)
from smoothlab.noise.corrupt import _check_labels

__all__ = ["InstanceNoise", "instance_noise", "instance_transition"]


class InstanceNoise(NamedTuple):
    """Noisy labels and the per-example transition rows they were drawn from."""

    labels: Tensor
    """``(N,)`` noisy class indices, dtype of the clean labels."""
    transition: Tensor
    """``(N, K)`` float64 rows, ``transition[n, j] = P(noisy_n = j | clean_n, x_n)``."""


def _truncated_normal(
    size: int, mean: float, std: float, generator: torch.Generator | None
) -> Tensor:
    """Draws from N(mean, std^2) truncated to [0, 1], by inverting the normal CDF."""
    u = torch.rand(size, generator=generator, dtype=torch.float64)
    if std == 0:
        return torch.full((size,), mean, dtype=torch.float64)
    bounds = torch.tensor([(0.0 - mean) / std, (1.0 - mean) / std], dtype=torch.float64)
    low, high = torch.special.ndtr(bounds).tolist()
    quantiles: Tensor = torch.special.ndtri(low + (high - low) * u)
    return (mean + std * quantiles).clamp(0.0, 1.0)


def instance_transition(
    labels: Tensor,
    features: Tensor,
    rate: float,
    *,
    num_classes: int,
    std: float = 0.1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Per-example transition rows of Xia et al. (2020)'s instance-dependent noise.

    .. math::
        q_n \sim \mathcal N_{[0, 1]}(\tau, \sigma^2), \qquad
        T(x_n)_{y_n j} = \begin{cases} 1 - q_n & j = y_n \\
        q_n\,\dfrac{\exp(\hat x_n W_{y_n})_j}{\sum_{k \ne y_n} \exp(\hat x_n W_{y_n})_k}
        & j \ne y_n \end{cases}

    with :math:`\hat x_n = x_n / \lVert x_n \rVert_2` (a zero vector stays zero) and
    :math:`W_c \in \mathbb R^{S \times K}` standard normal. The expected flip rate is the mean of
    the truncated normal, :math:`\tau + \sigma\,\frac{\phi(\alpha) - \phi(\beta)}{\Phi(\beta) -
    \Phi(\alpha)}` with :math:`\alpha = -\tau/\sigma`, :math:`\beta = (1 - \tau)/\sigma`: about
    ``tau`` for ``0.2 <= tau <= 0.8`` (0.2055 at ``tau = 0.2``). Draw order: the ``N`` flip rates,
    then ``W_0, ..., W_{K-1}``, so the same generator state gives the same rows.

    Args:
        labels: ``(N,)`` clean class indices in ``[0, K)``.
        features: ``(N, ...)`` floating features (flattened to ``(N, S)``).
        rate: ``tau`` in ``[0, 1)``; 0 gives one-hot rows (no noise).
        num_classes: ``K >= 2``.
        std: ``sigma >= 0`` of the flip-rate distribution (0: every ``q_n = tau``).
        generator: source of randomness (``None``: PyTorch's global generator).

    Returns:
        ``(N, K)`` float64 rows, each summing to 1; row ``n`` is ``T(x_n)[y_n, :]``.

    >>> gen = torch.Generator().manual_seed(0)
    >>> rows = instance_transition(torch.tensor([0, 2]), torch.randn(2, 5, generator=gen), 0.3,
    ...                            num_classes=3, generator=gen)
    >>> rows  # 1 - q_n at the clean class (0, then 2), q_n spread by the projection
    tensor([[0.7117, 0.2441, 0.0442],
            [0.1360, 0.0717, 0.7923]], dtype=torch.float64)
    """
    k = check_int("num_classes", num_classes, low=2)
    clean = _check_labels("labels", labels)
    if clean.dim() != 1:
        raise fail("labels", "a 1-D tensor of class indices", clean)
    check_class_indices("labels", clean, k)
    x = check_floating("features", features, min_dim=1)
    if x.shape[0] != clean.shape[0]:
        raise fail("features", f"of shape (N, ...) with N = {clean.shape[0]} rows", x)
    tau = check_real("rate", rate, low=0.0, high=1.0, high_open=True)
    sigma = check_real("std", std, low=0.0)
    generator = check_generator(generator)
    n = clean.shape[0]
    flat = x.detach().reshape(n, math.prod(x.shape[1:])).double().cpu()
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    flips = _truncated_normal(n, tau, sigma, generator) if tau > 0 else torch.zeros(n).double()
    rows = torch.empty(n, k, dtype=torch.float64)
    targets = clean.cpu().long()
    for label in range(k):
        projection = torch.randn(flat.shape[1], k, generator=generator, dtype=torch.float64)
        members = (targets == label).nonzero().squeeze(1)
        logits = flat[members] @ projection
        logits[:, label] = -torch.inf
        rows[members] = flips[members].unsqueeze(1) * torch.softmax(logits, dim=1)
        rows[members, label] = 1 - flips[members]
    return rows


def instance_noise(
    labels: Tensor,
    features: Tensor,
    rate: float,
    *,
    num_classes: int,
    std: float = 0.1,
    generator: torch.Generator | None = None,
) -> InstanceNoise:
    r"""Noisy labels from Xia et al. (2020)'s instance-dependent noise, with their rows.

    .. math::
        \tilde y_n \sim \mathrm{Categorical}\bigl(T(x_n)_{y_n, :}\bigr)

    where the rows come from :func:`instance_transition` (same arguments, same draws), followed by
    one ``torch.multinomial`` draw per example from the same generator.

    Args:
        labels: ``(N,)`` clean class indices in ``[0, K)``.
        features: ``(N, ...)`` floating features.
        rate: ``tau`` in ``[0, 1)``.
        num_classes: ``K >= 2``.
        std: ``sigma >= 0`` of the flip-rate distribution.
        generator: source of randomness.

    Returns:
        :class:`InstanceNoise` ``(labels, transition)``: ``(N,)`` noisy labels in the dtype and
        device of ``labels``, and the ``(N, K)`` rows.

    >>> gen = torch.Generator().manual_seed(0)
    >>> clean = torch.randint(0, 10, (20000,), generator=gen)
    >>> result = instance_noise(clean, torch.randn(20000, 8, generator=gen), 0.4,
    ...                         num_classes=10, generator=gen)
    >>> float((result.labels != clean).double().mean())  # about the truncated mean, 0.4
    0.39995
    """
    rows = instance_transition(
        labels, features, rate, num_classes=num_classes, std=std, generator=generator
    )
    if rows.shape[0] == 0:
        return InstanceNoise(labels.clone(), rows)
    draws = torch.multinomial(rows, 1, generator=generator).squeeze(1)
    return InstanceNoise(draws.to(device=labels.device, dtype=labels.dtype), rows)
