"""Reading configs: TOML text or a parsed table into a checked :class:`Config`, with overrides.

Every key is checked against the schema (:mod:`smoothlab.lab.plan.schema`): an unknown key is an
error naming the nearest valid one, and ``--set section.key=value`` overrides use the same checks.
After the per-key checks come the range checks, the registry names (dataset, model, noise kinds,
methods) and the cross-key checks of :mod:`smoothlab.lab.plan.validate`, so a bad config stops the
driver before anything runs.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smoothlab import noise
from smoothlab.datasets import list_datasets
from smoothlab.lab.plan.human_noise import HUMAN_NOISE
from smoothlab.lab.plan.methods import METHODS, RENAMED, method_fields
from smoothlab.lab.plan.models import MODELS
from smoothlab.lab.plan.schema import (
    SECTIONS,
    TOP_KEYS,
    AugmentConfig,
    Config,
    ConfigError,
    Scalar,
    coerce,
    suggest,
)
from smoothlab.lab.plan.validate import check_combinations

__all__ = ["apply_overrides", "config_from_dict", "load_config", "parse_override"]


def _section(name: str, cls: type, raw: object) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"`{name}` must be a table ([{name}]), got {raw!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in valid:
            raise ConfigError(f"unknown key `{name}.{key}`{suggest(key, valid)}")
        values[key] = coerce(f"{name}.{key}", value, hints[key])
    return cls(**values)


def _methods(raw: object) -> dict[str, dict[str, tuple[Scalar, ...]]]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"`methods` must be a non-empty table of [methods.NAME], got {raw!r}")
    methods: dict[str, dict[str, tuple[Scalar, ...]]] = {}
    for name, params in raw.items():
        if name in RENAMED:
            new = RENAMED[name]
            raise ConfigError(f"method `{name}` is now called `{new}`: write [methods.{new}]")
        if name not in METHODS:
            raise ConfigError(f"unknown method `{name}`{suggest(name, list(METHODS))}")
        if not isinstance(params, dict):
            raise ConfigError(f"`methods.{name}` must be a table of parameters, got {params!r}")
        hints = method_fields(name)
        checked = {}
        for key, value in params.items():
            if key not in hints:
                raise ConfigError(
                    f"unknown parameter `methods.{name}.{key}`{suggest(key, list(hints))}"
                )
            values = value if isinstance(value, list) else [value]
            if not values:
                raise ConfigError(f"`methods.{name}.{key}` must be a non-empty list, got []")
            checked[key] = tuple(coerce(f"methods.{name}.{key}", v, hints[key]) for v in values)
        methods[name] = checked
    return methods


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build and check a :class:`Config` from parsed TOML; raises :class:`ConfigError`."""
    valid = [*TOP_KEYS, *SECTIONS, "methods"]
    top: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for key, value in raw.items():
        if key not in valid:
            raise ConfigError(f"unknown key `{key}`{suggest(key, valid)}")
        if key in SECTIONS:
            top[key] = _section(key, SECTIONS[key], value)
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
        (train.backbone_lr >= 0, "train.backbone_lr", ">= 0", train.backbone_lr),
        (train.warmup_epochs >= 0, "train.warmup_epochs", ">= 0", train.warmup_epochs),
        (train.switch_lr >= 0, "train.switch_lr", ">= 0", train.switch_lr),
        (
            not train.switch_lr or 0 < train.switch_epoch < train.epochs,
            "train.switch_epoch",
            f"in [1, train.epochs) when train.switch_lr is set (train.epochs = {train.epochs})",
            train.switch_epoch,
        ),
        (0 <= data.val_fraction < 1, "data.val_fraction", "in [0, 1)", data.val_fraction),
        (bool(rates), "noise.rates", "a non-empty list", rates),
        (bool(kinds), "noise.kinds", "a non-empty list", kinds),
        (all(0 <= r < 1 for r in rates), "noise.rates", "in [0, 1)", rates),
    ]
    checks += _augment_checks(data.augment)
    for ok, path, expected, got in checks:
        if not ok:
            raise ConfigError(f"`{path}` must be {expected}, got {got!r}")
    choices = {
        "data.scaling": (data.scaling, ("standardize", "center")),
        "train.optimizer": (train.optimizer, ("sgd", "adamw")),
        "train.lr_schedule": (train.lr_schedule, ("constant", "step", "cosine")),
        "train.select": (train.select, ("last", "val_nll", "val_accuracy")),
        "train.precision": (train.precision, ("fp32", "bf16")),
        "data.augment_padding": (data.augment.padding, ("zeros", "replicate", "reflect")),
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
    check_combinations(config)  # keys that are fine alone but would fail together in a worker


def _augment_checks(augment: AugmentConfig) -> list[tuple[bool, str, str, object]]:
    """The ranges of the ``augment_*`` keys (:class:`~smoothlab.lab.train.augment.Augment`'s)."""
    shift = augment.shift
    return [
        (shift >= 0, "data.augment_shift", ">= 0", shift),
        (
            shift < 1 or float(shift).is_integer(),
            "data.augment_shift",
            "a whole number of pixels or in (0, 1)",
            shift,
        ),
        (augment.cutout >= 0, "data.augment_cutout", ">= 0", augment.cutout),
    ]


def _check_names(config: Config) -> None:
    """Dataset, model and noise kinds must be registered names (the nearest one is suggested)."""
    registries = [
        ("dataset", "data.dataset", [config.data.dataset], list(list_datasets())),
        ("model", "model.name", [config.model.name], list(MODELS)),
        (
            "noise kind",
            "noise.kinds",
            list(config.noise.kinds),
            [k.name for k in noise.NOISE_KINDS] + list(HUMAN_NOISE),
        ),
    ]
    for what, path, values, valid in registries:
        for value in values:
            if value not in valid:
                raise ConfigError(f"unknown {what} `{value}` in {path}{suggest(value, valid)}")


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
