"""Registry contract, file lookup, digits, splits, preprocessing and the synthetic generators."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smoothlab.datasets import (
    DATASETS,
    REGISTRY,
    Dataset,
    cache_dir,
    data_roots,
    fit_min_max,
    fit_standardize,
    flatten,
    gaussian_mixture,
    get_dataset_info,
    list_datasets,
    load_dataset,
    one_hot_columns,
    scale_pixels,
    split_indices,
    standardize,
    synthetic_images,
    train_val_split,
    two_moons,
    twonorm,
)
from smoothlab.datasets.paths import download_root
from smoothlab.datasets.split import fixed_split

from reference import Z5

NAMES = (
    "digits", "mnist", "fashion-mnist", "twonorm", "splice", "cifar10", "cifar100",
    "cifar10n-aggre", "cifar10n-random1", "cifar10n-random2", "cifar10n-random3",
    "cifar10n-worse", "cifar100n", "stanford-dogs", "cub-200-2011", "cifar10-synthetic",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SMOOTHLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("smoothlab.datasets.paths.SYSTEM_DATA_DIR", tmp_path / "system")


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- registry --------------------------------------------------------------------------------


def test_the_registry_holds_the_issue_names() -> None:
    assert list_datasets() == NAMES == tuple(DATASETS)


@pytest.mark.parametrize("info", REGISTRY, ids=lambda info: info.name)
def test_registry_contract(info) -> None:
    assert info.num_classes in (2, 3, 10, 100, 120, 200)
    assert not info.class_names or len(info.class_names) == info.num_classes
    assert info.description and info.source and info.license and info.split
    assert (info.variant is not None) == (
        info.name.startswith("cifar10n") or info.name == "cifar100n"
    )
    for file in info.files:
        algorithm, _, digest = file.checksum.partition(":")
        assert len(digest) == {"md5": 32, "sha256": 64}[algorithm]
        assert re.fullmatch("[0-9a-f]+", digest)
        assert file.folders and all(not f.startswith("/") for f in file.folders)
        assert file.urls or "never unpickles" in file.how_to_get
        assert all(
            u.startswith(("https://", "http://")) and u.endswith(file.filename) for u in file.urls
        )
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "x"  # type: ignore[misc]


def test_unknown_name_lists_the_valid_ones() -> None:
    valid = ", ".join(repr(n) for n in NAMES)
    with pytest.raises(ValueError, match=re.escape(f"`name` must be one of {valid}, got 'mnits'")):
        load_dataset("mnits")


def test_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="`name` must be a dataset name \\(str\\), got int"):
        get_dataset_info(3)  # type: ignore[arg-type]


# ---- where files are looked up ---------------------------------------------------------------


def write_table(path: Path, label: int) -> None:
    header = "\t".join([*(f"A{i}" for i in range(1, 21)), "target"])
    rows = ["\t".join(["0.5"] * 20 + [str(label)])] * 6
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join([header, *rows]) + "\n").encode()))


def test_missing_file_names_every_place_and_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMOOTHLAB_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("twonorm", root=tmp_path / "root")
    message = str(error.value)
    places = [
        tmp_path / "root/twonorm/twonorm.tsv.gz",
        tmp_path / "root/twonorm/twonorm.tsv",
        tmp_path / "root/pmlb/twonorm/twonorm.tsv.gz",
        tmp_path / "env/twonorm/twonorm.tsv.gz",
        tmp_path / "system/pmlb/twonorm/twonorm.tsv.gz",
        tmp_path / "cache/smoothlab/pmlb/twonorm/twonorm.tsv",
    ]
    assert message.startswith("dataset 'twonorm' needs twonorm.tsv.gz, which is in none of:")
    assert all(f"\n  {place}\n" in message for place in places)
    assert "load_dataset('twonorm', download=True)" in message
    assert (
        "https://github.com/EpistasisLab/pmlb/raw/master/datasets/twonorm/twonorm.tsv.gz" in message
    )
    assert "$SMOOTHLAB_DATA" in message


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOOTHLAB_DATA", str(tmp_path / "env"))
    places = [
        "cache/smoothlab/twonorm",
        "system/twonorm",
        "env/pmlb/twonorm",
        "env/twonorm",
        "root/pmlb/twonorm",
    ]
    for label, place in enumerate(places):
        write_table(tmp_path / place / "twonorm.tsv.gz", label % 2)
        data = load_dataset("twonorm", root=tmp_path / "root")
        assert data.metadata["files"] == str(tmp_path / place / "twonorm.tsv.gz")


def test_data_roots_and_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOOTHLAB_DATA", "/env")
    assert data_roots("/r") == [
        Path("/r"),
        Path("/env"),
        tmp_path / "system",
        tmp_path / "cache/smoothlab",
    ]
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec ignores relative paths
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home/.cache/smoothlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home/.cache/smoothlab"


def test_download_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert download_root() == tmp_path / "cache/smoothlab"
    monkeypatch.setenv("SMOOTHLAB_DATA", "/env")
    assert download_root() == Path("/env") and download_root("/r") == Path("/r")


# ---- digits (bundled with scikit-learn) ------------------------------------------------------


def test_digits() -> None:
    data = load_dataset("digits")
    assert data.x_train.shape == (1198, 1, 8, 8) and data.x_test.shape == (599, 1, 8, 8)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert float(data.x_train.max()) == 16.0 and data.class_names[3] == "3"
    assert data.metadata["value_range"] == "0..16" and "seed 0" in data.metadata["split"]
    again = load_dataset("digits")
    assert torch.equal(data.x_test, again.x_test) and torch.equal(data.y_train, again.y_train)
    digest = hashlib.sha256(data.y_test.numpy().tobytes() + data.x_test.numpy().tobytes())
    assert digest.hexdigest()[:16] == "f0573fd26dca25e9"


def test_digits_read_directly_equal_scikit_learns_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    from smoothlab.datasets import loaders

    images, labels = loaders._digits_arrays()
    bunch = sklearn_digits()
    assert np.array_equal(images, bunch.images.reshape(-1, 1, 8, 8))
    assert np.array_equal(labels, bunch.target) and labels.dtype == np.int64
    monkeypatch.setattr(loaders, "digits_file", lambda: None)  # a layout without the file
    fallback = loaders._digits_arrays()
    assert np.array_equal(fallback[0], images) and np.array_equal(fallback[1], labels)


def test_digits_load_without_importing_scikit_learn() -> None:
    code = (
        "import sys; from smoothlab.datasets import load_dataset; "
        "assert load_dataset('digits').x_train.shape[0] == 1198; "
        "print('sklearn' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# ---- splits ----------------------------------------------------------------------------------


@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**31),
    stratify=st.booleans(),
)
def test_split_indices_partition(
    counts: list[int], fraction: float, seed: int, stratify: bool
) -> None:
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    labels = labels[torch.randperm(labels.numel(), generator=g(seed))]
    n = labels.numel()
    total = math.floor(fraction * n + 0.5)
    if not 0 < total < n:
        return
    kept, held = split_indices(labels, fraction, generator=g(seed), stratify=stratify)
    assert torch.equal(torch.sort(torch.cat([kept, held])).values, torch.arange(n))
    assert torch.equal(kept, kept.sort().values) and held.numel() == total
    if stratify:
        got = torch.bincount(labels[held], minlength=len(counts)).double()
        quota = fraction * torch.tensor(counts).double()
        assert bool(((got >= quota.floor()) & (got <= quota.ceil())).all())
    again = split_indices(labels, fraction, generator=g(seed), stratify=stratify)
    assert torch.equal(held, again[1])


def test_split_is_uniform_within_a_class() -> None:
    """Each of 10 examples is held out with probability 0.3 (5 standard errors)."""
    labels, trials = torch.zeros(10, dtype=torch.long), 3000
    generator = g(1)
    hits = torch.zeros(10)
    for _ in range(trials):
        hits[split_indices(labels, 0.3, generator=generator)[1]] += 1
    half_width = Z5 * math.sqrt(0.3 * 0.7 / trials)
    assert float((hits / trials - 0.3).abs().max()) < half_width


def test_fixed_split_is_one_third_stratified() -> None:
    labels = torch.tensor([0] * 30 + [1] * 60)
    train, test = fixed_split(labels)
    assert torch.bincount(labels[test]).tolist() == [10, 20] and len(train) == 60


@pytest.mark.parametrize(
    ("fraction", "message"),
    [
        (0.0, "`fraction` must be > 0.0, got 0.0"),
        (1.0, "`fraction` must be < 1.0, got 1.0"),
        (-0.5, "`fraction` must be > 0.0, got -0.5"),
        (1.5, "`fraction` must be < 1.0, got 1.5"),
        (0.01, "`fraction` must be such that both parts of 5 examples are non-empty, got 0.01"),
        (0.95, "`fraction` must be such that both parts of 5 examples are non-empty, got 0.95"),
    ],
)
def test_fraction_outside_the_open_interval(fraction: float, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        split_indices(torch.zeros(5, dtype=torch.long), fraction, generator=g())


def test_split_needs_a_generator() -> None:
    with pytest.raises(TypeError, match=r"`generator` must be a torch\.Generator or None, got int"):
        split_indices(torch.zeros(5, dtype=torch.long), 0.5, generator=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`labels` must be a torch\.Tensor, got list"):
        split_indices([0, 1], 0.5, generator=g())  # type: ignore[arg-type]


def tiny_dataset(clean: bool = False) -> Dataset:
    x = torch.arange(40.0).reshape(20, 2)
    y = torch.tensor([0, 1] * 10)
    return Dataset(
        "tiny", x, y, x[:4] + 100, y[:4], ("a", "b"), {"source": "s"}, (1 - y) if clean else None
    )


def test_train_val_split_replaces_the_test_set() -> None:
    data = tiny_dataset(clean=True)
    split = train_val_split(data, 0.25, generator=g())
    assert split.x_train.shape == (15, 2) and split.x_test.shape == (5, 2)
    rows = {tuple(r) for r in data.x_train.tolist()}
    assert {tuple(r) for r in split.x_train.tolist()} | {
        tuple(r) for r in split.x_test.tolist()
    } == rows
    assert torch.equal(split.y_test, (split.x_test[:, 0] / 2 % 2).long())  # labels follow rows
    assert split.y_train_clean is not None and torch.equal(split.y_train_clean, 1 - split.y_train)
    assert split.metadata["test_set"] == "validation: 0.25 of the training set, stratified"
    assert (
        split.metadata["source"] == "s" and torch.bincount(split.y_test).tolist() == [2, 3]
    ) or [3, 2]


def test_train_val_split_fraction_message() -> None:
    with pytest.raises(ValueError, match=re.escape("`fraction` must be < 1.0, got 1")):
        train_val_split(tiny_dataset(), 1, generator=g())


# ---- preprocessing ---------------------------------------------------------------------------


def test_fit_standardize_against_float64_loop() -> None:
    x = torch.randn(50, 3, generator=g()) * torch.tensor([1.0, 5.0, 0.0]) + 2
    params = fit_standardize(x)
    for j in range(3):
        column = [float(v) for v in x[:, j]]
        mean = sum(column) / len(column)
        std = math.sqrt(sum((v - mean) ** 2 for v in column) / len(column))
        assert float(params.shift[j]) == pytest.approx(mean, abs=1e-5)
        assert float(params.scale[j]) == pytest.approx(std if std > 1e-12 else 1.0, rel=1e-5)
    z = params(x)
    assert torch.allclose(z[:, :2].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(params.inverse(z), x, atol=1e-5)


def test_standardize_uses_training_statistics_only() -> None:
    data = tiny_dataset()
    changed = dataclasses.replace(data, x_test=data.x_test * 1000)
    (_, first), (_, second) = standardize(data), standardize(changed)
    assert torch.equal(first.shift, second.shift) and torch.equal(first.scale, second.scale)
    scaled, params = standardize(data)
    assert torch.allclose(scaled.x_test, (data.x_test - params.shift) / params.scale)
    assert torch.equal(scaled.y_test, data.y_test)


def test_fit_min_max() -> None:
    x = torch.tensor([[0.0, 3.0, 1.0], [10.0, -1.0, 1.0], [5.0, 1.0, 1.0]])
    params = fit_min_max(x)
    assert params(x).tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]


def test_scale_pixels_and_flatten() -> None:
    assert scale_pixels(torch.tensor([255.0, 0.0])).tolist() == [1.0, 0.0]
    assert scale_pixels(torch.tensor([16.0]), max_value=16).tolist() == [1.0]
    assert flatten(torch.zeros(2, 3, 4, 5)).shape == (2, 60)


def test_one_hot_columns_against_a_loop() -> None:
    x = torch.randint(0, 4, (7, 5), generator=g())
    categories = [3, 0, 2, 1]
    got = one_hot_columns(x, categories=categories)
    for n in range(7):
        for j in range(5):
            for m, code in enumerate(categories):
                assert got[n, 4 * j + m] == float(int(x[n, j]) == code)


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (lambda: fit_standardize(torch.zeros(0, 2)), ValueError, "`x_train` must be at least one example, got a torch.float32 tensor of shape (0, 2)"),
        (lambda: fit_standardize(torch.zeros(3, dtype=torch.long)), TypeError, "`x_train` must be a floating-point tensor, got a torch.int64 tensor of shape (3,)"),
        (lambda: fit_min_max(torch.tensor(1.0)), ValueError, "`x_train` must be a tensor with at least 1 dimensions"),
        (lambda: scale_pixels(torch.ones(2), max_value=0), ValueError, "`max_value` must be > 0.0, got 0"),
        (lambda: flatten(torch.tensor(1.0)), ValueError, "`x` must be a tensor with a batch dimension"),
        (lambda: one_hot_columns(torch.zeros(2, 2), categories=[0]), TypeError, "`x` must be a 2-D integer tensor of category codes"),
        (lambda: one_hot_columns(torch.zeros(2, 2, dtype=torch.long), categories=[0, 0]), ValueError, "`categories` must be a non-empty sequence of distinct codes, got [0, 0]"),
        (lambda: one_hot_columns(torch.tensor([[0, 5]]), categories=[0, 1]), ValueError, "`x` must be codes among [0, 1], got code 5"),
    ],
)  # fmt: skip
def test_preprocessing_messages(call, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call()


# ---- synthetic generators --------------------------------------------------------------------


def test_twonorm_statistics() -> None:
    n = 40000
    x, y = twonorm(n, generator=g(3))
    a = 2 / math.sqrt(20)
    counts = torch.bincount(y).double()
    assert abs(float(counts[0]) / n - 0.5) < Z5 * math.sqrt(0.25 / n)
    for cls, sign in ((0, 1.0), (1, -1.0)):
        part = x[y == cls].double()
        half_width = Z5 / math.sqrt(part.shape[0])
        assert float((part.mean(0) - sign * a).abs().max()) < half_width
        cov = torch.cov(part.T)
        assert float((cov - torch.eye(20)).abs().max()) < 0.06
    bayes_error = float(((x.sum(1) < 0).long() != y).double().mean())
    p = 0.5 * math.erfc(2 / math.sqrt(2))  # Phi(-2)
    assert abs(bayes_error - p) < Z5 * math.sqrt(p * (1 - p) / n)


def test_generators_are_reproducible() -> None:
    for make in (lambda s: twonorm(50, generator=g(s)), lambda s: two_moons(50, generator=g(s))):
        (x1, y1), (x2, y2), (x3, _) = make(1), make(1), make(2)
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
        assert x1.dtype == torch.float32 and y1.dtype == torch.int64


def test_gaussian_mixture_statistics() -> None:
    means = torch.tensor([[0.0, 0.0], [3.0, -3.0]])
    weights = torch.tensor([1.0, 3.0])
    n = 20000
    x, y = gaussian_mixture(n, means, std=2.0, weights=weights, generator=g(4))
    share = float((y == 1).double().mean())
    assert abs(share - 0.75) < Z5 * math.sqrt(0.75 * 0.25 / n)
    for k in range(2):
        part = x[y == k].double()
        assert float((part.mean(0) - means[k]).abs().max()) < 2 * Z5 * 2.0 / math.sqrt(len(part))
        assert float(part.std(0).sub(2.0).abs().max()) < 0.1


def test_two_moons_geometry() -> None:
    x, y = two_moons(400, noise=0.0, generator=g(5))
    upper, lower = x[y == 0], x[y == 1]
    assert torch.allclose(upper.norm(dim=1), torch.ones(len(upper)), atol=1e-5)
    assert bool((upper[:, 1] >= 0).all()) and bool((lower[:, 1] <= 0.5 + 1e-6).all())
    assert torch.allclose(
        (lower - torch.tensor([1.0, 0.5])).norm(dim=1), torch.ones(len(lower)), atol=1e-5
    )
    noisy, _ = two_moons(400, noise=0.3, generator=g(5))
    assert float((noisy - x).std()) == pytest.approx(0.3, rel=0.15)


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (lambda: twonorm(0), ValueError, "`n` must be >= 1, got 0"),
        (lambda: twonorm(5, dim=0), ValueError, "`dim` must be >= 1, got 0"),
        (lambda: twonorm(5, generator=1), TypeError, "`generator` must be a torch.Generator or None, got int"),
        (lambda: two_moons(5, noise=-1.0), ValueError, "`noise` must be >= 0.0, got -1.0"),
        (lambda: gaussian_mixture(5, torch.zeros(3)), ValueError, "`means` must be a (num_classes, dim) tensor"),
        (lambda: gaussian_mixture(5, torch.zeros(2, 2), std=0.0), ValueError, "`std` must be > 0.0, got 0.0"),
        (lambda: gaussian_mixture(5, torch.zeros(2, 2), weights=torch.tensor([1.0, -1.0])), ValueError, "`weights` must be 2 non-negative weights, not all 0"),
        (lambda: gaussian_mixture(5, torch.zeros(2, 2), weights=torch.zeros(2)), ValueError, "`weights` must be 2 non-negative weights, not all 0"),
    ],
)  # fmt: skip
def test_synthetic_messages(call, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call()


def test_synthetic_images_share_templates_across_the_splits() -> None:
    data = load_dataset("cifar10-synthetic")
    assert data.x_train.shape == (5000, 3, 32, 32) and data.x_test.shape == (1000, 3, 32, 32)
    assert float(data.x_train.min()) >= 0 and float(data.x_train.max()) <= 255
    assert torch.equal(data.x_train, data.x_train.round())  # pixel values, as CIFAR stores them
    means = torch.stack([data.x_train[data.y_train == k].mean(0) for k in range(10)]).flatten(1)
    nearest = torch.cdist(data.x_test.flatten(1), means).argmin(1)
    assert float((nearest == data.y_test).double().mean()) > 0.9  # the test split's classes
    again = load_dataset("cifar10-synthetic")
    assert torch.equal(again.x_test, data.x_test)


def test_synthetic_images_check_their_arguments() -> None:
    with pytest.raises(ValueError, match=r"^`num_classes` must be >= 2, got 1$"):
        synthetic_images(3, num_classes=1)
    with pytest.raises(ValueError, match=r"^`noise` must be >= 0"):
        synthetic_images(3, noise=-1.0)
