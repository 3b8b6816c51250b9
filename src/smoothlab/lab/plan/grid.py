"""Grid expansion and stable run keys.

A config expands into runs: every method with every combination of its parameter lists, times
every noise kind and rate, times ``seeds`` replicates. Each run is described by a frozen
:class:`RunConfig`; its key is the SHA-256 of the canonical JSON of that resolved config (sorted
keys, no whitespace), so the same run always gets the same key, in any process, on any machine.

Runs that differ only along the grid's axes (method and its parameters, noise kind and rate,
replicate) belong to one *experiment*: :func:`experiment_id` hashes the rest of the resolved
config (data, model, the ``[train]`` recipe, exact noise counts, a ``[calibration]`` other
than the default), so runs trained with 3 epochs and with 10 are two experiments and are never
averaged together, while adding a method, a noise rate or seeds to a config keeps its experiment.

Two seeds derive from the run: the *data seed* (noise draw and validation split) from the data
part only (dataset, noise, replicate), so that every method of one replicate sees the same noisy
labels (a paired comparison); and the *training seed* (initialisation, batch order, IVON's
samples) from the full key. The runner is the only place that seeds anything.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoothlab.lab.plan.methods import Method, make_method
from smoothlab.lab.plan.schema import (
    CalibrationConfig,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    TrainConfig,
)

__all__ = [
    "CLEAN_AT_ZERO",
    "EXPERIMENT_PARTS",
    "RunConfig",
    "canonical_json",
    "config_experiment_id",
    "expand_grid",
    "experiment_id",
    "method_variants",
    "plan_runs",
    "run_key",
    "run_seeds",
    "seed_from",
    "teacher_file",
    "teacher_of",
]

Params = tuple[tuple[str, Any], ...]

# Noise kinds whose rate 0 leaves every label alone (see smoothlab.noise.NOISE_KINDS).
CLEAN_AT_ZERO = frozenset({"symmetric", "uniform", "pairflip", "asymmetric-cifar10"})


@dataclass(frozen=True)
class RunConfig:
    """One fully resolved run: what is trained on which data, under which noise, which replicate."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    noise_kind: str
    noise_rate: float
    exact_noise: bool
    method: str
    params: Params
    replicate: int
    # after training: in the key and experiment only when not the default (keys stay as before)
    calibration: CalibrationConfig = dataclasses.field(default_factory=CalibrationConfig)

    @functools.cached_property
    def variant(self) -> Method:
        """The method with this run's parameters, built once per run (not part of its key)."""
        return make_method(self.method, self.params)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples become lists)."""
        raw = dataclasses.asdict(self)
        raw["params"] = dict(self.params)
        if self.calibration == CalibrationConfig():
            del raw["calibration"]
        return json.loads(json.dumps(raw))  # type: ignore[no-any-return]

    def data_dict(self) -> dict[str, Any]:
        """The part that decides the training labels: data, noise and replicate."""
        raw = self.to_dict()
        keep = ("data", "noise_kind", "noise_rate", "exact_noise", "replicate")
        return {k: raw[k] for k in keep}

    def label(self) -> str:
        """The method with its parameters, e.g. ``ls(smoothing=0.1)``."""
        return self.variant.label()


def canonical_json(data: Any) -> str:
    """Sorted keys, no whitespace: the text a run key hashes.

    >>> canonical_json({"b": [1, 2.5], "a": "x"})
    '{"a":"x","b":[1,2.5]}'
    """
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_key(run: RunConfig) -> str:
    """SHA-256 hex digest of the run's canonical JSON: its primary key in the results store.

    >>> from smoothlab.lab.plan.schema import Config
    >>> run = expand_grid(Config())[0]
    >>> key = run_key(run)
    >>> len(key), key == hashlib.sha256(canonical_json(run.to_dict()).encode()).hexdigest()
    (64, True)
    >>> run_key(dataclasses.replace(run, replicate=1)) == key
    False
    """
    return hashlib.sha256(canonical_json(run.to_dict()).encode()).hexdigest()


EXPERIMENT_PARTS = ("data", "model", "train", "exact_noise")  # what every run of a grid shares
# plain data of the default [calibration], which an experiment id leaves out
_DEFAULT_CALIBRATION = json.loads(json.dumps(dataclasses.asdict(CalibrationConfig())))


def experiment_id(run: Mapping[str, Any]) -> str:
    """The experiment of a run, from its plain data (:meth:`RunConfig.to_dict`, or a stored row's
    config): the first 16 hex digits of the SHA-256 of the canonical JSON of
    :data:`EXPERIMENT_PARTS`. A resolved config (:func:`~.schema.config_to_dict`) gives the
    same id through :func:`config_experiment_id`.

    >>> from smoothlab.lab.plan.schema import Config, TrainConfig
    >>> def ids(epochs):
    ...     runs = expand_grid(Config(train=TrainConfig(epochs=epochs)))
    ...     return {experiment_id(run.to_dict()) for run in runs}
    >>> len(ids(3)), ids(3) == ids(10), len(next(iter(ids(3))))
    (1, False, 16)
    """
    parts = {name: run.get(name) for name in EXPERIMENT_PARTS}
    calibration = run.get("calibration")  # the default is left out: ids stay as before it
    if calibration is not None and calibration != _DEFAULT_CALIBRATION:
        parts["calibration"] = calibration
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]


def config_experiment_id(config: Mapping[str, Any]) -> str:
    """:func:`experiment_id` of every run of a resolved config, from the config's plain data.

    >>> from smoothlab.lab.plan.schema import Config, config_to_dict
    >>> config_experiment_id(config_to_dict(Config())) == experiment_id(
    ...     expand_grid(Config())[0].to_dict())
    True
    """
    noise = config.get("noise") or {}
    return experiment_id({**config, "exact_noise": noise.get("exact")})


def seed_from(text: str) -> int:
    """A 63-bit seed from any text (a run key, or a canonical JSON), via SHA-256.

    >>> seed_from("abc")
    4213142463398924266
    """
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) & (2**63 - 1)


def run_seeds(run: RunConfig) -> tuple[int, int]:
    """The run's two seeds: training (weights, batch order) from its key, and data (its noisy
    labels, split) from :meth:`RunConfig.data_dict`, which runs that differ only in their method
    share.

    >>> from smoothlab.lab.plan.schema import Config
    >>> a, b = expand_grid(Config())[:2]
    >>> run_seeds(a) == (seed_from(run_key(a)), seed_from(canonical_json(a.data_dict())))
    True
    >>> run_seeds(a)[1] == run_seeds(dataclasses.replace(a, method="ls"))[1]
    True
    """
    return seed_from(run_key(run)), seed_from(canonical_json(run.data_dict()))


def method_variants(name: str, sweep: dict[str, tuple[Any, ...]]) -> list[Params]:
    """Every combination of the ``sweep`` lists of method ``name``, each checked by building the
    method and filled in with its defaults (a ``late`` parameter only when set, see
    :meth:`~smoothlab.lab.plan.methods.base.Method.key_params`): the ``params`` of the grid's runs.

    >>> method_variants("tsla", {"smoothing": (0.1, 0.2)})
    [(('smoothing', 0.1), ('drop_at', 10)), (('smoothing', 0.2), ('drop_at', 10))]
    """
    names = sorted(sweep)
    combos = itertools.product(*(sweep[n] for n in names))
    variants = []
    for values in combos:
        params = tuple(zip(names, values, strict=True))
        variants.append(make_method(name, params).key_params())  # checked, defaults filled
    return variants


def expand_grid(config: Config) -> list[RunConfig]:
    """All runs of ``config``, without duplicates, in a stable order.

    A noise rate of 0 is the same clean data for every kind whose rate 0 is the identity, so
    it is kept once, as kind ``"none"``; other kinds (class-dependent and instance noise still
    flip labels at rate 0) keep their own rate-0 runs.
    """
    noise = sorted(
        {
            ("none", 0.0) if r == 0 and k in CLEAN_AT_ZERO else (k, r)
            for k in config.noise.kinds
            for r in config.noise.rates
        },
        key=lambda kr: (kr[1], kr[0]),
    )
    runs: dict[str, RunConfig] = {}
    for name, sweep in config.methods.items():
        for params in method_variants(name, dict(sweep)):
            for (kind, rate), replicate in itertools.product(noise, range(config.seeds)):
                run = RunConfig(
                    data=config.data,
                    model=config.model,
                    train=config.train,
                    noise_kind=kind,
                    noise_rate=rate,
                    exact_noise=config.noise.exact,
                    method=name,
                    params=params,
                    replicate=replicate,
                    calibration=config.calibration,
                )
                runs.setdefault(run_key(run), run)
    return list(runs.values())


def teacher_of(run: RunConfig) -> RunConfig | None:
    """The ``ce`` run that ``run`` smooths towards; None when its teacher is a weights file."""
    if dict(run.params).get("teacher") != "ce":
        return None
    return dataclasses.replace(run, method="ce", params=())


def teacher_file(run: RunConfig) -> Path:
    """The weights file named by ``run``'s ``teacher`` parameter."""
    return Path(str(dict(run.params)["teacher"]))


def plan_runs(config: Config) -> list[RunConfig]:
    """The grid plus the ``ce`` teachers it needs; checks teacher files exist.

    Two seeds x three clean-or-noisy settings of ``ls-teacher``, plus their ``ce`` teachers:

    >>> from smoothlab.lab.plan.loading import config_from_dict
    >>> runs = plan_runs(config_from_dict({"methods": {"ls-teacher": {}}}))
    >>> len(runs), sorted({r.method for r in runs})
    (12, ['ce', 'ls-teacher'])
    >>> plan_runs(config_from_dict({"methods": {"ls-teacher": {"teacher": "t.pt"}}}))
    Traceback (most recent call last):
    ...
    smoothlab.lab.plan.schema.ConfigError: `methods.ls-teacher.teacher` file not found: t.pt
    """
    runs = expand_grid(config)
    keys = {run_key(r) for r in runs}
    for run in list(runs):
        if not run.variant.needs_teacher:
            continue
        teacher = teacher_of(run)
        if teacher is None:
            path = teacher_file(run)
            if not path.is_file():
                raise ConfigError(f"`methods.{run.method}.teacher` file not found: {path}")
        elif run_key(teacher) not in keys:
            runs.append(teacher)
            keys.add(run_key(teacher))
    return runs
