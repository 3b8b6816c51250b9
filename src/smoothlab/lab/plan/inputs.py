"""What each dataset feeds a model, and which models can take it: checked at config load.

:data:`DATASET_INPUTS` is a plain table of frozen dataclasses, one row per name of
:func:`smoothlab.datasets.list_datasets`: the input kind (``"image"``, ``(C, H, W)``, or
``"table"``, ``(D,)``) and the shape of one example as the loader returns it. Each model of
:data:`smoothlab.lab.plan.models.MODELS` lists the kinds it accepts, so an image model on a table
(``cnn`` on ``twonorm``) stops the driver with one line, instead of failing inside every worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from smoothlab.lab.plan.models import MODELS

__all__ = ["DATASET_INPUTS", "DatasetInputs", "dataset_inputs", "models_for"]


@dataclass(frozen=True)
class DatasetInputs:
    """The inputs of one dataset: ``kind`` (``"image"`` or ``"table"``) and one example's shape."""

    dataset: str
    kind: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        """A few words for messages: ``"a table of 20 features"``, ``"1x8x8 images"``.

        >>> dataset_inputs("twonorm").describe()
        'a table of 20 features'
        >>> dataset_inputs("cifar10").describe()
        '3x32x32 images'
        """
        if self.kind == "table":
            return f"a table of {self.shape[0]} features"
        return "x".join(map(str, self.shape)) + " images"


_CIFAR = (3, 32, 32)
_GREY28 = (1, 28, 28)

DATASET_INPUTS: dict[str, DatasetInputs] = {
    row.dataset: row
    for row in (
        DatasetInputs("digits", "image", (1, 8, 8)),
        DatasetInputs("mnist", "image", _GREY28),
        DatasetInputs("fashion-mnist", "image", _GREY28),
        DatasetInputs("twonorm", "table", (20,)),
        DatasetInputs("splice", "table", (360,)),  # 60 positions x 6 one-hot nucleotide codes
        DatasetInputs("cifar10", "image", _CIFAR),
        DatasetInputs("cifar100", "image", _CIFAR),
        *(
            DatasetInputs(f"cifar10n-{variant}", "image", _CIFAR)
            for variant in ("aggre", "random1", "random2", "random3", "worse")
        ),
        DatasetInputs("cifar100n", "image", _CIFAR),
        DatasetInputs("stanford-dogs", "image", (3, 224, 224)),  # centre-cropped to 224
        DatasetInputs("cub-200-2011", "image", (3, 224, 224)),
        DatasetInputs("cifar10-synthetic", "image", _CIFAR),
    )
}


def dataset_inputs(name: str) -> DatasetInputs:
    """The row of dataset ``name``; a name missing from the table is an error.

    >>> dataset_inputs("digits")
    DatasetInputs(dataset='digits', kind='image', shape=(1, 8, 8))
    """
    if name not in DATASET_INPUTS:
        valid = ", ".join(DATASET_INPUTS)
        raise ValueError(f"`data.dataset` must be one of {valid}, got {name!r}")
    return DATASET_INPUTS[name]


def models_for(name: str) -> tuple[str, ...]:
    """The names of the models (in :data:`~smoothlab.lab.plan.models.MODELS` order) that accept the
    inputs of dataset ``name``: its kind, and for images a side of at least the model's
    ``min_side``.

    >>> models_for("twonorm")
    ('mlp', 'logreg')
    >>> models_for("mnist")  # VGG16's five poolings need 32x32
    ('mlp', 'cnn', 'logreg', 'resnet18', 'resnet56v2', 'resnet34', 'densenet-bc', 'cnn3')
    """
    row = dataset_inputs(name)
    side = min(row.shape[1:]) if row.kind == "image" else 0
    return tuple(
        spec.name
        for spec in MODELS.values()
        if row.kind in spec.inputs and (row.kind == "table" or side >= spec.min_side)
    )
