r"""The label noise that IVON's posterior induces on each example (Yang et al., 2025, Eq. 10, 16).

Training with the expected loss under :math:`q(\theta)` is training the mean :math:`m` with the
label :math:`y` replaced by :math:`y + \epsilon(x)`, where

.. math::
    \epsilon(x) = \mathrm{softmax}(f(x; m)) - \mathbb E_{q}\big[\mathrm{softmax}(f(x; \theta))\big]

(exact for generalised linear models, to first order for neural networks). Examples the model is
unsure about, near the decision boundary or atypical, get more noise.

Reference: S.-H. Yang, Z. Liu, G. M. Marconi, M. E. Khan, "Variational Learning Induces Adaptive
Label Smoothing", 2025.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from smoothlab._checks import check_floating, check_int, fail
from smoothlab.optim.ivon import IVON

__all__ = ["LabelNoise", "noise_magnitude", "predictive_label_noise", "rank_examples"]


@dataclass(frozen=True)
class LabelNoise:
    """Per-example label noise and its size.

    Attributes:
        noise: :math:`\\epsilon`, shape ``(N, C, ...)``; sums to 0 over classes.
        magnitude: :func:`noise_magnitude` of ``noise``, shape ``(N, ...)``.
    """

    noise: Tensor
    magnitude: Tensor


def noise_magnitude(noise: Tensor) -> Tensor:
    r"""The size of a label noise: its total variation, half the L1 norm over classes.

    .. math::
        |\epsilon| = \tfrac12 \sum_k |\epsilon_k|

    Because the noise sums to zero this is the probability mass it moves, in ``[0, 1]`` for
    distributions, and in the binary case it equals :math:`|\epsilon|` of Eq. 13.

    Shape:
        - noise ``(N, C, ...)`` -> ``(N, ...)``.

    >>> noise_magnitude(torch.tensor([[0.1, -0.3, 0.2], [0.05, -0.05, 0.0]]))
    tensor([0.3000, 0.0500])
    """
    check_floating("noise", noise, min_dim=2)
    return 0.5 * noise.abs().sum(1)


def rank_examples(magnitude: Tensor, k: int | None = None, *, least: bool = False) -> Tensor:
    """Indices of the ``k`` noisiest examples (``least=True``: the least noisy), noisiest first.

    Ties keep their original order. ``k=None`` ranks all examples.

    Shape:
        - magnitude ``(N,)`` -> ``(k,)`` long indices.

    >>> rank_examples(torch.tensor([0.1, 0.4, 0.0, 0.2]), 2)
    tensor([1, 3])
    >>> rank_examples(torch.tensor([0.1, 0.4, 0.0, 0.2]), 2, least=True)
    tensor([2, 0])
    """
    check_floating("magnitude", magnitude)
    if magnitude.dim() != 1:
        raise fail("magnitude", "a tensor of shape (N,)", magnitude)
    n = magnitude.shape[0]
    k = n if k is None else check_int("k", k, low=0)
    if k > n:
        raise fail("k", f"<= the number of examples {n}", k)
    order = torch.sort(magnitude, descending=not least, stable=True).indices
    return order[:k]


@torch.no_grad()
def predictive_label_noise(
    model: nn.Module,
    optimizer: IVON,
    inputs: Tensor,
    *,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> LabelNoise:
    r"""Monte Carlo estimate of the label noise of IVON's posterior (Yang et al., Eq. 10, 16).

    .. math::
        \epsilon(x) = \mathrm{softmax}(f(x; m))
            - \frac1S \sum_{s=1}^S \mathrm{softmax}(f(x; \theta_s)),
        \qquad \theta_s \sim q = \mathcal N(m, \sigma^2)

    computed with :meth:`IVON.predict` (put the model in ``eval()`` mode first if it has dropout
    or batch norm). Rows sum to 0. The Monte Carlo error shrinks like :math:`1/\sqrt S`; the
    paper's figures use the magnitude to rank examples (:func:`rank_examples`).

    Args:
        model: the network whose parameters ``optimizer`` trains.
        optimizer: the :class:`~smoothlab.optim.IVON` holding the posterior.
        inputs: a batch for ``model``.
        n_samples: :math:`S \ge 1`.
        generator: draws the samples; default the optimizer's own (advancing its stream).

    Shape:
        - returns ``noise`` ``(N, C, ...)`` and ``magnitude`` ``(N, ...)``.

    >>> model = nn.Linear(2, 3)
    >>> opt = IVON(model.parameters(), lr=0.1, ess=4.0)
    >>> out = predictive_label_noise(model, opt, torch.randn(5, 2), n_samples=8)
    >>> out.noise.shape, out.magnitude.shape, bool(out.noise.sum(1).abs().max() < 1e-6)
    (torch.Size([5, 3]), torch.Size([5]), True)
    """
    if not isinstance(optimizer, IVON):
        raise fail("optimizer", "a smoothlab.optim.IVON", f"!{type(optimizer).__name__}",
                   kind=TypeError)  # fmt: skip
    prediction = optimizer.predict(model, inputs, n_samples=n_samples, generator=generator)
    noise = prediction.at_mean - prediction.predictive
    return LabelNoise(noise, noise_magnitude(noise))
