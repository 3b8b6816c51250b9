"""The data of one run: load, subsample, corrupt the training labels, split, standardise.

Order matters and follows the noisy-label literature: labels are corrupted on the whole training
set first, then a validation split is held out from it (so validation labels are noisy too, as
they would be in practice), and features are standardised with the statistics of the remaining
training part only. The test set is always clean.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from smoothlab.lab.plan.grid import RunConfig
from smoothlab.lab.plan.human_noise import HUMAN_NOISE, human_labels

if TYPE_CHECKING:
    from smoothlab.datasets import Affine, Dataset

__all__ = ["RunData", "load_cached", "prepare_data"]


@dataclass(frozen=True, eq=False)
class RunData:
    """Tensors of one run; ``y_train`` holds the (possibly noisy) labels the model sees."""

    x_train: Tensor
    y_train: Tensor
    y_train_clean: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    realised_noise_rate: float
    unscale: Callable[[Tensor], Tensor]  # standardised features back to the dataset's values


@functools.lru_cache(maxsize=2)
def load_cached(name: str, root: str) -> Dataset:
    """Load a dataset once per process (workers run many runs on the same data)."""
    from smoothlab.datasets import load_dataset

    return load_dataset(name, root=root or None)


def _subset(x: Tensor, y: Tensor, size: int, seed: int) -> tuple[Tensor, Tensor]:
    if size <= 0 or size >= len(y):
        return x, y
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:size]
    return x[keep], y[keep]


def _fit_scaling(kind: str, x_train: Tensor) -> Affine:
    """The feature transform fitted on the training part: ``standardize`` or ``center``."""
    from smoothlab.datasets import Affine, fit_standardize

    if kind == "standardize":
        return fit_standardize(x_train)
    mean = x_train.mean(dim=0)
    return Affine(mean, torch.full_like(mean, float(x_train.abs().max().clamp_min(1e-12))))


def prepare_data(run: RunConfig, data_seed: int) -> RunData:
    """Build the run's data; every draw comes from a generator seeded with ``data_seed``."""
    from smoothlab.datasets import split_indices
    from smoothlab.noise import noise_kind, realised_noise_rate

    dataset = load_cached(run.data.dataset, run.data.root)
    num_classes = dataset.num_classes
    # Subsets are fixed per dataset (seed 0), so every run of a grid trains on the same examples.
    x_all, clean = _subset(dataset.x_train, dataset.y_train, run.data.train_subset, 0)
    x_test, y_test = _subset(dataset.x_test, dataset.y_test, run.data.test_subset, 0)
    generator = torch.Generator().manual_seed(data_seed)
    noisy = clean
    if run.noise_kind in HUMAN_NOISE:  # a CIFAR-N label set: the same subset of its labels
        human = human_labels(run.noise_kind, run.data.root, dataset.y_train)
        noisy = _subset(human, human, run.data.train_subset, 0)[1]
    elif run.noise_kind != "none":  # the clean data: any kind at rate 0
        noisy = noise_kind(run.noise_kind).build(
            clean,
            run.noise_rate,
            num_classes=num_classes,
            features=x_all,
            generator=generator,
            exact=run.exact_noise,
        )
    if run.data.val_fraction > 0:
        train, val = split_indices(noisy, run.data.val_fraction, generator=generator)
    else:
        train, val = torch.arange(len(noisy)), torch.arange(0)
    scale = _fit_scaling(run.data.scaling, x_all[train].float())
    return RunData(
        x_train=scale(x_all[train].float()),
        y_train=noisy[train],
        y_train_clean=clean[train],
        x_val=scale(x_all[val].float()),
        y_val=noisy[val],
        x_test=scale(x_test.float()),
        y_test=y_test,
        num_classes=num_classes,
        realised_noise_rate=realised_noise_rate(clean[train], noisy[train]),
        unscale=scale.inverse,
    )
