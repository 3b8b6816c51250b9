"""Readers for the on-disk formats: idx (MNIST), PMLB tables, CIFAR binary archives, CIFAR-N npz.

Each reader validates what it reads (magic numbers, sizes, columns) and raises ``ValueError``
naming the file, what was expected and what was found. Nothing here unpickles: CIFAR is read from
the *binary* archive and CIFAR-N from ``.npz`` with ``allow_pickle=False``.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, cast

import numpy as np

from .._checks import fail

__all__ = [
    "cifar_records",
    "open_maybe_gzip",
    "read_idx",
    "read_npz_labels",
    "read_pmlb",
    "read_tar_members",
]

_GZIP_MAGIC = b"\x1f\x8b"
# idx type code -> big-endian numpy dtype (LeCun's format description)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CIFAR_PIXELS = 3 * 32 * 32

PathLike = str | os.PathLike[str]


def open_maybe_gzip(path: PathLike) -> IO[bytes]:
    """Open ``path`` for reading bytes, decompressing it when it starts with the gzip magic."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    if compressed:
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def _read_all(path: PathLike) -> bytes:
    try:
        with open_maybe_gzip(path) as stream:
            return stream.read()
    except (EOFError, gzip.BadGzipFile, zipfile.BadZipFile) as error:
        raise fail(str(path), "a complete gzip file", f"!a damaged one ({error})") from error


def read_idx(path: PathLike, *, ndim: int | None = None) -> np.ndarray:
    """Read an idx file (gzip or raw) into an array of its stored dtype and shape.

    Layout: two zero bytes, a type code (0x08 = uint8 ... 0x0E = float64), the number of
    dimensions ``d``, then ``d`` big-endian uint32 sizes, then the values in C order.

    Args:
        path: the file, ``.gz`` or decompressed.
        ndim: the number of dimensions required (3 for images, 1 for labels), or None.

    Returns:
        An array of shape ``(n0, ..., n_{d-1})``, e.g. ``(60000, 28, 28)`` uint8.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
    >>> _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> read_idx(path, ndim=1)
    array([7, 2, 1], dtype=uint8)

    Reference: LeCun, Cortes, Burges, "The MNIST database of handwritten digits" (file formats).
    """
    data = _read_all(path)
    header = data[:4]
    if len(header) < 4 or header[:2] != b"\0\0" or header[2] not in _IDX_TYPES:
        raise fail(str(path), "an idx file (magic 00 00 <type> <ndim>)", f"!magic {header.hex()}")
    if ndim is not None and header[3] != ndim:
        raise fail(str(path), f"an idx file of {ndim} dimensions", f"!{header[3]} dimensions")
    dims_end = 4 + 4 * header[3]
    shape = tuple(int(v) for v in np.frombuffer(data[4:dims_end], dtype=">u4"))
    dtype = np.dtype(_IDX_TYPES[header[2]])
    expected = dims_end + int(np.prod(shape)) * dtype.itemsize
    if len(shape) != header[3] or len(data) != expected:
        raise fail(
            str(path), f"{expected} bytes long for an idx array of shape {shape}", f"!{len(data)}"
        )
    return (
        np.frombuffer(data, dtype=dtype, offset=dims_end)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def read_pmlb(path: PathLike, *, num_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a PMLB table: a tab-separated header of feature names then ``target``, then rows.

    Args:
        path: ``<name>.tsv.gz`` (or decompressed).
        num_features: the number of feature columns required.

    Returns:
        ``(features, target)``: float64 ``(N, num_features)`` and int64 ``(N,)``.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.tsv"
    >>> _ = path.write_text("A1\\tA2\\ttarget\\n0.5\\t-1\\t1\\n2\\t3\\t0\\n")
    >>> x, y = read_pmlb(path, num_features=2)
    >>> x.tolist(), y.tolist()
    ([[0.5, -1.0], [2.0, 3.0]], [1, 0])

    Reference: Olson et al., "PMLB: a large benchmark suite for machine learning evaluation and
    comparison", BioData Mining 10, 2017.
    """
    text = _read_all(path).decode("utf-8", errors="replace")
    header, _, body = text.partition("\n")
    columns = header.rstrip("\r").split("\t")
    if len(columns) != num_features + 1 or columns[-1] != "target":
        got = f"!{len(columns)} columns ending in {columns[-1]!r}"
        raise fail(str(path), f"a PMLB table of {num_features} features then 'target'", got)
    try:
        table = np.loadtxt(io.StringIO(body), delimiter="\t", dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise fail(str(path), "a table of numbers", f"!a bad row ({error})") from error
    if table.shape[1] != num_features + 1 or table.shape[0] == 0:
        raise fail(str(path), f"rows of {num_features + 1} numbers", f"!shape {table.shape}")
    target = table[:, -1]
    if not np.array_equal(target, np.round(target)) or target.min() < 0:
        raise fail(str(path), "a target column of class indices", "!non-integer values")
    return table[:, :-1], target.astype(np.int64)


def read_tar_members(path: PathLike, names: Sequence[str]) -> dict[str, bytes]:
    """The bytes of the members ``names`` of a tar archive (any compression), in one pass.

    The archive is walked once in its own order, so a ``.tar.gz`` is decompressed once however
    many members are read (looking members up by name would decompress it again for each).

    >>> import io, pathlib, tarfile, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.tar.gz"
    >>> with tarfile.open(path, "w:gz") as tar:
    ...     info = tarfile.TarInfo("b/names.txt"); info.size = 4
    ...     tar.addfile(info, io.BytesIO(b"cat\\n"))
    >>> read_tar_members(path, ["b/names.txt"])
    {'b/names.txt': b'cat\\n'}
    """
    wanted = set(names)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                stream = tar.extractfile(info) if info.name in wanted else None
                if stream is not None:
                    found[info.name] = stream.read()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile) as error:
        raise fail(str(path), "a complete tar archive", f"!a damaged one ({error})") from error
    for name in names:
        if name not in found:
            raise fail(str(path), f"an archive containing {name}", "!an archive without it")
    return found


def cifar_records(
    path: PathLike, members: Mapping[str, bytes], names: Sequence[str], *, label_bytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Parse the records of CIFAR's binary format held in ``members[name]`` for ``names``, in order.

    Each record is ``label_bytes`` label bytes (CIFAR-10: the class; CIFAR-100: coarse then fine)
    then 3072 pixel bytes: the red, green and blue 32x32 planes, rows in order. ``members`` comes
    from :func:`read_tar_members`; ``path`` names the archive in errors.

    Returns:
        ``(images, labels)``: uint8 ``(N, 3, 32, 32)`` and uint8 ``(N, label_bytes)``.

    >>> record = bytes([7]) + bytes(range(256)) * 12  # label 7, then 3072 pixel bytes
    >>> images, labels = cifar_records("c.tar.gz", {"b/test_batch.bin": record},
    ...                                ["b/test_batch.bin"], label_bytes=1)
    >>> images.shape, labels.tolist(), int(images[0, 1, 0, 3])  # green plane, byte 1024 + 3
    ((1, 3, 32, 32), [[7]], 3)

    Reference: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
    """
    record = label_bytes + _CIFAR_PIXELS
    chunks = []
    for name in names:
        raw = members[name]
        if len(raw) == 0 or len(raw) % record:
            raise fail(f"{path}:{name}", f"a multiple of {record} bytes", f"!{len(raw)} bytes")
        chunks.append(np.frombuffer(raw, dtype=np.uint8).reshape(-1, record))
    table = np.concatenate(chunks)
    images = table[:, label_bytes:].reshape(-1, 3, 32, 32)
    return images, table[:, :label_bytes]


def read_npz_labels(path: PathLike, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Read integer label arrays from an ``.npz`` file (``allow_pickle=False``), as int64.

    Raises ``ValueError`` if the file is not an npz, a key is missing, or an array is not 1-D
    integer data of the same length as the others.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.npz"
    >>> np.savez(path, clean_label=np.array([1, 2], np.uint8), noisy_label=np.array([1, 0]))
    >>> read_npz_labels(path, ["noisy_label", "clean_label"])["clean_label"]
    array([1, 2])
    """
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            present = sorted(archive.files)
            arrays = {key: archive[key] for key in keys if key in present}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        expected = "an npz file of plain (unpickled) arrays"
        raise fail(str(path), expected, f"!an unreadable file ({error})") from error
    if len(arrays) != len(keys):
        raise fail(str(path), f"an npz file with arrays {list(keys)}", f"!arrays {present}")
    lengths = {array.shape for array in arrays.values()}
    kinds = {array.dtype.kind for array in arrays.values()}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1 or not kinds <= {"i", "u"}:
        raise fail(str(path), "1-D integer label arrays of one length", f"!shapes {lengths}")
    return {key: array.astype(np.int64) for key, array in arrays.items()}
