"""Every loader on tiny generated files of the real formats, and every corrupt-file message."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smoothlab.datasets import load_cifar_n_labels, load_dataset
from smoothlab.datasets.formats import read_idx, read_npz_labels, read_pmlb

IDX_CODES = {">u1": 0x08, ">i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}
MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
MNIST_TEST_NAMES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SMOOTHLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("smoothlab.datasets.paths.SYSTEM_DATA_DIR", tmp_path / "system")


# ---- writers of the formats, written from the format descriptions ---------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    big = array.astype(array.dtype.newbyteorder(">"))
    code = IDX_CODES[big.dtype.str.replace("|", ">")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + big.tobytes()


def write(path: Path, data: bytes, *, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(root: Path, folder: str, *, n_train: int = 12, n_test: int = 5, gz: bool = True):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 3), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 3), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write(root / folder / (name + (".gz" if gz else "")), idx_bytes(array), gz=gz)
    return arrays


def pmlb_text(x: np.ndarray, y: np.ndarray, first: int) -> str:
    header = "\t".join([f"A{i + first}" for i in range(x.shape[1])] + ["target"])
    rows = [
        "\t".join([*(repr(float(v)) for v in row), str(int(t))])
        for row, t in zip(x, y, strict=True)
    ]
    return "\n".join([header, *rows]) + "\n"


def write_twonorm(path: Path, n: int = 30, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 20)).round(4), rng.integers(0, 2, n)
    write(path, pmlb_text(x, y, first=1).encode(), gz=path.suffix == ".gz")
    return x, y


def cifar_records(n: int, label_bytes: int, num_classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    records = rng.integers(0, 256, (n, label_bytes + 3072), dtype=np.uint8)
    records[:, :label_bytes] = rng.integers(0, num_classes, (n, label_bytes))
    return records


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def cifar10_members(records: list[np.ndarray], names: int = 10) -> dict[str, bytes]:
    folder = "cifar-10-batches-bin/"
    members = {f"{folder}data_batch_{i + 1}.bin": records[i].tobytes() for i in range(5)}
    members[f"{folder}test_batch.bin"] = records[5].tobytes()
    members[f"{folder}batches.meta.txt"] = "".join(f"name{i}\n" for i in range(names)).encode()
    return members


def write_cifar10(root: Path) -> list[np.ndarray]:
    records = [cifar_records(3, 1, 10, seed) for seed in range(6)]
    write_tar(root / "cifar10" / "cifar-10-binary.tar.gz", cifar10_members(records))
    return records


# ---- idx -------------------------------------------------------------------------------------


@given(
    dtype=st.sampled_from(sorted(IDX_CODES)),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    gz=st.booleans(),
)
def test_idx_round_trip(dtype: str, shape: list[int], gz: bool) -> None:
    array = (np.arange(int(np.prod(shape))) % 100 - 50 * (dtype != ">u1")).reshape(shape)
    array = array.astype(dtype)
    with tempfile.TemporaryDirectory() as folder:
        read = read_idx(write(Path(folder) / "a", idx_bytes(array), gz=gz))
    assert read.shape == array.shape and read.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(read, array)


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "mnist"), ("fashion-mnist", "fashion-mnist")]
)
@pytest.mark.parametrize("gz", [True, False])
def test_idx_loader_on_tiny_files(tmp_path: Path, name: str, folder: str, gz: bool) -> None:
    arrays = write_mnist(tmp_path, folder, gz=gz)
    data = load_dataset(name, root=tmp_path)
    assert data.x_train.shape == (12, 1, 4, 3) and data.x_test.shape == (5, 1, 4, 3)
    assert data.x_train.dtype == torch.float32 and data.y_test.dtype == torch.int64
    assert torch.equal(
        data.x_train[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]).float()
    )
    assert data.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert data.y_train_clean is None and data.metadata["license"]


def test_idx_bad_magic(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gz", b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", gz=True)
    with pytest.raises(
        ValueError, match=r"must be an idx file \(magic 00 00 <type> <ndim>\), got magic 01000801"
    ):
        read_idx(path)


def test_idx_wrong_dimensions(tmp_path: Path) -> None:
    path = write(tmp_path / "x", idx_bytes(np.zeros((2, 2), np.uint8)), gz=False)
    with pytest.raises(ValueError, match="must be an idx file of 1 dimensions, got 2 dimensions"):
        read_idx(path, ndim=1)


def test_idx_wrong_length(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((3, 2, 2), np.uint8))
    path = write(tmp_path / "x.gz", data[:-1], gz=True)
    with pytest.raises(
        ValueError, match=r"must be 28 bytes long for an idx array of shape \(3, 2, 2\), got 27"
    ):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))
    path = tmp_path / "x.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="must be a complete gzip file, got a damaged one"):
        read_idx(path)


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path, "mnist")
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    write(labels, idx_bytes(np.zeros(11, np.uint8)), gz=True)
    with pytest.raises(ValueError, match="must be 12 labels, one per image, got 11"):
        load_dataset("mnist", root=tmp_path)


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    write_mnist(tmp_path, "mnist")
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write(labels, idx_bytes(np.array([0, 1, 10, 2, 3], np.uint8)), gz=True)
    with pytest.raises(ValueError, match=r"must be labels in \[0, 9\], got labels up to 10"):
        load_dataset("mnist", root=tmp_path)


# ---- PMLB ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["twonorm", "pmlb/twonorm"])
def test_twonorm_loader_both_layouts(tmp_path: Path, layout: str) -> None:
    x, y = write_twonorm(tmp_path / layout / "twonorm.tsv.gz")
    data = load_dataset("twonorm", root=tmp_path)
    assert data.x_train.shape == (20, 20) and data.x_test.shape == (10, 20)
    # The two parts together are the table, row for row with their labels.
    table = np.column_stack([x.astype(np.float32), y]).tolist()
    x_all = torch.cat([data.x_train, data.x_test]).numpy()
    got = np.column_stack([x_all, torch.cat([data.y_train, data.y_test]).numpy()]).tolist()
    assert sorted(map(tuple, got)) == sorted(map(tuple, table))


def test_splice_one_hot_against_a_loop(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    codes, y = rng.integers(0, 6, (9, 60)), np.array([0, 1, 2] * 3)
    write(
        tmp_path / "pmlb" / "splice" / "splice.tsv.gz",
        pmlb_text(codes, y, first=0).encode(),
        gz=True,
    )
    data = load_dataset("splice", root=tmp_path)
    x = torch.cat([data.x_train, data.x_test])
    labels = torch.cat([data.y_train, data.y_test])
    assert x.shape == (9, 360) and data.class_names == ("EI", "IE", "N")
    expected = {}
    for row, target in zip(codes, y, strict=True):
        onehot = [0.0] * 360
        for j, code in enumerate(row):
            onehot[6 * j + int(code)] = 1.0
        expected[tuple(onehot)] = int(target)
    assert {tuple(r): int(t) for r, t in zip(x.tolist(), labels.tolist(), strict=True)} == expected


def test_splice_unknown_code(tmp_path: Path) -> None:
    codes = np.full((3, 60), 2)
    codes[1, 7] = 7
    write(
        tmp_path / "splice" / "splice.tsv.gz",
        pmlb_text(codes, np.arange(3), first=0).encode(),
        gz=True,
    )
    with pytest.raises(
        ValueError, match=re.escape("`x` must be codes among [0, 1, 2, 3, 4, 5], got code 7")
    ):
        load_dataset("splice", root=tmp_path)


def test_pmlb_wrong_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", b"A1\tA2\tclass\n1\t2\t0\n", gz=False)
    with pytest.raises(
        ValueError,
        match="must be a PMLB table of 2 features then 'target', got 3 columns ending in 'class'",
    ):
        read_pmlb(path, num_features=2)


def test_pmlb_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", b"A1\tA2\ttarget\n1\t2\t0\n1\tx\t1\n", gz=False)
    with pytest.raises(ValueError, match="must be a table of numbers, got a bad row"):
        read_pmlb(path, num_features=2)


def test_pmlb_short_row(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", b"A1\tA2\ttarget\n1\t0\n2\t1\n", gz=False)
    with pytest.raises(ValueError, match=r"must be rows of 3 numbers, got shape \(2, 2\)"):
        read_pmlb(path, num_features=2)


def test_pmlb_non_integer_target(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", b"A1\ttarget\n1\t0.5\n", gz=False)
    with pytest.raises(
        ValueError, match="must be a target column of class indices, got non-integer"
    ):
        read_pmlb(path, num_features=1)


def test_pmlb_label_out_of_range(tmp_path: Path) -> None:
    x = np.zeros((3, 20))
    write(
        tmp_path / "twonorm" / "twonorm.tsv.gz",
        pmlb_text(x, np.array([0, 1, 2]), 1).encode(),
        gz=True,
    )
    with pytest.raises(ValueError, match=r"must be labels in \[0, 1\], got labels up to 2"):
        load_dataset("twonorm", root=tmp_path)


# ---- CIFAR binary archives -------------------------------------------------------------------


def test_cifar10_loader_reads_records_in_order(tmp_path: Path) -> None:
    records = write_cifar10(tmp_path)
    data = load_dataset("cifar10", root=tmp_path)
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
    assert data.class_names == tuple(f"name{i}" for i in range(10))
    train = np.concatenate(records[:5])
    assert data.y_train.tolist() == train[:, 0].tolist()
    # Pixel (c, h, w) of a record is byte 1 + 1024 c + 32 h + w.
    for n, c, h, w in [(0, 0, 0, 0), (4, 1, 5, 31), (14, 2, 31, 7)]:
        assert data.x_train[n, c, h, w] == float(train[n, 1 + 1024 * c + 32 * h + w])
    assert data.x_test[2, 2, 3, 4] == float(records[5][2, 1 + 2048 + 96 + 4])


def test_cifar100_uses_the_fine_label(tmp_path: Path) -> None:
    train, test = cifar_records(4, 2, 20, 0), cifar_records(2, 2, 20, 1)
    train[:, 1] = [99, 0, 57, 3]
    members = {
        "cifar-100-binary/train.bin": train.tobytes(),
        "cifar-100-binary/test.bin": test.tobytes(),
        "cifar-100-binary/fine_label_names.txt": "".join(f"c{i}\n" for i in range(100)).encode(),
    }
    write_tar(tmp_path / "cifar100" / "cifar-100-binary.tar.gz", members)
    data = load_dataset("cifar100", root=tmp_path)
    assert data.y_train.tolist() == [99, 0, 57, 3] and data.num_classes == 100
    assert data.x_train[1, 0, 0, 5] == float(train[1, 2 + 5])


def test_cifar_missing_member(tmp_path: Path) -> None:
    members = cifar10_members([cifar_records(1, 1, 10, s) for s in range(6)])
    del members["cifar-10-batches-bin/data_batch_3.bin"]
    write_tar(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", members)
    with pytest.raises(
        ValueError,
        match=r"must be an archive containing cifar-10-batches-bin/data_batch_3\.bin, got an archive without it",
    ):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_wrong_record_length(tmp_path: Path) -> None:
    members = cifar10_members([cifar_records(1, 1, 10, s) for s in range(6)])
    members["cifar-10-batches-bin/test_batch.bin"] += b"\0"
    write_tar(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", members)
    with pytest.raises(
        ValueError, match=r"test_batch\.bin` must be a multiple of 3073 bytes, got 3074 bytes"
    ):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_truncated_archive(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "cifar10" / "cifar-10-binary.tar.gz",
        cifar10_members([cifar_records(1, 1, 10, s) for s in range(6)]),
    )
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ValueError, match="must be a complete tar archive, got a damaged one"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar_wrong_number_of_class_names(tmp_path: Path) -> None:
    members = cifar10_members([cifar_records(1, 1, 10, s) for s in range(6)], names=9)
    write_tar(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", members)
    with pytest.raises(ValueError, match=r"batches\.meta\.txt` must be 10 class names, got 9"):
        load_dataset("cifar10", root=tmp_path)


# ---- CIFAR-N ---------------------------------------------------------------------------------


def write_cifar10n(root: Path, clean: np.ndarray, **extra: np.ndarray) -> Path:
    path = root / "cifar-n" / "CIFAR-10_human.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    keys = ["aggre_label", "worse_label", "random_label1", "random_label2", "random_label3"]
    arrays = {key: rng.integers(0, 10, clean.size) for key in keys}
    np.savez(path, clean_label=clean, **{**arrays, **extra})
    return path


@pytest.mark.parametrize("variant", ["aggre", "random1", "random2", "random3", "worse"])
def test_cifar10n_variants(tmp_path: Path, variant: str) -> None:
    records = write_cifar10(tmp_path)
    clean = np.concatenate(records[:5])[:, 0].astype(np.int64)
    key = {"aggre": "aggre_label", "worse": "worse_label"}.get(
        variant, f"random_label{variant[-1]}"
    )
    noisy = (clean + np.arange(15) % 2) % 10
    write_cifar10n(tmp_path, clean, **{key: noisy})
    data = load_dataset(f"cifar10n-{variant}", root=tmp_path)
    assert data.y_train.tolist() == noisy.tolist()
    assert data.y_train_clean is not None and data.y_train_clean.tolist() == clean.tolist()
    assert data.metadata["noisy_labels"] == key and data.x_train.shape == (15, 3, 32, 32)
    labels = load_cifar_n_labels(f"cifar10n-{variant}", root=tmp_path)
    assert labels.noise_rate == pytest.approx(7 / 15)


def test_cifar100n(tmp_path: Path) -> None:
    train, test = cifar_records(4, 2, 20, 0), cifar_records(2, 2, 20, 1)
    members = {
        "cifar-100-binary/train.bin": train.tobytes(),
        "cifar-100-binary/test.bin": test.tobytes(),
        "cifar-100-binary/fine_label_names.txt": "".join(f"c{i}\n" for i in range(100)).encode(),
    }
    write_tar(tmp_path / "cifar100" / "cifar-100-binary.tar.gz", members)
    path = tmp_path / "cifar-n" / "CIFAR-100_human.npz"
    path.parent.mkdir()
    clean = train[:, 1].astype(np.int64)
    np.savez(path, clean_label=clean, noisy_label=np.array([5, 6, 7, 8]))
    data = load_dataset("cifar100n", root=tmp_path)
    assert data.y_train.tolist() == [5, 6, 7, 8] and data.y_train_clean.tolist() == clean.tolist()


def test_cifar_n_labels_must_match_the_cifar_order(tmp_path: Path) -> None:
    records = write_cifar10(tmp_path)
    clean = np.concatenate(records[:5])[:, 0].astype(np.int64)
    write_cifar10n(tmp_path, (clean + 1) % 10)
    with pytest.raises(
        ValueError,
        match="must be clean labels equal to the 15 CIFAR training labels, in order, got labels that differ",
    ):
        load_dataset("cifar10n-aggre", root=tmp_path)


def test_npz_with_a_pickled_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, clean_label=np.array([{"a": 1}], dtype=object))
    with pytest.raises(
        ValueError,
        match=r"must be an npz file of plain \(unpickled\) arrays, got an unreadable file",
    ):
        read_npz_labels(path, ["clean_label"])


def test_npz_missing_array(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, clean_label=np.zeros(3, np.int64))
    with pytest.raises(
        ValueError,
        match=re.escape("with arrays ['clean_label', 'aggre_label'], got arrays ['clean_label']"),
    ):
        read_npz_labels(path, ["clean_label", "aggre_label"])


def test_npz_not_label_vectors(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, a=np.zeros((3, 2), np.int64), b=np.zeros(3, np.float32))
    with pytest.raises(
        ValueError, match="must be 1-D integer label arrays of one length, got shapes"
    ):
        read_npz_labels(path, ["a", "b"])


def test_npz_that_is_not_npz(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="must be an npz file of plain"):
        read_npz_labels(path, ["a"])


def test_cifar_n_labels_out_of_range(tmp_path: Path) -> None:
    write_cifar10n(tmp_path, np.array([0, 1, 2]), aggre_label=np.array([0, 1, 12]))
    with pytest.raises(ValueError, match=r"aggre_label` must be labels in \[0, 9\], got up to 12"):
        load_cifar_n_labels("cifar10n-aggre", root=tmp_path)


def test_cifar_n_labels_needs_a_variant_name(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"`name` must be a CIFAR-N variant \('cifar10n-aggre', .*'cifar100n'\), got 'mnist'",
    ):
        load_cifar_n_labels("mnist", root=tmp_path)
