"""The noise kinds of the lab's ``--noise`` option: a plain table of frozen dataclasses (rule 9).

Each kind turns clean labels into noisy ones at a given ``rate`` through one call with the same
signature, so the lab's grid, its CLI choices, docs tables and plot legends all derive from
:data:`NOISE_KINDS`. Class-conditional kinds ignore ``features``; the instance kind needs them.
``rate = 0`` leaves the labels clean for every kind but one: "class-dependent" follows Yang et al.
(2025, Fig. 7), whose x-axis is the starting level ``kappa`` at a fixed increase ``beta = 0.05``
on CIFAR-10 (``0.5 / K`` here), so its class ``i`` still flips with probability ``0.5 i / K``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from smoothlab._checks import check_int, fail
from smoothlab.noise.corrupt import corrupt_labels
from smoothlab.noise.instance import instance_noise
from smoothlab.noise.matrices import (
    asymmetric_cifar10,
    class_dependent,
    pairflip,
    symmetric,
    uniform,
)

__all__ = ["NOISE_KINDS", "NoiseBuilder", "NoiseKind", "noise_kind"]


class NoiseBuilder(Protocol):
    """``build(labels, rate, *, num_classes, features, generator, exact) -> noisy labels``."""

    def __call__(
        self,
        labels: Tensor,
        rate: float,
        *,
        num_classes: int,
        features: Tensor | None = None,
        generator: torch.Generator | None = None,
        exact: bool = False,
    ) -> Tensor: ...


@dataclass(frozen=True)
class NoiseKind:
    """One choice of ``--noise``: its name, a one-line description, and how to apply it."""

    name: str
    description: str
    build: NoiseBuilder


def _from_matrix(matrix: Callable[[int, float], Tensor]) -> NoiseBuilder:
    """A builder that corrupts labels with the class-conditional ``matrix(num_classes, rate)``."""

    def build(
        labels: Tensor,
        rate: float,
        *,
        num_classes: int,
        features: Tensor | None = None,
        generator: torch.Generator | None = None,
        exact: bool = False,
    ) -> Tensor:
        transition = matrix(num_classes, rate)
        return corrupt_labels(labels, transition, generator=generator, exact=exact)

    return build


def _cifar10(num_classes: int, rate: float) -> Tensor:
    if check_int("num_classes", num_classes) != 10:
        raise fail("num_classes", "10 for asymmetric-cifar10 noise", num_classes)
    return asymmetric_cifar10(rate)


def _class_dependent(num_classes: int, rate: float) -> Tensor:
    # beta = 0.5 / K is Yang et al.'s beta = 0.05 at K = 10, and keeps kappa <= 0.5 valid for any K.
    k = check_int("num_classes", num_classes, low=2)
    return class_dependent(k, rate, 0.5 / k)


def _instance(
    labels: Tensor,
    rate: float,
    *,
    num_classes: int,
    features: Tensor | None = None,
    generator: torch.Generator | None = None,
    exact: bool = False,
) -> Tensor:
    if features is None:
        raise fail("features", "a (N, ...) tensor for instance-dependent noise", None)
    if exact:
        raise fail("exact", "False for instance-dependent noise (rows differ per example)", exact)
    result = instance_noise(labels, features, rate, num_classes=num_classes, generator=generator)
    return result.labels


NOISE_KINDS: tuple[NoiseKind, ...] = (
    NoiseKind(
        "symmetric",
        "keep with prob. 1 - rate, else a uniform other class (flip rate = rate)",
        _from_matrix(symmetric),
    ),
    NoiseKind(
        "uniform",
        "with prob. rate redraw uniformly over all K classes (flip rate = rate (K-1)/K)",
        _from_matrix(uniform),
    ),
    NoiseKind(
        "pairflip",
        "class i becomes class i+1 (cyclic) with prob. rate (Han et al., 2018)",
        _from_matrix(pairflip),
    ),
    NoiseKind(
        "asymmetric-cifar10",
        "truck->automobile, bird->airplane, deer->horse, cat<->dog with prob. rate (Patrini "
        "et al., 2017); K = 10",
        _from_matrix(_cifar10),
    ),
    NoiseKind(
        "class-dependent",
        "class i = 1..K flips with prob. rate + 0.5 i / K to a uniform other class (Yang et al., "
        "2025, Eq. 21-22: rate is kappa, beta = 0.5 / K; rate 0 still flips)",
        _from_matrix(_class_dependent),
    ),
    NoiseKind(
        "instance",
        "per-example flip rate ~ N(rate, 0.1^2) on [0, 1], spread by a random projection of the "
        "features (Xia et al., 2020)",
        _instance,
    ),
)


def noise_kind(name: str) -> NoiseKind:
    """The :class:`NoiseKind` called ``name``.

    >>> kind = noise_kind("pairflip")
    >>> clean = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    >>> noisy = kind.build(clean, 0.4, num_classes=2, generator=torch.Generator().manual_seed(0),
    ...                    exact=True)
    >>> (noisy != clean).sum().item()  # exactly 2 of the 5 in each class
    4
    >>> noise_kind("gaussian")
    Traceback (most recent call last):
    ...
    ValueError: `noise` must be one of 'symmetric', 'uniform', 'pairflip', 'asymmetric-cifar10', \
'class-dependent', 'instance', got 'gaussian'
    """
    for kind in NOISE_KINDS:
        if kind.name == name:
            return kind
    valid = ", ".join(repr(kind.name) for kind in NOISE_KINDS)
    raise fail("noise", f"one of {valid}", name)
