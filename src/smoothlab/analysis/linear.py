r"""Exact label noise of linear models with a Gaussian posterior (Yang et al., 2025, Sec. 3).

For a linear model the logits :math:`f = x^\top W` under a Gaussian posterior over :math:`W` are
Gaussian themselves, so the induced label noise
:math:`\epsilon = A'(\mathbb E f) - \mathbb E[A'(f)]` (Eq. 16) needs only a low-dimensional
expectation: one-dimensional for logistic regression (Eq. 13, 26; Gauss-Hermite quadrature) and
K-dimensional for softmax regression (Monte Carlo with an explicit generator).

Reference: S.-H. Yang, Z. Liu, G. M. Marconi, M. E. Khan, "Variational Learning Induces Adaptive
Label Smoothing", 2025.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from smoothlab._checks import check_floating, check_generator, check_int, fail

__all__ = ["gaussian_softmax_label_noise", "linear_softmax_label_noise", "logistic_label_noise"]


def logistic_label_noise(mean_logit: Tensor, logit_std: Tensor, *, degree: int = 64) -> Tensor:
    r"""Label noise of logistic regression under a Gaussian logit (Eq. 13 and 26).

    .. math::
        \epsilon = \sigma(\mu) - \mathbb E_{e \sim \mathcal N(0, 1)}[\sigma(\mu + s e)]
        \approx \sigma(\mu) - \sum_{i} \frac{w_i}{\sqrt\pi}\, \sigma(\mu + \sqrt2\, s\, x_i)

    with Gauss-Hermite nodes :math:`x_i` and weights :math:`w_i` (``numpy``'s ``hermgauss``).
    For a linear model with weight posterior :math:`\mathcal N(\theta_t, \Sigma_t)` and
    features :math:`\phi`: :math:`\mu = \phi^\top\theta_t`, :math:`s = \sqrt{\phi^\top \Sigma_t
    \phi}` (Eq. 26). The noise is odd in :math:`\mu`, has its sign, is 0 at :math:`\mu = 0` and
    at :math:`s = 0`, and tends to :math:`\sigma(\mu) - 1/2` as :math:`s \to \infty`.

    Args:
        mean_logit: :math:`\mu`, any shape.
        logit_std: :math:`s \ge 0`, broadcastable with ``mean_logit``.
        degree: number of quadrature nodes. With 64 the error is below 1e-8 for
            :math:`s \le 2` and 1e-5 for :math:`s \le 5`; steeper integrands (larger
            :math:`s`) need more nodes (numpy's ``hermgauss`` is reliable up to about 150).

    >>> mu, s = torch.tensor([0.0, 1.0, 1.0, -1.0, 1.0]), torch.tensor([1.0, 0.0, 1.0, 1.0, 3.0])
    >>> logistic_label_noise(mu, s).round(decimals=4)
    tensor([ 0.0000,  0.0000,  0.0343, -0.0343,  0.1178])
    """
    check_floating("mean_logit", mean_logit)
    check_floating("logit_std", logit_std)
    degree = check_int("degree", degree, low=1)
    if bool((logit_std < 0).any()) or not bool(torch.isfinite(logit_std).all()):
        raise fail("logit_std", "finite and non-negative", logit_std)
    dtype = torch.promote_types(mean_logit.dtype, logit_std.dtype)
    nodes, weights = np.polynomial.hermite.hermgauss(degree)
    x = torch.as_tensor(nodes * math.sqrt(2.0), dtype=dtype, device=mean_logit.device)
    w = torch.as_tensor(weights / math.sqrt(math.pi), dtype=dtype, device=mean_logit.device)
    mu, std = mean_logit.to(dtype), logit_std.to(dtype)
    expected = (w * torch.sigmoid(mu.unsqueeze(-1) + std.unsqueeze(-1) * x)).sum(-1)
    return torch.sigmoid(mu) - expected


def gaussian_softmax_label_noise(
    mean_logits: Tensor,
    logit_cov: Tensor,
    *,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Label noise of softmax under Gaussian logits, by Monte Carlo (Eq. 16, multiclass).

    .. math::
        \epsilon = \mathrm{softmax}(\mu)
            - \frac1S \sum_{s=1}^S \mathrm{softmax}(\mu + L z_s),
        \qquad z_s \sim \mathcal N(0, I),\ L L^\top = \Sigma

    :math:`L = V \Lambda^{1/2}` from the eigendecomposition, so singular covariances (a
    collapsed posterior) are fine. Rows sum to 0; the error is :math:`O(1/\sqrt S)`.

    Args:
        mean_logits: :math:`\mu`, shape ``(N, K)``.
        logit_cov: ``(N, K)`` variances of independent logits, or ``(N, K, K)`` covariances.
        n_samples: :math:`S \ge 1`.
        generator: draws :math:`z`.

    >>> mu = torch.tensor([[2.0, 0.0, -1.0]])
    >>> noise = gaussian_softmax_label_noise(mu, torch.ones(1, 3), n_samples=20_000,
    ...                                      generator=torch.Generator().manual_seed(0))
    >>> noise
    tensor([[ 0.0818, -0.0538, -0.0280]])
    """
    check_floating("mean_logits", mean_logits, min_dim=2)
    check_floating("logit_cov", logit_cov)
    n_samples = check_int("n_samples", n_samples, low=1)
    check_generator(generator)
    n, k = mean_logits.shape[0], mean_logits.shape[-1]
    if mean_logits.dim() != 2 or tuple(logit_cov.shape) not in ((n, k), (n, k, k)):
        raise fail("logit_cov", f"of shape ({n}, {k}) or ({n}, {k}, {k}) for mean_logits of "
                   f"shape ({n}, {k})", f"!shape {tuple(logit_cov.shape)}")  # fmt: skip
    z = torch.randn((n_samples, n, k), generator=generator, dtype=mean_logits.dtype,
                    device=mean_logits.device)  # fmt: skip
    if logit_cov.dim() == 2:
        if bool((logit_cov < 0).any()):
            raise fail("logit_cov", "non-negative variances", logit_cov)
        logits = mean_logits + logit_cov.sqrt() * z
    else:
        eigenvalues, vectors = torch.linalg.eigh(logit_cov)
        if bool((eigenvalues < -1e-6 * eigenvalues.abs().amax().clamp_min(1.0)).any()):
            raise fail("logit_cov", "positive semi-definite", f"!min eigenvalue "
                       f"{float(eigenvalues.min()):.3g}")  # fmt: skip
        factor = vectors * eigenvalues.clamp_min(0).sqrt().unsqueeze(-2)
        logits = mean_logits + torch.einsum("nkl,snl->snk", factor, z)
    return torch.softmax(mean_logits, -1) - torch.softmax(logits, -1).mean(0)


def linear_softmax_label_noise(
    features: Tensor,
    weight_mean: Tensor,
    weight_cov: Tensor,
    *,
    n_samples: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Label noise of softmax regression :math:`f = x^\top W` with a Gaussian posterior on W.

    The logits are Gaussian with mean :math:`x^\top M` and covariance
    :math:`\mathrm{Cov}(f_k, f_l) = \sum_{d, e} x_d x_e \mathrm{Cov}(W_{dk}, W_{el})`; for a
    diagonal posterior (IVON's) the logits are independent with variance
    :math:`\sum_d x_d^2 \sigma_{dk}^2`. The expectation of the softmax is then taken by
    :func:`gaussian_softmax_label_noise`. Append a column of ones to ``features`` for a bias.

    Args:
        features: ``(N, D)``.
        weight_mean: ``(D, K)``.
        weight_cov: ``(D, K)`` variances of a diagonal posterior, or the ``(D*K, D*K)``
            covariance of ``W.flatten()`` (row-major: entry ``(d, k)`` at index ``d*K + k``).
        n_samples, generator: as in :func:`gaussian_softmax_label_noise`.

    >>> x, m = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    >>> linear_softmax_label_noise(x, m, torch.zeros(2, 3), n_samples=4)  # collapsed posterior
    tensor([[0., 0., 0.]])
    """
    check_floating("features", features, min_dim=2)
    check_floating("weight_mean", weight_mean, min_dim=2)
    check_floating("weight_cov", weight_cov)
    d, k = weight_mean.shape
    if features.dim() != 2 or features.shape[1] != d:
        raise fail("features", f"of shape (N, {d})", f"!shape {tuple(features.shape)}")
    if tuple(weight_cov.shape) == (d, k):
        cov = (features**2) @ weight_cov
    elif tuple(weight_cov.shape) == (d * k, d * k):
        cov = torch.einsum("nd,dkel,ne->nkl", features, weight_cov.view(d, k, d, k), features)
    else:
        raise fail("weight_cov", f"of shape ({d}, {k}) or ({d * k}, {d * k})",
                   f"!shape {tuple(weight_cov.shape)}")  # fmt: skip
    return gaussian_softmax_label_noise(
        features @ weight_mean, cov, n_samples=n_samples, generator=generator
    )
