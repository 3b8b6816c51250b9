"""The fine-grained image datasets of TSLA's transfer experiments: Stanford Dogs and CUB-200-2011.

Both ship JPEGs of varying size inside one archive. Each image is decoded with Pillow (an
optional dependency, in the ``lab`` extra), converted to RGB, resized so that its short side is
``side`` pixels (bilinear) and centre-cropped to ``side x side``: the standard evaluation view of
an ImageNet-pretrained network (``side = 224``). Training-time crops and flips are the lab's
batch augmentation. The archives are read in one pass each, in their own order.

Memory: at 224 pixels a float32 image takes 602 kB, so CUB-200-2011's 11,788 images need 7.1 GB
and Stanford Dogs' 20,580 images 12.4 GB; decoding takes about a millisecond per image.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from .._checks import fail
from ._core import DataFile, Dataset, DatasetInfo
from .formats import read_tar_members
from .loaders import _features, _labels, _metadata

__all__ = [
    "CUB_FILE",
    "DOGS_IMAGES_FILE",
    "DOGS_LISTS_FILE",
    "FINEGRAINED",
    "decode_image",
    "load_cub",
    "load_stanford_dogs",
]

#: The side of the square images the loaders return.
IMAGE_SIDE = 224

# md5 sums as published alongside the archives by the loaders that the field uses, the same in
# several independent implementations.
CUB_FILE = DataFile(
    "CUB_200_2011.tgz",
    ("cub-200-2011", "CUB_200_2011", "cub"),
    "md5:97eceeb196236b17998738112f37df78",
    urls=("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",),
)
_DOGS = "http://vision.stanford.edu/aditya86/ImageNetDogs/"
DOGS_IMAGES_FILE = DataFile(
    "images.tar",
    ("stanford-dogs",),
    "md5:1bb1f2a596ae7057f99d7d75860002ef",
    urls=(_DOGS + "images.tar",),
)
DOGS_LISTS_FILE = DataFile(
    "lists.tar",
    ("stanford-dogs",),
    "md5:edbb9f16854ec66506b5f09b583e0656",
    urls=(_DOGS + "lists.tar",),
)


def decode_image(data: bytes, side: int = IMAGE_SIDE, *, name: str = "image") -> np.ndarray:
    """An encoded image as uint8 ``(3, side, side)``: RGB, short side resized to ``side``
    (bilinear), centre-cropped.

    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (40, 20), (255, 0, 0)).save(buffer, format="PNG")
    >>> decode_image(buffer.getvalue(), 8)[:, 0, 0].tolist()
    [255, 0, 0]
    """
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow comes with the lab extra
        raise ImportError(
            "decoding the images of this dataset needs Pillow: pip install 'smoothlab[lab]'"
        ) from error
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError) as error:
        raise fail(name, "a readable image", f"!an undecodable one ({error})") from error
    width, height = image.size
    scale = side / min(width, height)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def _images(
    path: Path, wanted: Callable[[str], bool], side: int
) -> Iterator[tuple[str, np.ndarray]]:
    """Decode the JPEG members of an archive that ``wanted`` selects, in one pass."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                if info.isfile() and wanted(info.name):
                    stream = tar.extractfile(info)
                    if stream is not None:
                        yield (
                            info.name,
                            decode_image(stream.read(), side, name=f"{path}:{info.name}"),
                        )
    except (tarfile.TarError, EOFError) as error:
        raise fail(str(path), "a complete tar archive", f"!a damaged one ({error})") from error


def _stack(images: Mapping[str, np.ndarray], names: list[str], path: Path, side: int) -> np.ndarray:
    missing = [name for name in names if name not in images]
    if missing:
        raise fail(str(path), f"an archive containing {missing[0]}", "!an archive without it")
    if not names:
        return np.zeros((0, 3, side, side), dtype=np.uint8)
    return np.stack([images[name] for name in names])


def _table(path: Path, data: bytes, columns: int) -> list[list[str]]:
    """Whitespace-separated rows of a text member, each with ``columns`` fields (the last one
    keeps its spaces)."""
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if line.strip():
            fields = line.split(maxsplit=columns - 1)
            if len(fields) != columns:
                raise fail(f"{path} line {number}", f"{columns} fields", f"!{line!r}")
            rows.append(fields)
    return rows


def load_cub(info: DatasetInfo, paths: Mapping[str, Path]) -> Dataset:
    """CUB-200-2011 with its official split (``train_test_split.txt``: 5,994 / 5,794), images
    at :data:`IMAGE_SIDE` pixels."""
    side = IMAGE_SIDE
    path = paths[CUB_FILE.filename]
    base = "CUB_200_2011/"
    texts = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
    members = read_tar_members(path, [base + name for name in texts])
    images_txt, labels_txt, split_txt, classes_txt = (
        _table(path, members[base + name], 2) for name in texts
    )
    files = {i: base + "images/" + name for i, name in images_txt}
    label = {i: int(value) - 1 for i, value in labels_txt}
    train = {i: value == "1" for i, value in split_txt}
    decoded = dict(_images(path, lambda name: name.startswith(base + "images/"), side))
    ids = [i for i, _ in images_txt]
    parts = {}
    for is_train in (True, False):
        chosen = [i for i in ids if train[i] == is_train]
        parts[is_train] = (
            _stack(decoded, [files[i] for i in chosen], path, side),
            np.array([label[i] for i in chosen], dtype=np.int64),
        )
    names = tuple(name.split(".", 1)[-1].replace("_", " ") for _, name in classes_txt)
    return Dataset(
        name=info.name,
        x_train=_features(parts[True][0]),
        y_train=_labels(parts[True][1]),
        x_test=_features(parts[False][0]),
        y_test=_labels(parts[False][1]),
        class_names=names,
        metadata=_metadata(info, paths, value_range="0..255", image_side=str(side)),
    )


def _mat_list(path: Path, data: bytes, name: str) -> tuple[list[str], np.ndarray]:
    """``file_list`` and ``labels`` (1-based) of one of lists.tar's MATLAB files."""
    try:
        from scipy.io import loadmat
    except ImportError as error:  # pragma: no cover - scipy comes with the lab extra's sklearn
        raise ImportError(
            "reading Stanford Dogs' split files needs scipy: pip install scipy"
        ) from error
    try:
        mat = loadmat(io.BytesIO(data))
        files = [
            str(np.asarray(entry).ravel()[0]) for entry in np.asarray(mat["file_list"]).ravel()
        ]
        labels = np.asarray(mat["labels"]).ravel().astype(np.int64)
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise fail(
            f"{path}:{name}", "a MATLAB file with file_list and labels", f"!{error!r}"
        ) from error
    if len(files) != len(labels):
        raise fail(f"{path}:{name}", "as many labels as files", f"!{len(labels)} for {len(files)}")
    return files, labels


def load_stanford_dogs(info: DatasetInfo, paths: Mapping[str, Path]) -> Dataset:
    """Stanford Dogs with its official split (``train_list.mat`` / ``test_list.mat``: 12,000 /
    8,580), images at :data:`IMAGE_SIDE` pixels."""
    side = IMAGE_SIDE
    lists, archive = paths[DOGS_LISTS_FILE.filename], paths[DOGS_IMAGES_FILE.filename]
    members = read_tar_members(lists, ["train_list.mat", "test_list.mat"])
    splits = {name: _mat_list(lists, members[name], name) for name in members}
    decoded = dict(_images(archive, lambda name: name.startswith("Images/"), side))
    arrays = {}
    for name, (files, labels) in splits.items():
        if labels.size and (labels.min() < 1 or labels.max() > info.num_classes):
            raise fail(f"{lists}:{name}", f"labels in [1, {info.num_classes}]", f"!{labels.max()}")
        images = _stack(decoded, ["Images/" + f for f in files], archive, side)
        arrays[name] = (images, labels - 1)
    folders = {
        int(label): f.split("/")[0]
        for files, labels in splits.values()
        for f, label in zip(files, labels, strict=True)
    }
    if len(folders) != info.num_classes:
        raise fail(str(lists), f"images of all {info.num_classes} classes", f"!{len(folders)}")
    names = tuple(folders[k + 1].split("-", 1)[-1].replace("_", " ") for k in range(len(folders)))
    return Dataset(
        name=info.name,
        x_train=_features(arrays["train_list.mat"][0]),
        y_train=_labels(arrays["train_list.mat"][1]),
        x_test=_features(arrays["test_list.mat"][0]),
        y_test=_labels(arrays["test_list.mat"][1]),
        class_names=names,
        metadata=_metadata(info, paths, value_range="0..255", image_side=str(side)),
    )


FINEGRAINED: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        "stanford-dogs",
        f"Stanford Dogs, 120 breeds, RGB resized and centre-cropped to {IMAGE_SIDE} (12000 / 8580)",
        120,
        (DOGS_IMAGES_FILE, DOGS_LISTS_FILE),
        load_stanford_dogs,
        "Khosla, Jayadevaprakash, Yao & Fei-Fei, Novel Dataset for Fine-Grained Image "
        "Categorization: Stanford Dogs, CVPR Workshop FGVC 2011",
        "ImageNet terms (non-commercial research)",
        "official: train_list.mat / test_list.mat (12000 / 8580)",
    ),
    DatasetInfo(
        "cub-200-2011",
        f"Caltech-UCSD Birds, 200 species, RGB resized and centre-cropped to {IMAGE_SIDE} "
        "(5994 / 5794)",
        200,
        (CUB_FILE,),
        load_cub,
        "Wah, Branson, Welinder, Perona & Belongie, The Caltech-UCSD Birds-200-2011 Dataset, "
        "Caltech CNS-TR-2011-001",
        "non-commercial research and educational use",
        "official: train_test_split.txt (5994 / 5794)",
    ),
)
