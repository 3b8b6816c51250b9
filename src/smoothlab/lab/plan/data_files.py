"""The dataset's files, checked once in the driver before a grid launches.

Without this check every run of a grid would fail on its own in a worker with the same missing
file, and the report would come out empty. :func:`check_data_files` looks each file of the
dataset up where :func:`smoothlab.datasets.load_dataset` would (``data.root``,
``$SMOOTHLAB_DATA``, ``/usr/share/datasets``, the user cache) and raises one line: what is
missing, where it looked, and the command that fixes it (``smoothlab download NAME``).
"""

from __future__ import annotations

from smoothlab.datasets import get_dataset_info
from smoothlab.datasets.paths import data_roots, find_file
from smoothlab.lab.plan.schema import ConfigError

__all__ = ["check_data_files"]


def check_data_files(dataset: str, root: str = "") -> None:
    """Raise :class:`ConfigError` unless every file of ``dataset`` is found under a data root.

    >>> check_data_files("digits")  # bundled with scikit-learn: no files to look for
    >>> check_data_files("mnist", "/nowhere")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smoothlab.lab.plan.schema.ConfigError: dataset `mnist` is missing 4 files \
(train-images-idx3-ubyte.gz, ...); looked in /nowhere, ...; get them with \
`smoothlab download mnist --root /nowhere`, or set data.root to a folder that holds them
    """
    info = get_dataset_info(dataset)
    missing = [file for file in info.files if find_file(file, root or None) is None]
    if not missing:
        return
    names = ", ".join(file.filename for file in missing)
    count = f"{len(missing)} file{'s' if len(missing) > 1 else ''}"
    looked = ", ".join(str(path) for path in data_roots(root or None))
    manual = [file for file in missing if not file.urls]
    if manual:  # no canonical download (CIFAR-N's labels): say what to do instead
        fix = f"{manual[0].filename}: {manual[0].how_to_get}"
    else:
        fix = f"get them with `smoothlab download {dataset}{f' --root {root}' if root else ''}`"
    raise ConfigError(
        f"dataset `{dataset}` is missing {count} ({names}); looked in {looked}; {fix}, "
        "or set data.root to a folder that holds them"
    )
