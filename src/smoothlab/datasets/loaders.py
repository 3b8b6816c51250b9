"""One loader per file format: each turns the resolved files of a registry row into a Dataset."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._checks import fail
from ._core import Dataset, DatasetInfo
from .formats import cifar_records, read_idx, read_npz_labels, read_pmlb, read_tar_members
from .preprocess import one_hot_columns
from .split import fixed_split

__all__ = [
    "CIFAR10_ARCHIVE_MEMBERS",
    "CIFAR100_ARCHIVE_MEMBERS",
    "SPLICE_CODES",
    "digits_file",
    "load_cifar",
    "load_cifar_n",
    "load_digits",
    "load_idx_pair",
    "load_pmlb",
    "load_synthetic_images",
]

CIFAR10_ARCHIVE_MEMBERS = (
    *(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
    "cifar-10-batches-bin/test_batch.bin",
    "cifar-10-batches-bin/batches.meta.txt",
)
CIFAR100_ARCHIVE_MEMBERS = (
    "cifar-100-binary/train.bin",
    "cifar-100-binary/test.bin",
    "cifar-100-binary/fine_label_names.txt",
)
# PMLB codes each of splice's 60 nucleotide positions as an integer 0..5.
SPLICE_CODES = tuple(range(6))


def _metadata(info: DatasetInfo, paths: Mapping[str, Path], **extra: str) -> dict[str, str]:
    files = "; ".join(str(path) for path in paths.values()) or "bundled with scikit-learn"
    return {
        "source": info.source,
        "license": info.license,
        "split": info.split,
        "files": files,
        **extra,
    }


def _features(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _labels(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))


def _check_range(path: object, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise fail(str(path), f"labels in [0, {num_classes - 1}]", f"!labels up to {labels.max()}")


def _fixed_split_dataset(
    info: DatasetInfo, x: np.ndarray, y: np.ndarray, metadata: dict[str, str]
) -> Dataset:
    features, labels = _features(x), _labels(y)
    train, test = fixed_split(labels)
    return Dataset(
        name=info.name,
        x_train=features[train],
        y_train=labels[train],
        x_test=features[test],
        y_test=labels[test],
        class_names=info.class_names,
        metadata=metadata,
    )


def digits_file() -> Path | None:
    """scikit-learn's bundled digits file (``datasets/data/digits.csv.gz``: 1797 rows of 64
    pixel values and the label), found without importing scikit-learn, whose import alone costs
    a second of CPU time in every lab worker; None when scikit-learn or the file is absent.

    >>> path = digits_file()
    >>> path is None or path.name == "digits.csv.gz"
    True
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package, does not import it
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images ``(1797, 1, 8, 8)`` and labels: read from :func:`digits_file` as
    ``sklearn.datasets.load_digits`` reads it, or through that function when the file is not
    where this scikit-learn version used to keep it."""
    path = digits_file()
    table = np.loadtxt(path, delimiter=",") if path is not None else None
    if table is None or table.shape != (1797, 65):
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return np.asarray(bunch.images).reshape(-1, 1, 8, 8), np.asarray(bunch.target)
    return table[:, :-1].reshape(-1, 1, 8, 8), table[:, -1].astype(np.int64)


def load_digits(info: DatasetInfo, paths: Mapping[str, Path]) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16) with the fixed split."""
    images, labels = _digits_arrays()
    metadata = _metadata(info, paths, value_range="0..16")
    return _fixed_split_dataset(info, images, labels, metadata)


def load_synthetic_images(info: DatasetInfo, paths: Mapping[str, Path]) -> Dataset:
    """CIFAR-shaped synthetic images (:func:`~smoothlab.datasets.synthetic_images`): 5000 / 1000,
    drawn in one call from a generator seeded with 0, so the two splits share the templates."""
    from .synthetic import synthetic_images

    x, y = synthetic_images(
        6000, num_classes=info.num_classes, generator=torch.Generator().manual_seed(0)
    )
    return Dataset(
        name=info.name,
        x_train=x[:5000],
        y_train=y[:5000],
        x_test=x[5000:],
        y_test=y[5000:],
        class_names=tuple(f"class {k}" for k in range(info.num_classes)),
        metadata=_metadata(info, paths, value_range="0..255", files="none: generated in memory"),
    )


def _idx_images_and_labels(images: Path, labels: Path, num_classes: int) -> tuple[Tensor, Tensor]:
    x = read_idx(images, ndim=3)
    y = read_idx(labels, ndim=1)
    if x.shape[0] != y.shape[0]:
        raise fail(str(labels), f"{x.shape[0]} labels, one per image", f"!{y.shape[0]}")
    _check_range(labels, y, num_classes)
    return _features(x[:, None]), _labels(y)


def load_idx_pair(info: DatasetInfo, paths: Mapping[str, Path]) -> Dataset:
    """MNIST-style idx files: train images, train labels, test images, test labels, in order."""
    train_images, train_labels, test_images, test_labels = (paths[f.filename] for f in info.files)
    x_train, y_train = _idx_images_and_labels(train_images, train_labels, info.num_classes)
    x_test, y_test = _idx_images_and_labels(test_images, test_labels, info.num_classes)
    return Dataset(
        name=info.name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=info.class_names,
        metadata=_metadata(info, paths, value_range="0..255"),
    )


def load_pmlb(
    info: DatasetInfo,
    paths: Mapping[str, Path],
    *,
    num_features: int,
    categories: Sequence[int] | None = None,
) -> Dataset:
    """A PMLB table of ``num_features`` columns with the fixed split (bind the keywords in the
    registry row); with ``categories`` every column holds codes, one-hot encoded (splice)."""
    path = paths[info.files[0].filename]
    x, y = read_pmlb(path, num_features=num_features)
    _check_range(path, y, info.num_classes)
    if categories is not None:
        x = one_hot_columns(torch.from_numpy(x).long(), categories=categories).numpy()
    return _fixed_split_dataset(info, x, y, _metadata(info, paths))


def _cifar_arrays(info: DatasetInfo, path: Path) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test, class names) from a CIFAR binary archive."""
    hundred = info.num_classes == 100
    members = CIFAR100_ARCHIVE_MEMBERS if hundred else CIFAR10_ARCHIVE_MEMBERS
    label_bytes = 2 if hundred else 1
    raw = read_tar_members(path, members)  # one pass over the archive for all of them
    x_train, y_train = cifar_records(path, raw, members[:-2], label_bytes=label_bytes)
    x_test, y_test = cifar_records(path, raw, members[-2:-1], label_bytes=label_bytes)
    text = raw[members[-1]].decode("utf-8", errors="replace")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != info.num_classes:
        raise fail(f"{path}:{members[-1]}", f"{info.num_classes} class names", f"!{len(names)}")
    # The last label byte is the class (CIFAR-100: the fine label, after the coarse one).
    y_train, y_test = y_train[:, -1], y_test[:, -1]
    _check_range(path, np.concatenate([y_train, y_test]), info.num_classes)
    return x_train, y_train, x_test, y_test, np.asarray(names)


def load_cifar(info: DatasetInfo, paths: Mapping[str, Path]) -> Dataset:
    """CIFAR-10 / CIFAR-100 (fine labels) from the canonical binary archive."""
    x_train, y_train, x_test, y_test, names = _cifar_arrays(info, paths[info.files[0].filename])
    return Dataset(
        name=info.name,
        x_train=_features(x_train),
        y_train=_labels(y_train),
        x_test=_features(x_test),
        y_test=_labels(y_test),
        class_names=tuple(str(name) for name in names),
        metadata=_metadata(info, paths, value_range="0..255"),
    )


def load_cifar_n(info: DatasetInfo, paths: Mapping[str, Path]) -> Dataset:
    """CIFAR images with the human noisy training labels ``info.variant`` of CIFAR-N."""
    archive, npz = (paths[f.filename] for f in info.files)
    assert info.variant is not None  # every CIFAR-N row of the registry names its variant
    labels = read_npz_labels(npz, ["clean_label", info.variant])
    x_train, y_train, x_test, y_test, names = _cifar_arrays(info, archive)
    if not np.array_equal(labels["clean_label"], y_train):
        expected = f"clean labels equal to the {len(y_train)} CIFAR training labels, in order"
        raise fail(str(npz), expected, "!labels that differ")
    _check_range(npz, labels[info.variant], info.num_classes)
    return Dataset(
        name=info.name,
        x_train=_features(x_train),
        y_train=_labels(labels[info.variant]),
        x_test=_features(x_test),
        y_test=_labels(y_test),
        class_names=tuple(str(name) for name in names),
        metadata=_metadata(info, paths, value_range="0..255", noisy_labels=info.variant),
        y_train_clean=_labels(y_train),
    )
