"""Human label noise as noise kinds of the lab: the CIFAR-N label sets (Wei et al., ICLR 2022).

A human kind replaces the training labels of ``data.dataset`` (CIFAR-10 or CIFAR-100) with one
of CIFAR-N's human annotations, so one config compares methods across label sets as it does
across synthetic kinds, and the run keeps the clean labels: its realised noise rate, the true
transition of loss correction (:mod:`smoothlab.lab.plan.methods.baselines`) and its noisy-example
report all see the human noise. A label set is as published: it has no rate, so
``noise.rates`` must be ``[0]`` beside a human kind. The label files are read with
:func:`smoothlab.datasets.load_cifar_n_labels` from ``data.root`` (``cifar-n/`` inside it);
their clean labels must be the dataset's training labels, in order.

>>> import numpy as np, pathlib, tempfile
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "cifar-n").mkdir()
>>> files = {"clean_label": np.array([0, 1, 2, 3]), "worse_label": np.array([0, 1, 5, 3])}
>>> np.savez(root / "cifar-n" / "CIFAR-10_human.npz", **files)
>>> human_labels("cifar10n:worse", str(root), torch.tensor([0, 1, 2, 3]))
tensor([0, 1, 5, 3])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from smoothlab.lab.plan.schema import Config, ConfigError

__all__ = ["HUMAN_NOISE", "HumanNoise", "check_human_noise", "human_labels"]


@dataclass(frozen=True)
class HumanNoise:
    """One human noise kind: its name, the CIFAR-N variant (a dataset name of
    :mod:`smoothlab.datasets`) whose noisy labels it uses, its class count, a description."""

    name: str
    variant: str
    num_classes: int
    description: str


HUMAN_NOISE: dict[str, HumanNoise] = {
    row.name: row
    for row in (
        HumanNoise("cifar10n:aggre", "cifar10n-aggre", 10, "CIFAR-10N majority vote (9.01 %)"),
        HumanNoise("cifar10n:random1", "cifar10n-random1", 10, "CIFAR-10N annotator 1 (17.23 %)"),
        HumanNoise("cifar10n:random2", "cifar10n-random2", 10, "CIFAR-10N annotator 2 (18.12 %)"),
        HumanNoise("cifar10n:random3", "cifar10n-random3", 10, "CIFAR-10N annotator 3 (17.64 %)"),
        HumanNoise("cifar10n:worse", "cifar10n-worse", 10, "CIFAR-10N worst of 3 (40.21 %)"),
        HumanNoise("cifar100n:fine", "cifar100n", 100, "CIFAR-100N fine labels (40.20 %)"),
    )
}


def check_human_noise(config: Config, num_classes: int) -> None:
    """A human kind needs rates ``[0]`` and a dataset with its class count (ConfigError)."""
    human = [HUMAN_NOISE[k] for k in config.noise.kinds if k in HUMAN_NOISE]
    if not human:
        return
    if list(config.noise.rates) != [0.0]:
        raise ConfigError(
            f"`noise.rates` must be [0] with the human noise kind `{human[0].name}` "
            f"(a label set as published has no rate), got {list(config.noise.rates)}"
        )
    for row in human:
        if row.num_classes != num_classes:
            raise ConfigError(
                f"`noise.kinds` has `{row.name}`, which needs {row.num_classes} classes, "
                f"but data.dataset `{config.data.dataset}` has {num_classes}"
            )


def human_labels(kind: str, root: str, clean: Tensor) -> Tensor:
    """The human labels of ``kind`` for a training set whose labels are ``clean`` (all of it, in
    the file's order); ValueError when the file's clean labels are not ``clean``."""
    from smoothlab.datasets import load_cifar_n_labels

    labels = load_cifar_n_labels(HUMAN_NOISE[kind].variant, root=root or None)
    if not torch.equal(labels.clean, clean.to(labels.clean.dtype)):
        raise ValueError(
            f"`{kind}` labels must have clean labels equal to the dataset's {len(clean)} "
            f"training labels, in order, got {len(labels.clean)} that differ"
        )
    return labels.noisy
