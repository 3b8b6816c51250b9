"""Checks across keys: combinations each valid alone that would only fail inside a worker.

:func:`smoothlab.lab.plan.loading.config_from_dict` calls :func:`check_combinations` after the
per-key checks, so a bad combination stops the driver at once with one line naming the keys,
instead of failing every run of the grid minutes later. What is checked:

- ``noise.exact = true`` with the ``instance`` kind (per-example flip rates have no exact count);
- ``asymmetric-cifar10`` noise on a dataset whose number of classes is not 10;
- ``class-dependent`` noise at a rate above 0.5 (class ``K`` would flip with probability
  ``rate + 0.5 > 1``); and, for any kind, building the noise on a few labels of the dataset's
  ``K`` classes, so a future kind's own check surfaces here too;
- ``train.lr_milestones`` (step decay) strictly increasing epochs >= 1 and after the warm-up, for
  ``[train]`` and for every method that overrides the schedule or warm-up (``methods.ivon``);
- every method variant of the grid builds (parameter ranges), and ``device`` is a torch device;
- ``model.name`` accepts the inputs of ``data.dataset`` (no image model on a table:
  :mod:`smoothlab.lab.plan.inputs`), and ``data.augment_*`` is only used on images;
- ``model.checkpoint`` is an existing file, and ``train.backbone_lr`` is not used with IVON;
- ``[calibration]``: registered calibrators, each once, options in range and read by one of them,
  and a validation split to fit them on (:mod:`smoothlab.lab.plan.calibrators`);
- methods that learn from the validation split (:data:`VALIDATION_METHODS`: ``adafocal``) have
  one, with at least ``num_bins`` examples where ``data.train_subset`` bounds its size. Without
  it an AdaFocal run failed after its first epoch, or, trained one epoch, silently stayed focal
  loss at ``gamma_init``.
"""

from __future__ import annotations

import itertools
import math

from smoothlab.lab.plan.calibrators import CALIBRATORS, calibrator
from smoothlab.lab.plan.grid import method_variants
from smoothlab.lab.plan.human_noise import HUMAN_NOISE, check_human_noise
from smoothlab.lab.plan.inputs import dataset_inputs, models_for
from smoothlab.lab.plan.methods import METHODS, make_method
from smoothlab.lab.plan.models import MODELS
from smoothlab.lab.plan.schema import CalibrationConfig, Config, ConfigError, TrainConfig

__all__ = ["VALIDATION_METHODS", "check_combinations"]

#: Methods whose objective learns from the validation split after every epoch it trains
#: (``Objective.observe_validation``), with what it learns there, for the error message.
VALIDATION_METHODS = {"adafocal": "its gammas follow the validation split's calibration"}


def check_combinations(config: Config) -> None:
    """Raise :class:`ConfigError` (one line naming the keys) for a combination that would fail.

    >>> from smoothlab.lab.plan.schema import NoiseConfig
    >>> check_combinations(Config(noise=NoiseConfig(kinds=("instance",), exact=True)))
    Traceback (most recent call last):
    ...
    smoothlab.lab.plan.schema.ConfigError: `noise.exact` must be false when noise.kinds has \
`instance` (its flip rates differ per example), got true
    """
    _check_device(config.device)
    _check_model(config.model.name, config.data.dataset)
    _check_augment(config)
    _check_pretrained(config)
    _check_noise(config)
    _check_schedule(config.train, "train.lr_schedule", "train.warmup_epochs")
    _check_methods(config)
    _check_validation_methods(config)
    _check_calibration(config)


def _check_device(device: str) -> None:
    import torch

    if device == "auto":
        return
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        expected = "auto or a torch device such as cpu, cuda, cuda:1"
        raise ConfigError(f"`device` must be {expected}, got {device!r}") from None


def _check_model(model: str, dataset: str) -> None:
    """The model must accept the dataset's input kind (an image model on a table fails)."""
    valid = models_for(dataset)
    if model not in valid:
        row, side = dataset_inputs(dataset), MODELS[model].min_side
        inputs = row.describe()
        needs = f"images of side >= {side}" if row.kind == "image" else "images"
        raise ConfigError(
            f"`model.name` must be one of {', '.join(valid)} for data.dataset `{dataset}` "
            f"({inputs}; {model} needs {needs}), got {model!r}"
        )


def _check_augment(config: Config) -> None:
    """Augmentation shifts and flips pixels: it needs (C, H, W) images (any model that takes
    them, a flattening MLP included)."""
    row = dataset_inputs(config.data.dataset)
    if config.data.augment.active and row.kind != "image":
        raise ConfigError(
            f"`data.augment_*` must be off for data.dataset `{config.data.dataset}` "
            f"({row.describe()}; augmentation needs images), got {config.data.augment}"
        )


def _check_pretrained(config: Config) -> None:
    """``model.checkpoint`` must exist; ``train.backbone_lr`` needs the ``[train]`` optimizer
    (IVON brings its own, with one learning rate)."""
    from pathlib import Path

    path = config.model.checkpoint
    if path and not Path(path).expanduser().is_file():
        raise ConfigError(
            f"`model.checkpoint` must be a safetensors file, got {path!r} (not found)"
        )
    ivon = [name for name in config.methods if METHODS[name].optimizer == "ivon"]
    if config.train.backbone_lr > 0 and ivon:
        raise ConfigError(
            f"`train.backbone_lr` must be 0 with methods.{ivon[0]} (IVON has one learning "
            f"rate), got {config.train.backbone_lr!r}"
        )


def _check_noise(config: Config) -> None:
    from smoothlab.datasets import get_dataset_info

    kinds, rates, dataset = config.noise.kinds, config.noise.rates, config.data.dataset
    k = int(get_dataset_info(dataset).num_classes)
    if config.noise.exact and "instance" in kinds:
        raise ConfigError(
            "`noise.exact` must be false when noise.kinds has `instance` "
            "(its flip rates differ per example), got true"
        )
    if "asymmetric-cifar10" in kinds and k != 10:
        raise ConfigError(
            f"`noise.kinds` has `asymmetric-cifar10`, which needs 10 classes, "
            f"but data.dataset `{dataset}` has {k}"
        )
    if "class-dependent" in kinds and max(rates) > 0.5 + 1e-12:
        raise ConfigError(
            "`noise.rates` must be <= 0.5 with noise kind `class-dependent` in noise.kinds "
            f"(class K flips with probability rate + 0.5), got {max(rates):g}"
        )
    check_human_noise(config, k)
    for kind, rate in itertools.product(kinds, rates):
        if kind not in HUMAN_NOISE:  # human label sets are read by the worker, not built
            _probe_noise(kind, rate, k, config.noise.exact, dataset)


def _probe_noise(kind: str, rate: float, k: int, exact: bool, dataset: str) -> None:
    """Build the noise on ``4 K`` labels: any error the worker would hit, raised here."""
    import torch

    from smoothlab.noise import noise_kind

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4 * k) % k
    features = torch.randn(4 * k, 3, generator=generator)
    try:
        noise_kind(kind).build(
            labels, rate, num_classes=k, features=features, generator=generator, exact=exact
        )
    except ValueError as error:
        where = f"noise kind `{kind}` at rate {rate:g} on data.dataset `{dataset}` ({k} classes)"
        raise ConfigError(f"{where} (noise.kinds, noise.rates): {error}") from None


def _check_schedule(train: TrainConfig, schedule_key: str, warmup_key: str) -> None:
    """Step decay needs strictly increasing milestones >= 1, each after the warm-up."""
    milestones = list(train.lr_milestones)
    if train.lr_schedule != "step":
        return
    increasing = all(a < b for a, b in itertools.pairwise(milestones))
    if not increasing or any(m < 1 for m in milestones):
        raise ConfigError(
            f"`train.lr_milestones` must be strictly increasing epochs >= 1 for {schedule_key} "
            f"= step, got {milestones}"
        )
    if train.warmup_epochs > 0 and milestones and milestones[0] <= train.warmup_epochs:
        raise ConfigError(
            f"`train.lr_milestones` must be > {warmup_key} = {train.warmup_epochs} for "
            f"{schedule_key} = step (decay starts after the warm-up), got {milestones}"
        )


def _check_methods(config: Config) -> None:
    """Every variant of every method builds; methods with their own recipe get it checked."""
    for name, sweep in config.methods.items():
        for params in method_variants(name, dict(sweep)):  # builds each: parameter ranges
            method = make_method(name, params)
            recipe = method.train_config(config.train)
            if recipe == config.train:
                continue
            own = method.set_overrides()  # name the key that set each part of the recipe
            schedule_key, warmup_key = (
                f"methods.{name}.{key}" if key in own else f"train.{key}"
                for key in ("lr_schedule", "warmup_epochs")
            )
            _check_schedule(recipe, schedule_key, warmup_key)


def _check_validation_methods(config: Config) -> None:
    """A method of :data:`VALIDATION_METHODS` needs a validation split; AdaFocal's equal-mass
    bins need an example each, so ``num_bins`` at most the split's size, known (as an upper
    bound: a smaller dataset holds fewer) when ``data.train_subset`` is set."""
    fraction, subset = config.data.val_fraction, config.data.train_subset
    for name in (n for n in config.methods if n in VALIDATION_METHODS):
        if fraction == 0:
            raise ConfigError(
                f"`data.val_fraction` must be > 0 with methods.{name} "
                f"({VALIDATION_METHODS[name]}), got {fraction!r}"
            )
        held = math.floor(fraction * subset + 0.5)  # split_indices' rounding of its size
        for params in method_variants(name, dict(config.methods[name])):
            bins = dict(params).get("num_bins", 1)
            if subset > 0 and held < bins:
                raise ConfigError(
                    f"`data.val_fraction` must leave >= num_bins = {bins} validation examples "
                    f"for methods.{name} (data.train_subset = {subset} leaves at most {held}), "
                    f"got {fraction!r}"
                )


def _check_calibration(config: Config) -> None:
    """Calibrator names and options, and what fitting them needs (a validation split)."""
    calibration = config.calibration
    if calibration == CalibrationConfig():
        return  # today's temperature scaling, which train.temperature_scaling switches
    names = list(calibration.methods)
    if not names:
        raise ConfigError(
            "`calibration.methods` must be a non-empty list of calibrators "
            "(train.temperature_scaling = false turns calibration off), got []"
        )
    used = {option for name in names for option in calibrator(name).options}
    if len(set(names)) < len(names):
        raise ConfigError(f"`calibration.methods` must name each calibrator once, got {names}")
    ranges = (("off_diagonal", 0, ">= 0"), ("intercept", 0, ">= 0"), ("bins", 1, ">= 1"))
    for option, low, expected in ranges:
        value = getattr(calibration, option)
        if value < low:
            raise ConfigError(f"`calibration.{option}` must be {expected}, got {value!r}")
        if option not in used and value != getattr(CalibrationConfig(), option):
            readers = ", ".join(row.name for row in CALIBRATORS if option in row.options)
            raise ConfigError(
                f"`calibration.{option}` must be left out unless calibration.methods has "
                f"{readers} (no other calibrator reads it), got {value!r}"
            )
    _check_calibration_split(config)


def _check_calibration_split(config: Config) -> None:
    """Every calibrator is fitted on the validation split, after training."""
    if not config.train.temperature_scaling:
        raise ConfigError(
            "`train.temperature_scaling` must be true with a [calibration] table "
            "(false turns every calibrator off), got false"
        )
    if config.data.val_fraction == 0:
        raise ConfigError(
            "`data.val_fraction` must be > 0 with a [calibration] table (the calibrators are "
            f"fitted on the validation split), got {config.data.val_fraction!r}"
        )
