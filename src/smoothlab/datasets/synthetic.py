"""Synthetic classification data for tests and quick experiments; every draw takes ``generator=``.

All generators return ``(x, y)``: float32 features ``(n, d)`` and int64 labels ``(n,)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_floating, check_generator, check_int, check_real, fail

__all__ = ["gaussian_mixture", "synthetic_images", "two_moons", "twonorm"]


def twonorm(
    n: int, *, dim: int = 20, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Breiman's twonorm: two unit-covariance Gaussians with means ``+a`` and ``-a``.

    ``y ~ Bernoulli(1/2)``; ``x | y=0 ~ N(a 1, I)`` and ``x | y=1 ~ N(-a 1, I)`` with
    ``a = 2 / sqrt(dim)``. Class 0 has the positive mean, as in the PMLB copy of the UCI data.
    The Bayes rule ``y = [sum(x) < 0]`` errs with probability ``Phi(-2) = 2.28 %``.

    Args:
        n: number of examples.
        dim: number of features (20 in Breiman's data).
        generator: the source of randomness.

    >>> x, y = twonorm(4000, generator=torch.Generator().manual_seed(0))
    >>> tuple(x.shape), round(float(((x.sum(1) < 0).long() != y).float().mean()), 2)
    ((4000, 20), 0.02)

    Reference: Breiman, "Bias, variance, and arcing classifiers", Tech. Rep. 460, UC Berkeley, 1996.
    """
    n = check_int("n", n, low=1)
    dim = check_int("dim", dim, low=1)
    check_generator(generator)
    y = torch.randint(0, 2, (n,), generator=generator)
    sign = 1.0 - 2.0 * y.float()
    x = torch.randn(n, dim, generator=generator) + (2.0 / math.sqrt(dim)) * sign[:, None]
    return x, y


def gaussian_mixture(
    n: int,
    means: Tensor,
    *,
    std: float = 1.0,
    weights: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw from a mixture of isotropic Gaussians, one component per class.

    ``y ~ Categorical(weights)`` (uniform by default), ``x | y=k ~ N(means[k], std^2 I)``.

    Args:
        n: number of examples.
        means: float ``(K, d)``, one mean per class.
        std: the common standard deviation, > 0.
        weights: class probabilities ``(K,)``, non-negative (normalised here), or None.
        generator: the source of randomness.

    >>> means = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    >>> x, y = gaussian_mixture(3000, means, std=0.5, generator=torch.Generator().manual_seed(0))
    >>> torch.bincount(y).tolist(), round(float(x[y == 1, 0].mean()), 1)
    ([995, 1022, 983], 4.0)
    """
    n = check_int("n", n, low=1)
    check_floating("means", means)
    if means.dim() != 2 or means.shape[0] < 1:
        raise fail("means", "a (num_classes, dim) tensor", means)
    std = check_real("std", std, low=0.0, low_open=True)
    check_generator(generator)
    if weights is None:
        weights = torch.ones(means.shape[0])
    check_floating("weights", weights)
    if weights.shape != (means.shape[0],) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
        raise fail("weights", f"{means.shape[0]} non-negative weights, not all 0", weights)
    y = torch.multinomial(weights.double(), n, replacement=True, generator=generator)
    noise = torch.randn(n, means.shape[1], generator=generator, dtype=means.dtype)
    return (means[y] + std * noise).float(), y


def two_moons(
    n: int, *, noise: float = 0.1, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles with Gaussian jitter.

    ``t ~ U(0, pi)``; class 0 is ``(cos t, sin t)``, class 1 is ``(1 - cos t, 1/2 - sin t)``;
    ``y ~ Bernoulli(1/2)`` and ``N(0, noise^2 I)`` is added.

    Args:
        n: number of examples.
        noise: standard deviation of the jitter, >= 0.
        generator: the source of randomness.

    >>> x, y = two_moons(5, noise=0.0, generator=torch.Generator().manual_seed(0))
    >>> bool(((x[y == 0].norm(dim=1) - 1).abs() < 1e-6).all())
    True

    Reference: the "moons" toy problem of scikit-learn's ``make_moons`` (re-derived, same curves).
    """
    n = check_int("n", n, low=1)
    noise = check_real("noise", noise, low=0.0)
    check_generator(generator)
    y = torch.randint(0, 2, (n,), generator=generator)
    t = math.pi * torch.rand(n, generator=generator)
    upper = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    lower = torch.stack([1.0 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    x = torch.where(y[:, None] == 0, upper, lower)
    return x + noise * torch.randn(n, 2, generator=generator), y


def synthetic_images(
    n: int,
    *,
    num_classes: int = 10,
    shape: tuple[int, int, int] = (3, 32, 32),
    noise: float = 60.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Images shaped like CIFAR for tests and benchmarks: a smooth template per class plus noise.

    Class ``k`` has a template ``T_k`` (a random ``4 x 4`` grid per channel upsampled bilinearly
    to the image size, so it varies smoothly like a photograph's colour layout); an image of class
    ``y`` is ``clip(round(128 + 40 T_y + noise e), 0, 255)`` with ``e ~ N(0, I)``: pixel values as
    CIFAR stores them. The templates depend on the generator's first draws only, so two calls
    with equally seeded generators share them.

    Args:
        n: number of images.
        num_classes: number of classes ``K >= 2``.
        shape: ``(C, H, W)``.
        noise: standard deviation of the pixel noise, >= 0.
        generator: the source of randomness.

    Returns:
        float32 images ``(n, C, H, W)`` with integer values in ``[0, 255]``, int64 labels ``(n,)``.

    >>> x, y = synthetic_images(6, generator=torch.Generator().manual_seed(0))
    >>> tuple(x.shape), float(x.min()) >= 0, float(x.max()) <= 255, y.tolist()
    ((6, 3, 32, 32), True, True, [6, 5, 4, 7, 2, 0])
    """
    n = check_int("n", n, low=1)
    num_classes = check_int("num_classes", num_classes, low=2)
    noise = check_real("noise", noise, low=0.0)
    check_generator(generator)
    channels, height, width = shape
    coarse = torch.randn(num_classes, channels, 4, 4, generator=generator)
    templates = torch.nn.functional.interpolate(
        coarse, size=(height, width), mode="bilinear", align_corners=False
    )
    y = torch.randint(0, num_classes, (n,), generator=generator)
    pixels = torch.randn(n, channels, height, width, generator=generator)
    x = (128.0 + 40.0 * templates[y] + noise * pixels).round().clamp(0.0, 255.0)
    return x, y
