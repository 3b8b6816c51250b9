"""Feature preprocessing: statistics from the training set only, applied to train and test alike.

Fit a transform on ``x_train`` (:func:`fit_standardize`, :func:`fit_min_max`), keep the returned
:class:`Affine` (its parameters are the transform), and apply it to both parts with
:func:`transform_features`; :func:`standardize` does both in one call. Test statistics never leak
into the transform.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_floating, check_real, check_tensor, fail
from ._core import Dataset

__all__ = [
    "Affine",
    "fit_min_max",
    "fit_standardize",
    "flatten",
    "one_hot_columns",
    "scale_pixels",
    "standardize",
    "transform_features",
]


@dataclass(frozen=True, eq=False)
class Affine:
    """The feature transform ``x -> (x - shift) / scale``, with ``shift``/``scale`` broadcasting
    over the trailing (feature) dimensions of ``x``."""

    shift: Tensor
    scale: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale

    def inverse(self, z: Tensor) -> Tensor:
        """Undo the transform: ``z * scale + shift``."""
        return z * self.scale + self.shift


def fit_standardize(x_train: Tensor, *, eps: float = 1e-12) -> Affine:
    """Per-feature mean and standard deviation of the training set, as an :class:`Affine`.

    ``shift = mean_n x[n]``, ``scale = sqrt(mean_n (x[n] - shift)^2)`` (population std, computed
    in float64), with ``scale = 1`` for features whose std is ``<= eps`` (constant pixels).

    Args:
        x_train: float ``(N, *features)``, N >= 1.

    >>> t = fit_standardize(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
    >>> t.shift.tolist(), t.scale.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    >>> t(torch.tensor([[3.0, 6.0]])).tolist()
    [[1.0, 1.0]]

    Reference: Lienen & Hüllermeier (2021), suppl. A.2.5 (statistics of the training data).
    """
    x = _check_rows(x_train).double()
    eps = check_real("eps", eps, low=0.0)
    mean = x.mean(dim=0)
    std = x.std(dim=0, correction=0)
    std = torch.where(std > eps, std, torch.ones_like(std))
    return Affine(mean.to(x_train.dtype), std.to(x_train.dtype))


def fit_min_max(x_train: Tensor) -> Affine:
    """Per-feature ``[min, max]`` of the training set mapped to ``[0, 1]``, as an :class:`Affine`.

    ``shift = min_n x[n]``, ``scale = max_n x[n] - min_n x[n]`` (1 where the feature is constant).

    >>> t = fit_min_max(torch.tensor([[0.0, 2.0], [4.0, 2.0]]))
    >>> t(torch.tensor([[2.0, 2.0]])).tolist()
    [[0.5, 0.0]]
    """
    x = _check_rows(x_train)
    low, high = x.amin(dim=0), x.amax(dim=0)
    span = high - low
    return Affine(low, torch.where(span > 0, span, torch.ones_like(span)))


def scale_pixels(x: Tensor, *, max_value: float = 255.0) -> Tensor:
    """Divide by the largest possible value: ``x / max_value`` (pixels 0..255 to [0, 1]).

    >>> scale_pixels(torch.tensor([0.0, 51.0, 255.0])).tolist()
    [0.0, 0.2, 1.0]
    """
    check_floating("x", x)
    return x / check_real("max_value", max_value, low=0.0, low_open=True)


def flatten(x: Tensor) -> Tensor:
    """Flatten every example: ``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``.

    >>> flatten(torch.zeros(5, 1, 28, 28)).shape
    torch.Size([5, 784])
    """
    check_tensor("x", x)
    if x.dim() < 1:
        raise fail("x", "a tensor with a batch dimension", x)
    return x.reshape(x.shape[0], -1)


def one_hot_columns(x: Tensor, *, categories: Sequence[int]) -> Tensor:
    """One-hot encode every column of an integer table over the same ``categories``.

    Column ``j`` holding ``categories[m]`` sets output feature ``j * M + m`` to 1, ``M =
    len(categories)``; the output is float32 of shape ``(N, D * M)``.

    Args:
        x: integer codes ``(N, D)``.
        categories: the possible codes, in output order.

    >>> one_hot_columns(torch.tensor([[0, 2], [1, 0]]), categories=[0, 1, 2]).tolist()
    [[1.0, 0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]]
    """
    check_tensor("x", x)
    if x.is_floating_point() or x.dim() != 2:
        raise fail("x", "a 2-D integer tensor of category codes", x, kind=TypeError)
    codes = torch.as_tensor(list(categories), dtype=torch.long)
    if codes.numel() == 0 or len(set(codes.tolist())) != codes.numel():
        raise fail("categories", "a non-empty sequence of distinct codes", list(categories))
    matches = x.long().unsqueeze(-1) == codes  # (N, D, M)
    unknown = ~matches.any(dim=-1)
    if bool(unknown.any()):
        bad = int(x[unknown][0])
        raise fail("x", f"codes among {codes.tolist()}", f"!code {bad}")
    return matches.reshape(x.shape[0], -1).float()


def transform_features(dataset: Dataset, transform: Callable[[Tensor], Tensor]) -> Dataset:
    """Apply ``transform`` to ``x_train`` and ``x_test``; labels and metadata are kept.

    >>> from smoothlab.datasets import load_dataset
    >>> transform_features(load_dataset("digits"), flatten).x_train.shape
    torch.Size([1198, 64])
    """
    return dataclasses.replace(
        dataset, x_train=transform(dataset.x_train), x_test=transform(dataset.x_test)
    )


def standardize(dataset: Dataset) -> tuple[Dataset, Affine]:
    """Standardise both parts with the training set's per-feature mean and std.

    Returns the transformed dataset and the :class:`Affine` holding the parameters.

    >>> from smoothlab.datasets import load_dataset
    >>> scaled, params = standardize(load_dataset("digits"))
    >>> round(float(scaled.x_train.mean()), 6), tuple(params.shift.shape)
    (0.0, (1, 8, 8))
    """
    params = fit_standardize(dataset.x_train)
    return transform_features(dataset, params), params


def _check_rows(x_train: Tensor) -> Tensor:
    check_floating("x_train", x_train, min_dim=1)
    if x_train.shape[0] == 0:
        raise fail("x_train", "at least one example", x_train)
    return x_train
