"""The real datasets in ../shared/datasets, read through the normal root path (skipped if absent).

Counts and rates are the published facts (../shared/datasets/README.md); checksums come from its
SHA256SUMS and from the decompressed-idx md5s, through the registry's own `verify_file`.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from smoothlab.datasets import (
    REGISTRY,
    Dataset,
    NoisyLabels,
    get_dataset_info,
    load_cifar_n_labels,
    load_dataset,
    verify_file,
)
from smoothlab.datasets.formats import read_pmlb
from smoothlab.datasets.paths import find_file
from smoothlab.datasets.split import fixed_split


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the shared folder may be found: no user cache, no system folder, no env var."""
    monkeypatch.delenv("SMOOTHLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("smoothlab.datasets.paths.SYSTEM_DATA_DIR", tmp_path / "system")


# Decompressing the 47 MB image files once per worker keeps these tests fast.
@functools.cache
def _load(name: str, root: str) -> Dataset:
    return load_dataset(name, root=root)


@functools.cache
def _labels(name: str, root: str) -> NoisyLabels:
    return load_cifar_n_labels(name, root=root)


def test_shared_copies_match_sha256sums(shared_datasets: Path) -> None:
    lines = (shared_datasets / "SHA256SUMS").read_text().split("\n")
    entries = [line.split() for line in lines if line.strip()]
    assert len(entries) == 14
    for digest, name in entries:
        assert hashlib.sha256((shared_datasets / name).read_bytes()).hexdigest() == digest, name


def test_registry_checksums_match_the_shared_files(shared_datasets: Path) -> None:
    """Every registered file present in the shared folder has the registry's checksum."""
    checked = set()
    for info in REGISTRY:
        for file in info.files:
            path = find_file(file, shared_datasets)
            if path is None:
                # the image archives are not shipped: CIFAR, Stanford Dogs, CUB-200-2011
                assert file.filename.endswith((".tar.gz", ".tar", ".tgz")), file.filename
                continue
            if path not in checked:
                verify_file(path, file)
                checked.add(path)
    assert len(checked) == 12


def test_registry_npz_checksums_equal_sha256sums(shared_datasets: Path) -> None:
    sums = dict(
        reversed(line.split())
        for line in (shared_datasets / "SHA256SUMS").read_text().splitlines()
        if line.strip()
    )
    for name in ("cifar10n-aggre", "cifar100n"):
        file = get_dataset_info(name).files[-1]
        assert file.checksum == "sha256:" + sums[f"./cifar-n/{file.filename}"]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_datasets(shared_datasets: Path, name: str) -> None:
    data = _load(name, str(shared_datasets))
    assert data.x_train.shape == (60000, 1, 28, 28)
    assert data.x_test.shape == (10000, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 255.0
    assert data.num_classes == 10 and data.metadata["value_range"] == "0..255"
    train_counts = torch.bincount(data.y_train, minlength=10).tolist()
    test_counts = torch.bincount(data.y_test, minlength=10).tolist()
    if name == "fashion-mnist":
        assert train_counts == [6000] * 10 and test_counts == [1000] * 10
        assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    else:
        assert test_counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        assert train_counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_twonorm(shared_datasets: Path) -> None:
    data = _load("twonorm", str(shared_datasets))
    assert data.x_train.shape == (4933, 20) and data.x_test.shape == (2467, 20)
    labels = torch.cat([data.y_train, data.y_test])
    assert torch.bincount(labels).tolist() == [3703, 3697]
    # Class 0 has mean +a, class 1 mean -a, a = 2/sqrt(20) (as our synthetic generator).
    x = torch.cat([data.x_train, data.x_test]).double()
    a = 2 / math.sqrt(20)
    assert float(x[labels == 0].mean()) == pytest.approx(a, abs=0.01)
    assert float(x[labels == 1].mean()) == pytest.approx(-a, abs=0.01)


def test_splice(shared_datasets: Path) -> None:
    data = _load("splice", str(shared_datasets))
    assert data.x_train.shape == (2125, 360) and data.x_test.shape == (1063, 360)
    labels = torch.cat([data.y_train, data.y_test])
    assert torch.bincount(labels).tolist() == [764, 769, 1655]
    # One-hot per position: every row has exactly one 1 in each block of 6.
    blocks = torch.cat([data.x_train, data.x_test]).reshape(-1, 60, 6)
    assert torch.equal(blocks.sum(-1), torch.ones(3188, 60))
    # The stratified split keeps the class proportions to within one example.
    expected = torch.tensor([764, 769, 1655]) / 3
    assert (torch.bincount(data.y_test) - expected).abs().max() < 1


# The fixed split is pinned: a change in it (or in torch's generator) must fail loudly.
@pytest.mark.parametrize(
    ("name", "digest"), [("twonorm", "96c32e0caaced6f9"), ("splice", "5ef38db76e76e89e")]
)
def test_fixed_split_is_pinned(shared_datasets: Path, name: str, digest: str) -> None:
    file = get_dataset_info(name).files[0]
    path = find_file(file, shared_datasets)
    assert path is not None
    _, y = read_pmlb(path, num_features=20 if name == "twonorm" else 60)
    _, test = fixed_split(torch.from_numpy(y))
    assert hashlib.sha256(test.numpy().tobytes()).hexdigest()[:16] == digest


@pytest.mark.parametrize(
    ("name", "rate"),
    [
        ("cifar10n-aggre", 0.0901),
        ("cifar10n-random1", 0.1723),
        ("cifar10n-random2", 0.1812),
        ("cifar10n-random3", 0.1764),
        ("cifar10n-worse", 0.4021),
        ("cifar100n", 0.4020),
    ],
)
def test_cifar_n_noise_rates(shared_datasets: Path, name: str, rate: float) -> None:
    labels = _labels(name, str(shared_datasets))
    assert labels.clean.shape == labels.noisy.shape == (50000,)
    assert labels.clean.dtype == torch.int64
    assert round(labels.noise_rate, 4) == rate
    per_class = 50000 // labels.num_classes  # the CIFAR training set is balanced
    assert torch.bincount(labels.clean).tolist() == [per_class] * labels.num_classes


def test_cifar100n_coarse_labels_are_in_the_file(shared_datasets: Path) -> None:
    with np.load(shared_datasets / "cifar-n" / "CIFAR-100_human.npz", allow_pickle=False) as f:
        assert f["clean_coarse_label"].max() == 19


def test_cifar_images_are_not_shipped_and_the_error_says_how_to_get_them(
    shared_datasets: Path,
) -> None:
    with pytest.raises(FileNotFoundError, match=r"cifar-10-binary\.tar\.gz") as error:
        load_dataset("cifar10n-aggre", root=shared_datasets)
    assert "download=True" in str(error.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in str(error.value)


def test_env_var_reaches_the_same_files(
    shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMOOTHLAB_DATA", str(shared_datasets))
    data = load_dataset("twonorm")
    reference = _load("twonorm", str(shared_datasets))
    assert torch.equal(data.x_test, reference.x_test)
    assert str(shared_datasets / "pmlb" / "twonorm" / "twonorm.tsv.gz") in data.metadata["files"]
