"""Where dataset files are looked up, and where downloads go.

Lookup order for every file, first hit wins:

1. the ``root`` argument of :func:`~smoothlab.datasets.load_dataset`;
2. ``$SMOOTHLAB_DATA``;
3. ``/usr/share/datasets`` (where Debian's ``dataset-*`` packages install);
4. the user cache, ``$XDG_CACHE_HOME/smoothlab`` or ``~/.cache/smoothlab``.

Under each of these roots a file is looked for in each of its folders, e.g.
``<root>/mnist/train-images-idx3-ubyte.gz`` or, for a PMLB table, ``<root>/twonorm/twonorm.tsv.gz``
then ``<root>/pmlb/twonorm/twonorm.tsv.gz`` (the layout of PMLB's own repository). Downloads go to
the first folder under ``root``, else ``$SMOOTHLAB_DATA``, else the user cache; never to the system
directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._core import DataFile, DatasetInfo

__all__ = [
    "ENV_VAR",
    "SYSTEM_DATA_DIR",
    "cache_dir",
    "candidates",
    "data_roots",
    "download_root",
    "find_file",
    "missing_file_error",
]

ENV_VAR = "SMOOTHLAB_DATA"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")


def cache_dir() -> Path:
    """The user cache root: ``$XDG_CACHE_HOME/smoothlab``, else ``~/.cache/smoothlab``.

    >>> cache_dir().name
    'smoothlab'
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "smoothlab"


def data_roots(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The data roots searched, in order: ``root``, ``$SMOOTHLAB_DATA``, system dir, user cache.

    >>> [str(p) for p in data_roots("/data")][0]
    '/data'
    """
    roots = [] if root is None else [Path(root).expanduser()]
    env = os.environ.get(ENV_VAR, "")
    if env:
        roots.append(Path(env).expanduser())
    roots += [SYSTEM_DATA_DIR, cache_dir()]
    return roots


def download_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where downloads go: ``root``, else ``$SMOOTHLAB_DATA``, else the user cache."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "")
    return Path(env).expanduser() if env else cache_dir()


def candidates(file: DataFile, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every path at which ``file`` is looked for, in lookup order.

    A gzip file ``x.gz`` whose checksum is of its content may also be stored decompressed as
    ``x`` (the idx and PMLB files).
    """
    names = [file.filename]
    if file.gunzip and file.filename.endswith(".gz"):
        names.append(file.filename.removesuffix(".gz"))
    return [
        base / folder / name
        for base in data_roots(root)
        for folder in file.folders
        for name in names
    ]


def find_file(file: DataFile, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The first existing path of ``file`` in lookup order, or None."""
    for path in candidates(file, root):
        if path.is_file():
            return path
    return None


def missing_file_error(
    info: DatasetInfo, file: DataFile, root: str | os.PathLike[str] | None = None
) -> FileNotFoundError:
    """The error for a file found nowhere: the places looked, and how to get the file."""
    looked = "\n".join(f"  {path}" for path in candidates(file, root))
    if file.urls:
        how = (
            f"load_dataset({info.name!r}, download=True), or fetch {file.urls[0]} into "
            f"{download_root(root) / file.folders[0]}"
        )
    else:
        how = file.how_to_get
    return FileNotFoundError(
        f"dataset {info.name!r} needs {file.filename}, which is in none of:\n{looked}\n"
        f"To get it: {how}. Or point `root` or ${ENV_VAR} at a folder holding it."
    )
