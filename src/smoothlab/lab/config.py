"""Experiment configs: TOML files read with ``tomllib`` into frozen dataclasses.

A config is a grid (methods with their parameter lists x noise kinds x noise rates x seeds) over
one dataset, model and training recipe. Every key is checked: an unknown key is an error naming
the nearest valid one, and values are checked against the dataclass field types, so a typo never
silently falls back to a default. ``--set section.key=value`` overrides use the same checks.

Layout of a config file (every section and key is optional; defaults are the demo's)::

    name = "demo"
    seeds = 2
    device = "auto"; checkpoint_every = 0
    [data]    dataset, root, val_fraction, train_subset, test_subset, scaling
    [model]   name, hidden
    [train]   epochs, batch_size, optimizer, lr, momentum, nesterov, weight_decay, lr_schedule,
              lr_milestones, lr_gamma, warmup_epochs, switch_epoch, select, temperature_scaling
    [noise]   kinds, rates, exact
    [methods.NAME]  the method's parameters; a list is a sweep

Every number must be finite: TOML's ``inf``, ``-inf`` and ``nan`` are rejected at load for every
field (no field of the lab gives infinity a meaning, so none is exempt).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoothlab._checks import fail

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "NoiseConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_override",
]

Scalar = int | float | str | bool


class ConfigError(ValueError):
    """A bad config file, key or value; the message is one line meant for the terminal."""


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


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: a name from :data:`smoothlab.lab.models.MODELS` and its widths."""

    name: str = "mlp"  # mlp | cnn | logreg | resnet18 | resnet56v2
    hidden: tuple[int, ...] = (128,)  # MLP widths; the relaxation paper uses [1024, 1024]


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``: the optimization recipe shared by every run of the grid."""

    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw (ivon and sam are methods: they bring their optimizer)
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | step | cosine (cosine has a linear warm-up)
    lr_milestones: tuple[int, ...] = ()  # epochs where step decay multiplies lr by lr_gamma
    lr_gamma: float = 0.1
    warmup_epochs: int = 0  # linear learning-rate warm-up (cosine and step)
    switch_epoch: int = 0  # train with plain cross-entropy before this epoch, then the method
    select: str = "last"  # model selection on the validation split: last | val_nll | val_accuracy
    temperature_scaling: bool = True  # fit T on the validation split; reported separately


@dataclass(frozen=True)
class NoiseConfig:
    """``[noise]``: label-noise kinds (:data:`smoothlab.noise.NOISE_KINDS`) and rates."""

    kinds: tuple[str, ...] = ("symmetric",)  # names from smoothlab.noise.NOISE_KINDS
    rates: tuple[float, ...] = (0.0, 0.2, 0.4)  # for class-dependent: kappa
    exact: bool = False  # flip exactly the expected number of labels per class


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
    # method name -> parameter name -> values (a sweep); validated against the methods registry
    methods: Mapping[str, Mapping[str, tuple[Scalar, ...]]] = field(
        default_factory=lambda: {"ce": {}}
    )


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "noise": NoiseConfig,
}
_TOP = ("name", "description", "seeds", "device", "checkpoint_every")


def _nearest(word: str, choices: Sequence[str]) -> str:
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
    smoothlab.lab.config.ConfigError: `train.lr` must be a finite number, got inf
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


def _section(name: str, cls: type, raw: object) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"`{name}` must be a table ([{name}]), got {raw!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in valid:
            raise ConfigError(f"unknown key `{name}.{key}`{_nearest(key, valid)}")
        values[key] = coerce(f"{name}.{key}", value, hints[key])
    return cls(**values)


def _methods(raw: object) -> dict[str, dict[str, tuple[Scalar, ...]]]:
    from smoothlab.lab.methods import METHODS, method_fields

    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"`methods` must be a non-empty table of [methods.NAME], got {raw!r}")
    methods: dict[str, dict[str, tuple[Scalar, ...]]] = {}
    for name, params in raw.items():
        if name not in METHODS:
            raise ConfigError(f"unknown method `{name}`{_nearest(name, list(METHODS))}")
        if not isinstance(params, dict):
            raise ConfigError(f"`methods.{name}` must be a table of parameters, got {params!r}")
        hints = method_fields(name)
        checked = {}
        for key, value in params.items():
            if key not in hints:
                raise ConfigError(
                    f"unknown parameter `methods.{name}.{key}`{_nearest(key, list(hints))}"
                )
            values = value if isinstance(value, list) else [value]
            if not values:
                raise ConfigError(f"`methods.{name}.{key}` must be a non-empty list, got []")
            checked[key] = tuple(coerce(f"methods.{name}.{key}", v, hints[key]) for v in values)
        methods[name] = checked
    return methods


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build and check a :class:`Config` from parsed TOML; raises :class:`ConfigError`."""
    valid = [*_TOP, *_SECTIONS, "methods"]
    top: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for key, value in raw.items():
        if key not in valid:
            raise ConfigError(f"unknown key `{key}`{_nearest(key, valid)}")
        if key in _SECTIONS:
            top[key] = _section(key, _SECTIONS[key], value)
        elif key == "methods":
            top[key] = _methods(value)
        else:
            top[key] = coerce(key, value, hints[key])
    config = Config(**top)
    _check_values(config)
    return config


def _check_values(config: Config) -> None:
    """Range checks that the types alone do not express, then registry names."""
    train, data = config.train, config.data
    rates, kinds = list(config.noise.rates), list(config.noise.kinds)
    checks = [
        (config.seeds >= 1, "seeds", ">= 1", config.seeds),
        (config.checkpoint_every >= 0, "checkpoint_every", ">= 0", config.checkpoint_every),
        (train.epochs >= 1, "train.epochs", ">= 1", train.epochs),
        (train.batch_size >= 1, "train.batch_size", ">= 1", train.batch_size),
        (train.lr > 0, "train.lr", "> 0", train.lr),
        (train.warmup_epochs >= 0, "train.warmup_epochs", ">= 0", train.warmup_epochs),
        (0 <= data.val_fraction < 1, "data.val_fraction", "in [0, 1)", data.val_fraction),
        (bool(rates), "noise.rates", "a non-empty list", rates),
        (bool(kinds), "noise.kinds", "a non-empty list", kinds),
        (all(0 <= r < 1 for r in rates), "noise.rates", "in [0, 1)", rates),
    ]
    for ok, path, expected, got in checks:
        if not ok:
            raise ConfigError(f"`{path}` must be {expected}, got {got!r}")
    choices = {
        "data.scaling": (data.scaling, ("standardize", "center")),
        "train.optimizer": (train.optimizer, ("sgd", "adamw")),
        "train.lr_schedule": (train.lr_schedule, ("constant", "step", "cosine")),
        "train.select": (train.select, ("last", "val_nll", "val_accuracy")),
    }
    for path, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"`{path}` must be one of {', '.join(allowed)}, got {value!r}")
    if train.select != "last" and data.val_fraction == 0:
        raise ConfigError(
            f"`data.val_fraction` must be > 0 for train.select = {train.select!r} "
            f"(it selects on the validation split), got {data.val_fraction!r}"
        )
    _check_names(config)
    from smoothlab.lab.validate import check_combinations

    check_combinations(config)  # keys that are fine alone but would fail together in a worker


def _check_names(config: Config) -> None:
    """Dataset, model and noise kinds must be registered names (the nearest one is suggested)."""
    from smoothlab.datasets import list_datasets
    from smoothlab.lab.models import MODELS
    from smoothlab.noise import NOISE_KINDS

    registries = [
        ("dataset", "data.dataset", [config.data.dataset], list(list_datasets())),
        ("model", "model.name", [config.model.name], list(MODELS)),
        ("noise kind", "noise.kinds", list(config.noise.kinds), [k.name for k in NOISE_KINDS]),
    ]
    for what, path, values, valid in registries:
        for value in values:
            if value not in valid:
                raise ConfigError(f"unknown {what} `{value}` in {path}{_nearest(value, valid)}")


def config_to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain TOML-like data (tuples become lists): stored with results."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    raw = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for name in _SECTIONS:
        raw[name] = dataclasses.asdict(raw[name])
    return plain(raw)  # type: ignore[no-any-return]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"train.epochs=5"`` into its key path and a TOML-parsed value (bare words are str).

    >>> parse_override("noise.rates=[0, 0.2]")
    (['noise', 'rates'], [0, 0.2])
    >>> parse_override("model.name=cnn")
    (['model', 'name'], 'cnn')
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"`--set` must look like section.key=value, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of parsed TOML with each ``key=value`` override applied."""
    import copy

    result = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"`--set {text}`: `{part}` is not a section")
            node = child
        node[parts[-1]] = value
    return result


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML config file, apply ``--set`` overrides, and check everything."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, not a TOML file: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    try:
        return config_from_dict(apply_overrides(raw, overrides))
    except ConfigError as error:
        raise ConfigError(f"{path.name}: {error}") from None
