"""The dataset registry (a plain table of frozen dataclasses) and the entry points that use it."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import torch

from .._checks import fail
from ._core import DataFile, Dataset, DatasetInfo, NoisyLabels
from .download import download_file
from .finegrained import FINEGRAINED
from .formats import read_npz_labels
from .loaders import (
    SPLICE_CODES,
    load_cifar,
    load_cifar_n,
    load_digits,
    load_idx_pair,
    load_pmlb,
    load_synthetic_images,
)
from .paths import download_root, find_file, missing_file_error

__all__ = [
    "DATASETS",
    "REGISTRY",
    "get_dataset_info",
    "list_datasets",
    "load_cifar_n_labels",
    "load_dataset",
]

_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_PMLB = "https://github.com/EpistasisLab/pmlb/raw/master/datasets/{0}/{0}.tsv.gz"
_TORONTO = "https://www.cs.toronto.edu/~kriz/"
_CIFAR_N_UPSTREAM = "https://github.com/UCSC-REAL/cifar-10-100n/raw/main/data/"
_IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_FIXED_SPLIT = "no official split: fixed 1/3 test, stratified, torch.Generator seed 0"


def _idx_files(
    folder: str, mirrors: tuple[str, ...], md5s: tuple[str, ...]
) -> tuple[DataFile, ...]:
    return tuple(
        DataFile(
            f"{name}.gz",
            (folder,),
            f"md5:{md5}",
            gunzip=True,
            urls=tuple(m + name + ".gz" for m in mirrors),
        )
        for name, md5 in zip(_IDX_NAMES, md5s, strict=True)
    )


def _pmlb_file(name: str, sha256: str) -> DataFile:
    return DataFile(
        f"{name}.tsv.gz",
        (name, f"pmlb/{name}"),
        f"sha256:{sha256}",
        gunzip=True,
        urls=(_PMLB.format(name),),
    )


def _cifar_n_file(stem: str, sha256: str) -> DataFile:
    how = (
        f"upstream ships it as a Python pickle ({_CIFAR_N_UPSTREAM}{stem}.pt) and smoothlab never "
        f'unpickles; convert a copy you trust once, e.g. `python -c "import numpy as np, torch; '
        f"d = torch.load('{stem}.pt', weights_only=False); "
        f"np.savez('{stem}.npz', **{{k: np.asarray(v) for k, v in d.items()}})\"`, "
        f"and put {stem}.npz in a cifar-n folder"
    )
    return DataFile(
        f"{stem}.npz",
        ("cifar-n", "cifar10n" if "10_" in stem else "cifar100n"),
        f"sha256:{sha256}",
        how_to_get=how,
    )


MNIST_FILES = _idx_files(
    "mnist",
    _MNIST_MIRRORS,
    (
        "6bbc9ace898e44ae57da46a324031adb",
        "a25bea736e30d166cdddb491f175f624",
        "2646ac647ad5339dbf082846283269ea",
        "27ae3e4e09519cfbb04c329615203637",
    ),
)
FASHION_FILES = _idx_files(
    "fashion-mnist",
    _FASHION_MIRRORS,
    (
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "9018921c3c673c538a1fc5bad174d6f9",
        "8181f5470baa50b63fa0f6fddb340f0a",
        "15d484375f8d13e6eb1aabb0c3f46965",
    ),
)
TWONORM_FILE = _pmlb_file(
    "twonorm", "8b6ffbf0465d6791555327dcbd82187ba5d9b8e88a01ecbeea7b56cace075041"
)
SPLICE_FILE = _pmlb_file(
    "splice", "f57132a4b1437271b173b1073000e660f0a2736106037f5b8e67da85285a4a35"
)
CIFAR10_FILE = DataFile(
    "cifar-10-binary.tar.gz",
    ("cifar10", "cifar-10"),
    "md5:c32a1d4ab5d03f1284b67883e8d87530",
    urls=(_TORONTO + "cifar-10-binary.tar.gz",),
)
CIFAR100_FILE = DataFile(
    "cifar-100-binary.tar.gz",
    ("cifar100", "cifar-100"),
    "md5:03b5dce01913d631647c71ecec9e9cb8",
    urls=(_TORONTO + "cifar-100-binary.tar.gz",),
)
CIFAR10N_FILE = _cifar_n_file(
    "CIFAR-10_human", "be0540029bef4278fb52f58861a17d2a78068f9b4329d6f126b354c01dfab2cf"
)
CIFAR100N_FILE = _cifar_n_file(
    "CIFAR-100_human", "fa0fbf6a20eb8f0a2a28ae1bbb2f19a51af46b853d9cfd3ecff0b75537753526"
)

_CIFAR_SOURCE = "Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009"
_CIFAR_N_SOURCE = (
    "Wei et al., Learning with Noisy Labels Revisited: "
    "A Study Using Real-World Human Annotations, ICLR 2022"
)
_CIFAR_LICENSE = "no formal licence; cite the technical report"
_CIFAR_SPLIT = "official: 50000 train / 10000 test"
_CIFAR_N_SPLIT = "official CIFAR split; training labels replaced by the human labels"


def _cifar10n(suffix: str, key: str, what: str) -> DatasetInfo:
    return DatasetInfo(
        f"cifar10n-{suffix}",
        f"CIFAR-10 with CIFAR-10N human labels: {what}",
        10,
        (CIFAR10_FILE, CIFAR10N_FILE),
        load_cifar_n,
        _CIFAR_N_SOURCE,
        "CC BY-NC 4.0 (labels)",
        _CIFAR_N_SPLIT,
        variant=key,
    )


REGISTRY: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        "digits",
        "8x8 handwritten digits bundled with scikit-learn (1797 images, values 0..16)",
        10,
        (),
        load_digits,
        "Alpaydin & Kaynak, UCI Optical Recognition of Handwritten Digits, 1998",
        "CC BY 4.0",
        _FIXED_SPLIT + " (1198 / 599)",
        class_names=tuple(str(d) for d in range(10)),
    ),
    DatasetInfo(
        "mnist",
        "MNIST handwritten digits, 28x28 grey (60000 / 10000)",
        10,
        MNIST_FILES,
        load_idx_pair,
        "LeCun, Bottou, Bengio & Haffner, Gradient-based learning applied to document "
        "recognition, 1998",
        "CC BY-SA 3.0 (as commonly cited; upstream ships no licence file)",
        "official: 60000 train / 10000 test",
        class_names=tuple(str(d) for d in range(10)),
    ),
    DatasetInfo(
        "fashion-mnist",
        "Zalando Fashion-MNIST, 28x28 grey (60000 / 10000)",
        10,
        FASHION_FILES,
        load_idx_pair,
        "Xiao, Rasul & Vollgraf, Fashion-MNIST, arXiv:1708.07747, 2017",
        "MIT",
        "official: 60000 train / 10000 test",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    DatasetInfo(
        "twonorm",
        "Breiman's twonorm, 20 Gaussian features, PMLB copy of the UCI/Delve data (7400)",
        2,
        (TWONORM_FILE,),
        partial(load_pmlb, num_features=20),
        "Breiman, Bias, variance, and arcing classifiers, 1996; via PMLB (Olson et al., 2017)",
        "MIT (PMLB)",
        _FIXED_SPLIT + " (4933 / 2467)",
        class_names=("positive mean", "negative mean"),
    ),
    DatasetInfo(
        "splice",
        "UCI splice junctions, 60 nucleotides one-hot per position (3188, 360 features)",
        3,
        (SPLICE_FILE,),
        partial(load_pmlb, num_features=60, categories=SPLICE_CODES),
        "Towell, Noordewier & Shavlik, UCI Molecular Biology (Splice-junction Gene Sequences); "
        "via PMLB (Olson et al., 2017)",
        "CC BY 4.0",
        _FIXED_SPLIT + " (2125 / 1063)",
        class_names=("EI", "IE", "N"),
    ),
    DatasetInfo(
        "cifar10",
        "CIFAR-10, 32x32 colour, 10 classes (50000 / 10000)",
        10,
        (CIFAR10_FILE,),
        load_cifar,
        _CIFAR_SOURCE,
        _CIFAR_LICENSE,
        _CIFAR_SPLIT,
    ),
    DatasetInfo(
        "cifar100",
        "CIFAR-100, 32x32 colour, 100 fine classes (50000 / 10000)",
        100,
        (CIFAR100_FILE,),
        load_cifar,
        _CIFAR_SOURCE,
        _CIFAR_LICENSE,
        _CIFAR_SPLIT,
    ),
    _cifar10n("aggre", "aggre_label", "majority vote of 3 annotators (9.01 % noise)"),
    _cifar10n("random1", "random_label1", "annotator 1 (17.23 % noise)"),
    _cifar10n("random2", "random_label2", "annotator 2 (18.12 % noise)"),
    _cifar10n("random3", "random_label3", "annotator 3 (17.64 % noise)"),
    _cifar10n(
        "worse", "worse_label", "a wrong label whenever one annotator gave one (40.21 % noise)"
    ),
    DatasetInfo(
        "cifar100n",
        "CIFAR-100 with CIFAR-100N human fine labels (40.20 % noise)",
        100,
        (CIFAR100_FILE, CIFAR100N_FILE),
        load_cifar_n,
        _CIFAR_N_SOURCE,
        "CC BY-NC 4.0 (labels)",
        _CIFAR_N_SPLIT,
        variant="noisy_label",
    ),
    *FINEGRAINED,
    DatasetInfo(
        "cifar10-synthetic",
        "CIFAR-shaped synthetic images, 3x32x32, 10 classes (5000 / 1000): tests and benchmarks",
        10,
        (),
        load_synthetic_images,
        "smoothlab.datasets.synthetic_images (class templates plus Gaussian pixel noise, seed 0)",
        "generated",
        "fixed: the first 5000 draws train, the next 1000 test",
    ),
)
DATASETS: dict[str, DatasetInfo] = {info.name: info for info in REGISTRY}


def list_datasets() -> tuple[str, ...]:
    """The registered dataset names, in table order.

    >>> list_datasets()[:3]
    ('digits', 'mnist', 'fashion-mnist')
    """
    return tuple(DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry row of ``name``; an unknown name is an error listing the valid ones.

    >>> get_dataset_info("splice").num_classes
    3
    """
    if not isinstance(name, str):
        raise fail("name", "a dataset name (str)", f"!{type(name).__name__}", kind=TypeError)
    if name not in DATASETS:
        raise fail("name", "one of " + ", ".join(repr(n) for n in DATASETS), name)
    return DATASETS[name]


def _resolve(
    info: DatasetInfo, file: DataFile, root: str | os.PathLike[str] | None, download: bool
) -> Path:
    path = find_file(file, root)
    if path is not None:
        return path
    if not download:
        raise missing_file_error(info, file, root)
    return download_file(file, download_root(root) / file.folders[0])


def load_dataset(
    name: str, *, root: str | os.PathLike[str] | None = None, download: bool = False
) -> Dataset:
    """Load a registered dataset as tensors.

    Files are looked up under ``root``, ``$SMOOTHLAB_DATA``, ``/usr/share/datasets`` and the user
    cache, in that order (see :mod:`smoothlab.datasets.paths`). With ``download=True`` a missing
    file is fetched from its canonical URL into ``root`` (else ``$SMOOTHLAB_DATA``, else the cache)
    and its checksum verified; otherwise a missing file is a ``FileNotFoundError`` that lists the
    places looked and how to get it.

    Args:
        name: one of :func:`list_datasets`.
        root: a data folder searched first, and the download target.
        download: fetch missing files.

    Returns:
        A :class:`~smoothlab.datasets.Dataset`: float32 features (images ``(N, C, H, W)``, tables
        ``(N, D)``, values as stored), int64 labels, class names and provenance in ``metadata``.

    >>> digits = load_dataset("digits")
    >>> digits
    Dataset('digits', train=(1198, 1, 8, 8), test=(599, 1, 8, 8), classes=10)
    >>> torch.bincount(digits.y_test).tolist()
    [59, 61, 59, 61, 60, 61, 60, 60, 58, 60]
    """
    info = get_dataset_info(name)
    paths = {file.filename: _resolve(info, file, root, download) for file in info.files}
    return info.loader(info, paths)


def load_cifar_n_labels(name: str, *, root: str | os.PathLike[str] | None = None) -> NoisyLabels:
    """The CIFAR-N clean and human noisy training labels of a variant, without the images.

    Args:
        name: a CIFAR-N variant, e.g. ``"cifar10n-aggre"`` or ``"cifar100n"``.
        root: a data folder searched first (then as in :func:`load_dataset`).

    Returns:
        :class:`~smoothlab.datasets.NoisyLabels` with int64 ``clean`` and ``noisy`` of shape
        ``(50000,)`` in the order of the CIFAR training set.

    The noise rate is ``mean_n [noisy_n != clean_n]`` (CIFAR-10N aggre: 9.01 %).

    >>> import numpy as np, pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "cifar-n").mkdir()
    >>> labels = {"clean_label": np.array([0, 1, 2, 3]), "aggre_label": np.array([0, 1, 2, 5])}
    >>> np.savez(root / "cifar-n" / "CIFAR-10_human.npz", **labels)
    >>> load_cifar_n_labels("cifar10n-aggre", root=root).noise_rate
    0.25

    Reference: Wei et al., "Learning with Noisy Labels Revisited: A Study Using Real-World Human
    Annotations", ICLR 2022.
    """
    info = get_dataset_info(name)
    if info.variant is None:
        variants = ", ".join(repr(i.name) for i in REGISTRY if i.variant is not None)
        raise fail("name", f"a CIFAR-N variant ({variants})", name)
    file = info.files[-1]
    path = _resolve(info, file, root, download=False)
    labels = read_npz_labels(path, ["clean_label", info.variant])
    clean, noisy = (torch.from_numpy(labels[key]) for key in ("clean_label", info.variant))
    for key, values in (("clean_label", clean), (info.variant, noisy)):
        if int(values.min()) < 0 or int(values.max()) >= info.num_classes:
            raise fail(
                f"{path}:{key}",
                f"labels in [0, {info.num_classes - 1}]",
                f"!up to {int(values.max())}",
            )
    return NoisyLabels(info.name, clean, noisy, info.num_classes)
