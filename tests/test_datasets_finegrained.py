"""Stanford Dogs and CUB-200-2011, read from tiny archives in the real layouts by load_dataset."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from smoothlab.datasets import finegrained, get_dataset_info, list_datasets, load_dataset
from smoothlab.datasets.finegrained import decode_image

SIDE = 8


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SMOOTHLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("smoothlab.datasets.paths.SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.setattr(finegrained, "IMAGE_SIDE", SIDE)


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _colour(k: int) -> tuple[int, int, int]:
    """A flat colour that identifies image k (JPEG keeps flat colours to a few levels)."""
    return (40 * (k % 6), 40 * ((k // 6) % 6), 40 * ((k // 36) % 6))


def _tar(path: Path, members: dict[str, bytes], mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# ---- CUB-200-2011: CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt,
# classes.txt, images/<class folder>/<file>.jpg} inside one .tgz --------------------------------
def _write_cub(root: Path, drop: str | None = None) -> list[tuple[int, int, bool]]:
    """Six images (id, class, is_train) of three classes, sizes wider and taller than square."""
    images = [(1, 0, True), (2, 0, False), (3, 1, True), (4, 2, True), (5, 2, False), (6, 1, False)]
    base = "CUB_200_2011/"
    classes = [f"{k + 1:03d}.Class_{k}" for k in range(200)]
    members = {
        base + "classes.txt": "".join(f"{k + 1} {c}\n" for k, c in enumerate(classes)).encode(),
        base + "images.txt": b"",
        base + "image_class_labels.txt": b"",
        base + "train_test_split.txt": b"",
    }
    for i, label, train in images:
        name = f"{classes[label]}/img_{i}.jpg"
        members[base + "images.txt"] += f"{i} {name}\n".encode()
        members[base + "image_class_labels.txt"] += f"{i} {label + 1}\n".encode()
        members[base + "train_test_split.txt"] += f"{i} {int(train)}\n".encode()
        if name != drop:
            members[base + "images/" + name] = _jpeg(_colour(i), (20 + 3 * i, 30 - 2 * i))
    _tar(root / "cub-200-2011" / "CUB_200_2011.tgz", members, "w:gz")
    return images


def test_cub_reads_the_official_split_labels_and_images(tmp_path: Path) -> None:
    images = _write_cub(tmp_path)
    data = load_dataset("cub-200-2011", root=tmp_path)
    assert data.x_train.shape == (3, 3, SIDE, SIDE) and data.x_test.shape == (3, 3, SIDE, SIDE)
    assert data.num_classes == 200 and data.class_names[:2] == ("Class 0", "Class 1")
    for split, x, y in ((True, data.x_train, data.y_train), (False, data.x_test, data.y_test)):
        chosen = [(i, label) for i, label, train in images if train == split]
        assert y.tolist() == [label for _, label in chosen]  # in images.txt order
        for image, (i, _) in zip(x, chosen, strict=True):
            assert np.abs(image.mean((1, 2)).numpy() - np.array(_colour(i))).max() < 4
    assert data.metadata["image_side"] == str(SIDE)


def test_cub_names_a_missing_image(tmp_path: Path) -> None:
    _write_cub(tmp_path, drop="003.Class_2/img_4.jpg")
    with pytest.raises(ValueError, match=r"an archive containing CUB_200_2011/images/003\.Class_2"):
        load_dataset("cub-200-2011", root=tmp_path)


def test_cub_missing_archive_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CUB_200_2011\.tgz") as error:
        load_dataset("cub-200-2011", root=tmp_path)
    assert "data.caltech.edu" in str(error.value) and "download=True" in str(error.value)


# ---- Stanford Dogs: images.tar (Images/<wnid-breed>/<file>.jpg) and lists.tar holding
# train_list.mat / test_list.mat (MATLAB: file_list cell array, labels 1..120 column) -------
def _write_dogs(root: Path, *, bad_label: bool = False) -> None:
    folders = [f"n{k:08d}-Breed_{k}" for k in range(120)]
    files = {split: [f"{folders[k]}/{split}_{k}.jpg" for k in range(120)] for split in ("tr", "te")}
    images = {
        f"Images/{name}": _jpeg(_colour(k + 100 * (split == "te")), (12, 9))
        for split, names in files.items()
        for k, name in enumerate(names)
    }
    _tar(root / "stanford-dogs" / "images.tar", images, "w")
    lists = {}
    for split, mat in (("tr", "train_list.mat"), ("te", "test_list.mat")):
        buffer = io.BytesIO()
        labels = np.arange(1, 121, dtype=np.float64)[:, None]
        if bad_label and split == "te":
            labels[0] = 121
        cells = np.empty((120, 1), dtype=object)
        for k, name in enumerate(files[split]):
            cells[k, 0] = np.array([name])
        savemat(buffer, {"file_list": cells, "labels": labels})
        lists[mat] = buffer.getvalue()
    _tar(root / "stanford-dogs" / "lists.tar", lists, "w")


def test_stanford_dogs_reads_the_official_lists(tmp_path: Path) -> None:
    _write_dogs(tmp_path)
    data = load_dataset("stanford-dogs", root=tmp_path)
    assert data.x_train.shape == (120, 3, SIDE, SIDE) and data.x_test.shape == (120, 3, SIDE, SIDE)
    assert data.y_train.tolist() == list(range(120)) == data.y_test.tolist()
    assert data.class_names[:2] == ("Breed 0", "Breed 1") and data.num_classes == 120
    for k in (0, 57, 119):
        assert np.abs(data.x_train[k].mean((1, 2)).numpy() - _colour(k)).max() < 4
        assert np.abs(data.x_test[k].mean((1, 2)).numpy() - _colour(k + 100)).max() < 4


def test_stanford_dogs_rejects_labels_out_of_range(tmp_path: Path) -> None:
    _write_dogs(tmp_path, bad_label=True)
    with pytest.raises(ValueError, match=r"test_list\.mat` must be labels in \[1, 120\], got 121"):
        load_dataset("stanford-dogs", root=tmp_path)


def test_registry_rows() -> None:
    assert list_datasets()[-3:-1] == ("stanford-dogs", "cub-200-2011")
    dogs, cub = get_dataset_info("stanford-dogs"), get_dataset_info("cub-200-2011")
    assert (dogs.num_classes, cub.num_classes) == (120, 200)
    assert [f.checksum for f in dogs.files] == [
        "md5:1bb1f2a596ae7057f99d7d75860002ef",
        "md5:edbb9f16854ec66506b5f09b583e0656",
    ]
    assert cub.files[0].checksum == "md5:97eceeb196236b17998738112f37df78"


# ---- decoding ---------------------------------------------------------------------------------
def test_decode_resizes_the_short_side_and_crops_the_centre() -> None:
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, 10:20] = 255  # a white centre third
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="PNG")
    out = decode_image(buffer.getvalue(), 5)
    assert out.shape == (3, 5, 5) and out.dtype == np.uint8
    assert out[:, :, 1:4].min() > 200  # the centre kept, the sides cropped away
    grey = io.BytesIO()
    Image.new("L", (4, 6), 77).save(grey, format="PNG")
    assert decode_image(grey.getvalue(), 3).tolist() == [[[77] * 3] * 3] * 3  # grey -> RGB


def test_decode_names_an_unreadable_image() -> None:
    with pytest.raises(ValueError, match=r"^`x\.jpg` must be a readable image, got an undecodable"):
        decode_image(b"not a jpeg", 4, name="x.jpg")
