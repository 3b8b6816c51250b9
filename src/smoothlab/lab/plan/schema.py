"""The config schema: frozen dataclasses for every section, and the per-value type check.

A config is a grid (methods with their parameter lists x noise kinds x noise rates x seeds) over
one dataset, model and training recipe. Every key is checked: an unknown key is an error naming
the nearest valid one, and values are checked against the dataclass field types, so a typo never
silently falls back to a default. Reading a file and the cross-key checks are
:mod:`smoothlab.lab.plan.loading`; this module imports nothing of the lab, so every stage can.

Layout of a config file (every section and key is optional; defaults are the demo's)::

    name = "demo"
    seeds = 2
    device = "auto"; checkpoint_every = 0
    [data]    dataset, root, val_fraction, train_subset, test_subset, scaling
              augment_shift, augment_flip, augment_cutout, augment_padding
    [model]   name, hidden, checkpoint
    [train]   epochs, batch_size, optimizer, lr, backbone_lr, momentum, nesterov, weight_decay,
              lr_schedule, lr_milestones, lr_gamma, warmup_epochs, switch_epoch, switch_lr, select,
              temperature_scaling, precision, compile
    [noise]   kinds, rates, exact
    [calibration]  methods, off_diagonal, intercept, bins
    [methods.NAME]  the method's parameters; a list is a sweep

Every number must be finite: TOML's ``inf``, ``-inf`` and ``nan`` are rejected at load for every
field (no field of the lab gives infinity a meaning, so none is exempt).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smoothlab._checks import fail

__all__ = [
    "AugmentConfig",
    "CalibrationConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "NoiseConfig",
    "TrainConfig",
    "coerce",
    "config_to_dict",
    "suggest",
]

Scalar = int | float | str | bool


class ConfigError(ValueError):
    """A bad config file, key or value; the message is one line meant for the terminal."""


@dataclass(frozen=True)
class AugmentConfig:
    """The ``augment_*`` keys of ``[data]`` together (:attr:`DataConfig.augment`), as
    :class:`smoothlab.lab.train.augment.Augment` takes them."""

    shift: float = 0
    flip: bool = False
    cutout: int = 0
    padding: str = "zeros"

    @property
    def active(self) -> bool:
        """Whether this changes any image."""
        return bool(self.shift or self.flip or self.cutout)


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: which dataset, how much of it, and the validation share."""

    dataset: str = "digits"  # a name from smoothlab.datasets
    root: str = ""  # where the dataset files are; "" = the loader's search path
    val_fraction: float = 0.1  # held out from the (noisy) training set for model selection
    train_subset: int = 0  # use only this many training examples (0 = all): scales a paper down
    test_subset: int = 0  # likewise for the test set
    # standardize: per-feature mean and std of the training part; center: subtract the
    # per-feature training mean and divide by the largest |value| (pixels: x / 255 - mean, the
    # preprocessing of Lienen & Hüllermeier's supplement A.2.5)
    scaling: str = "standardize"
    # Training-batch image augmentation (never for validation, test or temperature scaling),
    # drawn from a generator of the run's seed: the largest shift in whole pixels (4) or as a
    # fraction of the side (0.1, Keras' width_shift_range)
    augment_shift: float = 0
    augment_flip: bool = False  # mirror left-right with probability 1/2
    augment_cutout: int = 0  # side of a zeroed square at a random centre (0 = off)
    augment_padding: str = "zeros"  # what a shift brings in: zeros | replicate | reflect

    @property
    def augment(self) -> AugmentConfig:
        """The ``augment_*`` keys as one value."""
        return AugmentConfig(
            self.augment_shift, self.augment_flip, self.augment_cutout, self.augment_padding
        )


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: a name from :data:`smoothlab.lab.plan.models.MODELS` and its widths."""

    name: str = "mlp"  # a name from MODELS: mlp, cnn, logreg, resnet18, vgg16bn, ...
    hidden: tuple[int, ...] = (128,)  # MLP widths; the relaxation paper uses [1024, 1024]
    # a safetensors state dict loaded before training ("" = random initialisation); the
    # classifier is skipped when its shape differs (ImageNet weights fine-tuned on 120 classes)
    checkpoint: str = ""


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``: the optimization recipe shared by every run of the grid."""

    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw (ivon and sam are methods: they bring their optimizer)
    lr: float = 0.05
    # 0 = every layer at lr; else the backbone (all but the classifier, the model's last
    # Linear) at this rate and the classifier at lr, both following the schedule (TSLA 5.1)
    backbone_lr: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | step | cosine (cosine has a linear warm-up)
    lr_milestones: tuple[int, ...] = ()  # epochs where step decay multiplies lr by lr_gamma
    lr_gamma: float = 0.1
    warmup_epochs: int = 0  # linear learning-rate warm-up (cosine and step)
    switch_epoch: int = 0  # train with plain cross-entropy before this epoch, then the method
    # > 0: the constant learning rate from switch_epoch on, replacing the schedule (Wei et al.'s
    # released code fine-tunes the smoothed loss at 1e-6 after its cross-entropy warm-up);
    # 0 = the schedule goes on
    switch_lr: float = 0.0
    select: str = "last"  # model selection on the validation split: last | val_nll | val_accuracy
    # fit [calibration]'s calibrators (temperature scaling by default) on the validation split
    # after training, reported separately; false = none
    temperature_scaling: bool = True
    precision: str = "fp32"  # fp32 | bf16: torch.autocast around the forward pass and the loss
    compile: bool = False  # torch.compile the model (a GPU's speed-up; slow to start)


@dataclass(frozen=True)
class NoiseConfig:
    """``[noise]``: label-noise kinds (:data:`smoothlab.noise.NOISE_KINDS`) and rates."""

    kinds: tuple[str, ...] = ("symmetric",)  # names from smoothlab.noise.NOISE_KINDS
    rates: tuple[float, ...] = (0.0, 0.2, 0.4)  # for class-dependent: kappa
    exact: bool = False  # flip exactly the expected number of labels per class


@dataclass(frozen=True)
class CalibrationConfig:
    """``[calibration]``: post-hoc calibrators fitted on the validation split after training.

    Each is measured on the test set under its own metric suffix (``ece_ts``, ``ece_iso``, ...).
    The default, temperature scaling alone, is left out of run keys, so a config without the
    table keeps its keys; any other value is part of every run's key and experiment.
    """

    # names from smoothlab.lab.plan.calibrators.CALIBRATORS: temperature (suffix _ts), vector
    # (_vs), matrix (_ms), dirichlet (_dir), histogram (_hist), isotonic (_iso); they need
    # train.temperature_scaling = true (false turns every calibrator off) and data.val_fraction > 0
    methods: tuple[str, ...] = ("temperature",)
    off_diagonal: float = 0.01  # ODIR weight of the off-diagonal entries (matrix, dirichlet)
    intercept: float = 0.01  # ODIR weight of the intercepts (matrix, dirichlet)
    bins: int = 15  # equal-width bins per class of histogram binning


@dataclass(frozen=True)
class Config:
    """A whole experiment: the grid and everything shared by its runs."""

    name: str = "experiment"
    description: str = ""
    seeds: int = 2  # replicates per grid point; each run's torch seed derives from its key
    device: str = "auto"  # auto | cpu | cuda | cuda:N (not part of a run's key)
    checkpoint_every: int = 0  # save a resumable checkpoint every N epochs (0 = off; not in key)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    # method name -> parameter name -> values (a sweep); validated against the methods registry
    methods: Mapping[str, Mapping[str, tuple[Scalar, ...]]] = field(
        default_factory=lambda: {"ce": {}}
    )


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "noise": NoiseConfig,
    "calibration": CalibrationConfig,
}
TOP_KEYS = ("name", "description", "seeds", "device", "checkpoint_every")


def suggest(word: str, choices: Sequence[str]) -> str:
    """The nearest valid name as a hint, then every valid one, for "unknown ..." messages.

    >>> suggest("epoch", ["epochs", "lr"])
    '; did you mean `epochs`? (valid: epochs, lr)'
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"{hint} (valid: {', '.join(sorted(choices))})"


def _type_name(tp: object) -> str:
    if typing.get_origin(tp) is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    names: dict[object, str] = {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
    }
    return names.get(tp, str(tp))


def coerce(path: str, value: object, tp: object) -> Any:
    """Check ``value`` against the field type ``tp``; ints become floats where floats are asked.

    Numbers must be finite: TOML's ``inf``, ``-inf`` and ``nan`` are rejected for every field.

    >>> coerce("train.lr", 1, float)
    1.0
    >>> coerce("train.lr", float("inf"), float)
    Traceback (most recent call last):
    ...
    smoothlab.lab.plan.schema.ConfigError: `train.lr` must be a finite number, got inf
    """
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list | tuple):
            value = [value]
        inner = typing.get_args(tp)[0]
        return tuple(coerce(path, item, inner) for item in value)
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, int | float) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise ConfigError(f"`{path}` must be {_type_name(tp)}, got {value!r}")
    if tp is float:
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number):  # TOML's inf, -inf and nan: no field gives them a meaning
            raise fail(path, "a finite number", number, kind=ConfigError)
        return number
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain TOML-like data (tuples become lists): stored with results."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    raw = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for name in SECTIONS:
        raw[name] = dataclasses.asdict(raw[name])
    return plain(raw)  # type: ignore[no-any-return]
