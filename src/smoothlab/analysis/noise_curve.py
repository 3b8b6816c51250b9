r"""The size of IVON's label noise against the mean logit: Fig. 2 of Yang et al. (2025).

For logistic regression with a Gaussian logit :math:`f \sim \mathcal N(\mu, s^2)` the induced
noise is :math:`\epsilon = \sigma(\mu) - \mathbb E[\sigma(f)]` (Eq. 13,
:func:`~smoothlab.analysis.logistic_label_noise`). At unit variance its magnitude is 0 at
:math:`\mu = 0`, peaks on both sides at :math:`|\mu| \approx 1.53` (0.039) and vanishes again
far from the decision boundary, where the sigmoid is flat: uncertain examples get the most noise.

Reference: S.-H. Yang, Z. Liu, G. M. Marconi, M. E. Khan, "Variational Learning Induces Adaptive
Label Smoothing", 2025.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import check_floating, check_real
from smoothlab.analysis.linear import logistic_label_noise

__all__ = ["logistic_noise_curve"]


def logistic_noise_curve(mean_logit: Tensor, *, logit_std: float = 1.0, degree: int = 64) -> Tensor:
    r"""Magnitude :math:`|\epsilon(\mu)|` of the logistic label noise at a fixed logit spread.

    .. math::
        |\epsilon(\mu)| = \left|\sigma(\mu) - \mathbb E_{e \sim \mathcal N(0, 1)}
            [\sigma(\mu + s e)]\right|

    An even function of :math:`\mu`, 0 at :math:`\mu = 0` and as :math:`|\mu| \to \infty`.
    Fig. 2 of the paper is this curve at :math:`s = 1`
    (:func:`smoothlab.plots.label_noise_vs_mean_logit` draws it).

    Args:
        mean_logit: :math:`\mu`, any shape.
        logit_std: :math:`s > 0` (the paper fixes the variance :math:`\phi^\top\phi = 1`).
        degree: Gauss-Hermite nodes, as in :func:`~smoothlab.analysis.logistic_label_noise`.

    >>> logistic_noise_curve(torch.tensor([-3.0, -1.5, 0.0, 1.5, 3.0], dtype=torch.float64))
    tensor([0.0219, 0.0390, 0.0000, 0.0390, 0.0219], dtype=torch.float64)

    Reference: Yang et al., 2025, Eq. 13 and Fig. 2.
    """
    check_floating("mean_logit", mean_logit)
    s = check_real("logit_std", logit_std, low=0.0, low_open=True)
    std = torch.full_like(mean_logit, s)
    return logistic_label_noise(mean_logit, std, degree=degree).abs()
