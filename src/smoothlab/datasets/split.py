"""Stratified random splits: validation sets, and the fixed test split of datasets without one.

Datasets that ship without a test set (digits, twonorm, splice) are split once, the same way
everywhere: :func:`split_indices` with ``fraction = 1/3`` held out for testing, stratified by class,
drawn from ``torch.Generator().manual_seed(FIXED_SPLIT_SEED)``. The tests pin the resulting counts
and a digest of the test indices, so a change in the split cannot go unnoticed.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from .._checks import check_generator, check_real, check_tensor, fail
from ..noise.corrupt import _largest_remainder
from ._core import Dataset

__all__ = [
    "FIXED_SPLIT_SEED",
    "FIXED_TEST_FRACTION",
    "fixed_split",
    "split_indices",
    "train_val_split",
]

FIXED_SPLIT_SEED = 0
FIXED_TEST_FRACTION = 1 / 3


def split_indices(
    labels: Tensor, fraction: float, *, generator: torch.Generator, stratify: bool = True
) -> tuple[Tensor, Tensor]:
    """Split ``range(N)`` into kept and held-out indices, a ``fraction`` of them held out.

    With ``stratify=True`` class ``c`` with ``n_c`` examples gives ``floor(fraction * n_c)`` or one
    more to the held-out part, the extra ones going to the largest remainders so that the total is
    ``round(fraction * N)`` exactly; which examples are chosen is a uniform random draw per class.
    Without stratification a uniform random subset of ``round(fraction * N)`` is held out.

    Args:
        labels: int64 class indices, shape ``(N,)``.
        fraction: the held-out share, in (0, 1).
        generator: the source of randomness (required: a split must be reproducible).
        stratify: keep the class proportions in both parts.

    Returns:
        ``(kept, held_out)``: sorted int64 index tensors partitioning ``range(N)``.

    >>> labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    >>> kept, held = split_indices(labels, 0.5, generator=torch.Generator().manual_seed(0))
    >>> torch.bincount(labels[held]).tolist(), len(kept)
    ([2, 3], 5)
    """
    check_tensor("labels", labels)
    fraction = check_real("fraction", fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    check_generator(generator)
    total = math.floor(fraction * labels.numel() + 0.5)
    if not 0 < total < labels.numel():
        raise fail(
            "fraction", f"such that both parts of {labels.numel()} examples are non-empty", fraction
        )
    if not stratify:
        held = torch.randperm(labels.numel(), generator=generator)[:total]
    else:
        counts = _largest_remainder(fraction * torch.bincount(labels).double(), total)
        parts = []
        for cls, count in enumerate(counts.tolist()):
            members = torch.nonzero(labels == cls).flatten()
            parts.append(members[torch.randperm(members.numel(), generator=generator)[:count]])
        held = torch.cat(parts)
    mask = torch.zeros(labels.numel(), dtype=torch.bool)
    mask[held] = True
    return torch.nonzero(~mask).flatten(), torch.nonzero(mask).flatten()


def fixed_split(labels: Tensor) -> tuple[Tensor, Tensor]:
    """The documented train/test split for datasets without one: 1/3 test, stratified, seed 0.

    >>> train, test = fixed_split(torch.tensor([0, 1, 0, 1, 0, 1]))
    >>> len(train), len(test)
    (4, 2)
    """
    generator = torch.Generator().manual_seed(FIXED_SPLIT_SEED)
    return split_indices(labels, FIXED_TEST_FRACTION, generator=generator, stratify=True)


def train_val_split(
    dataset: Dataset, fraction: float, *, generator: torch.Generator, stratify: bool = True
) -> Dataset:
    """Hold out a ``fraction`` of the training set as a validation set, in place of the test set.

    The returned dataset trains on the rest of the training set and its ``x_test``/``y_test`` are
    the validation examples (with the *training* labels, noisy ones for a noisy variant), so code
    that tunes on ``dataset.x_test`` tunes on validation data; report on the original test set.
    Stratification follows ``y_train``. See :func:`split_indices` for the counts.

    Args:
        dataset: the dataset to split.
        fraction: the validation share of the training set, in (0, 1).
        generator: the source of randomness.
        stratify: keep the class proportions.

    Returns:
        A :class:`~smoothlab.datasets.Dataset` with ``metadata["test_set"]`` describing the split.

    >>> from smoothlab.datasets import load_dataset
    >>> digits = load_dataset("digits")
    >>> tuning = train_val_split(digits, 0.2, generator=torch.Generator().manual_seed(0))
    >>> tuple(tuning.x_train.shape), tuple(tuning.x_test.shape)
    ((958, 1, 8, 8), (240, 1, 8, 8))
    """
    kept, held = split_indices(dataset.y_train, fraction, generator=generator, stratify=stratify)
    clean = dataset.y_train_clean
    note = f"validation: {fraction:g} of the training set, {'stratified' if stratify else 'random'}"
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[kept],
        y_train=dataset.y_train[kept],
        x_test=dataset.x_train[held],
        y_test=dataset.y_train[held],
        y_train_clean=None if clean is None else clean[kept],
        metadata={**dataset.metadata, "test_set": note},
    )
