"""The record types of the dataset registry: files, dataset descriptions, loaded data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

__all__ = ["DataFile", "Dataset", "DatasetInfo", "Loader", "NoisyLabels"]


@dataclass(frozen=True)
class DataFile:
    """One file a dataset is read from, where it lives under a data root and where it comes from.

    Attributes:
        filename: the file's name, e.g. ``"train-images-idx3-ubyte.gz"``.
        folders: sub-folders of a data root that may hold it, tried in order; downloads go to the
            first (``"mnist"``, or ``"twonorm"`` then ``"pmlb/twonorm"``).
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"``.
        gunzip: the checksum is of the *decompressed* bytes (gzip wrappers differ between mirrors,
            the content does not).
        urls: canonical sources, tried in order; empty when the file cannot be fetched as is.
        how_to_get: what to do instead when there is no url (shown in the missing-file error).
    """

    filename: str
    folders: tuple[str, ...]
    checksum: str
    gunzip: bool = False
    urls: tuple[str, ...] = ()
    how_to_get: str = ""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: train and test tensors, class names and provenance.

    Features are float32 with values as stored in the source (pixels 0..255, digits 0..16; scale
    them with :mod:`smoothlab.datasets.preprocess`); images are ``(N, C, H, W)``, tables ``(N, D)``.
    Labels are int64 class indices ``(N,)``. For a noisy-label variant (CIFAR-N) ``y_train`` holds
    the noisy labels and ``y_train_clean`` the original ones; otherwise ``y_train_clean`` is None.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    class_names: tuple[str, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)
    y_train_clean: Tensor | None = None

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(class_names)``."""
        return len(self.class_names)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.num_classes})"
        )


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    """Human noisy labels for the CIFAR training set (CIFAR-10N / CIFAR-100N), clean alongside.

    ``clean`` and ``noisy`` are int64 tensors of shape ``(50000,)`` in the order of the canonical
    CIFAR training set.
    """

    name: str
    clean: Tensor
    noisy: Tensor
    num_classes: int

    @property
    def noise_rate(self) -> float:
        """The fraction of training labels that differ from the clean ones."""
        return float((self.clean != self.noisy).double().mean())


Loader = Callable[["DatasetInfo", Mapping[str, Path]], Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    """One row of the dataset registry.

    ``loader(info, paths)`` builds the :class:`Dataset` from the resolved paths of ``files``
    (keyed by file name). ``class_names`` is empty where the names are read from the files
    (CIFAR). ``split`` documents the train/test split; ``variant`` names the noisy-label array of
    a CIFAR-N variant.
    """

    name: str
    description: str
    num_classes: int
    files: tuple[DataFile, ...]
    loader: Loader
    source: str
    license: str
    split: str
    class_names: tuple[str, ...] = ()
    variant: str | None = None
