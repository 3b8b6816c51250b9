"""Datasets as tensors: a registry of real datasets, loaders, splits, preprocessing, toy data.

``load_dataset(name)`` returns a :class:`Dataset` (float32 features, int64 labels, class names,
provenance). ``digits`` needs nothing but scikit-learn; the other datasets read their canonical
files from a data root (``root=``, ``$SMOOTHLAB_DATA``, ``/usr/share/datasets``, the user cache;
see :mod:`smoothlab.datasets.paths`) or fetch them with ``download=True``. Nothing is unpickled.
"""

from ._core import DataFile, Dataset, DatasetInfo, NoisyLabels
from .download import DownloadError, download_file, file_checksum, verify_file
from .paths import ENV_VAR, cache_dir, data_roots
from .preprocess import (
    Affine,
    fit_min_max,
    fit_standardize,
    flatten,
    one_hot_columns,
    scale_pixels,
    standardize,
    transform_features,
)
from .registry import (
    DATASETS,
    REGISTRY,
    get_dataset_info,
    list_datasets,
    load_cifar_n_labels,
    load_dataset,
)
from .split import FIXED_SPLIT_SEED, FIXED_TEST_FRACTION, split_indices, train_val_split
from .synthetic import gaussian_mixture, synthetic_images, two_moons, twonorm

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "FIXED_SPLIT_SEED",
    "FIXED_TEST_FRACTION",
    "REGISTRY",
    "Affine",
    "DataFile",
    "Dataset",
    "DatasetInfo",
    "DownloadError",
    "NoisyLabels",
    "cache_dir",
    "data_roots",
    "download_file",
    "file_checksum",
    "fit_min_max",
    "fit_standardize",
    "flatten",
    "gaussian_mixture",
    "get_dataset_info",
    "list_datasets",
    "load_cifar_n_labels",
    "load_dataset",
    "one_hot_columns",
    "scale_pixels",
    "split_indices",
    "standardize",
    "synthetic_images",
    "train_val_split",
    "transform_features",
    "two_moons",
    "twonorm",
    "verify_file",
]
