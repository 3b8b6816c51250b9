"""The methods registry: one frozen dataclass per method, its fields are its sweepable parameters.

A method turns into an :class:`~smoothlab.lab.plan.objectives.Objective` (the training loss,
called by the loop with the epoch, which the loop owns) and names the optimizer kind it needs, a
key of :data:`smoothlab.lab.train.optimizers.OPTIMIZERS`: the train config's own (``default``),
``ivon`` or ``sam``. A method may also train with its own learning rate and
schedule, as IVON's paper does: parameters listed in its ``overrides`` replace the ``[train]`` key
of the same name (:meth:`Method.train_config`), unless left unset (``""`` or a negative number).
The CLI's choices, ``smoothlab list`` and plot legends derive from :data:`METHODS`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from smoothlab._checks import fail
from smoothlab.lab.plan.objectives import Objective, OnlineObjective, Stateless, cross_entropy
from smoothlab.lab.plan.schema import ConfigError, TrainConfig

__all__ = [
    "METHODS",
    "RENAMED",
    "ConfidencePenalty",
    "CrossEntropy",
    "Ivon",
    "LabelRelaxation",
    "LabelSmoothing",
    "Method",
    "NegativeSmoothing",
    "OnlineSmoothing",
    "Sam",
    "TeacherSmoothing",
    "TwoStageSmoothing",
    "make_method",
    "method_fields",
    "resolved_parameters",
]


def _is_set(value: object) -> bool:
    """An override is unset (the ``[train]`` value applies) when ``""`` or a negative number."""
    return value != "" and not (isinstance(value, int | float) and value < 0)


def _check(ok: bool, path: str, expected: str, got: object) -> None:
    if not ok:
        raise fail(path, expected, got, kind=ConfigError)


@dataclass(frozen=True)
class Method:
    """Base: a method's name, description, optimizer kind, and whether it needs a teacher."""

    name: ClassVar[str]
    description: ClassVar[str]
    optimizer: ClassVar[str] = "default"
    needs_teacher: ClassVar[bool] = False
    primary: ClassVar[tuple[str, ...]] = ()  # always shown in labels
    # parameters that replace the [train] key of that name (see set_overrides)
    overrides: ClassVar[tuple[str, ...]] = ()

    def set_overrides(self) -> dict[str, Any]:
        """The ``overrides`` this method sets, by name (unset ones keep the ``[train]`` value)."""
        return {n: getattr(self, n) for n in self.overrides if _is_set(getattr(self, n))}

    def train_config(self, train: TrainConfig) -> TrainConfig:
        """The ``[train]`` recipe this method trains with: ``train`` with its set overrides."""
        return dataclasses.replace(train, **self.set_overrides())

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        """The training loss; plain cross-entropy unless a subclass says otherwise."""
        return Stateless(cross_entropy)

    def label(self) -> str:
        """``name(param=value, ...)``: the row label in tables and plot legends.

        Shows the method's ``primary`` parameters and every other one that differs from its
        default, so distinct variants never share a label.
        """
        shown = [
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if f.name in self.primary or getattr(self, f.name) != f.default
        ]
        return f"{self.name}({', '.join(shown)})" if shown else self.name


@dataclass(frozen=True)
class CrossEntropy(Method):
    """Cross-entropy with the (noisy) one-hot labels: ``-log p_y``."""

    name: ClassVar[str] = "ce"
    description: ClassVar[str] = "cross-entropy with one-hot targets (the baseline)"


@dataclass(frozen=True)
class LabelSmoothing(Method):
    """Label smoothing: cross-entropy with targets ``(1 - r) onehot(y) + r / K`` (Szegedy et al.,
    CVPR 2016), :func:`smoothlab.losses.label_smoothing_cross_entropy`."""

    name: ClassVar[str] = "ls"
    primary: ClassVar[tuple[str, ...]] = ("smoothing",)
    description: ClassVar[str] = (
        "label smoothing: (1 - r) one-hot + r uniform (Szegedy et al. 2016)"
    )
    smoothing: float = 0.1

    def __post_init__(self) -> None:
        _check(self.smoothing <= 1, f"methods.{self.name}.smoothing", "<= 1", self.smoothing)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import label_smoothing_cross_entropy

        r = self.smoothing
        return Stateless(lambda x, y, i, e: label_smoothing_cross_entropy(x, y, r))


@dataclass(frozen=True)
class NegativeSmoothing(LabelSmoothing):
    """Generalized label smoothing with a negative rate ``r < 0`` (Wei et al., ICML 2022): the
    same targets, which now push mass away from the other classes. Its loss is unbounded below;
    the paper warms up with cross-entropy first (``train.switch_epoch``)."""

    name: ClassVar[str] = "nls"
    description: ClassVar[str] = (
        "generalized label smoothing with r < 0 (Wei et al. 2022); pair with train.switch_epoch"
    )
    smoothing: float = -0.2


@dataclass(frozen=True)
class LabelRelaxation(Method):
    """Label relaxation (Lienen & Hüllermeier, AAAI 2021): zero loss when ``p_y >= 1 - alpha``,
    else the KL divergence to the credal set, :func:`smoothlab.losses.label_relaxation_loss`."""

    name: ClassVar[str] = "relax"
    primary: ClassVar[tuple[str, ...]] = ("alpha",)
    description: ClassVar[str] = "label relaxation: zero loss inside a credal set (Lienen 2021)"
    alpha: float = 0.1

    def __post_init__(self) -> None:
        _check(0 < self.alpha < 1, "methods.relax.alpha", "in (0, 1)", self.alpha)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import label_relaxation_loss

        alpha = self.alpha
        return Stateless(lambda x, y, i, e: label_relaxation_loss(x, y, alpha))


@dataclass(frozen=True)
class ConfidencePenalty(Method):
    """Confidence penalty (Pereyra et al., 2017): ``-log p_y - beta H(p)``,
    :func:`smoothlab.losses.confidence_penalty_loss`."""

    name: ClassVar[str] = "cp"
    primary: ClassVar[tuple[str, ...]] = ("beta",)
    description: ClassVar[str] = "cross-entropy minus beta x entropy (Pereyra et al. 2017)"
    beta: float = 0.1

    def __post_init__(self) -> None:
        _check(self.beta >= 0, "methods.cp.beta", ">= 0", self.beta)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import confidence_penalty_loss

        beta = self.beta
        return Stateless(lambda x, y, i, e: confidence_penalty_loss(x, y, beta))


@dataclass(frozen=True)
class OnlineSmoothing(Method):
    """Online label smoothing (Zhang et al., IEEE TIP 2021): ``alpha CE + (1 - alpha)`` soft CE
    towards class-wise soft labels from the last epoch's correct predictions."""

    name: ClassVar[str] = "ols"
    primary: ClassVar[tuple[str, ...]] = ("alpha",)
    description: ClassVar[str] = "online label smoothing: class-wise soft labels (Zhang 2021)"
    alpha: float = 0.5

    def __post_init__(self) -> None:
        _check(0 <= self.alpha <= 1, "methods.ols.alpha", "in [0, 1]", self.alpha)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        return OnlineObjective(num_classes, self.alpha)


@dataclass(frozen=True)
class TwoStageSmoothing(Method):
    """Two-stage label smoothing, TSLA (Xu et al., 2020): smoothing ``r`` before epoch
    ``drop_at``, cross-entropy after; the schedule is :func:`smoothlab.schedules.two_stage`."""

    name: ClassVar[str] = "tsla"
    primary: ClassVar[tuple[str, ...]] = ("smoothing", "drop_at")
    description: ClassVar[str] = "two-stage: smoothing r before epoch drop_at, none after (Xu 2020)"
    smoothing: float = 0.1
    drop_at: int = 10

    def __post_init__(self) -> None:
        _check(self.smoothing <= 1, "methods.tsla.smoothing", "<= 1", self.smoothing)
        _check(self.drop_at >= 0, "methods.tsla.drop_at", ">= 0", self.drop_at)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import label_smoothing_cross_entropy
        from smoothlab.schedules import two_stage

        schedule = two_stage(self.smoothing, self.drop_at)
        return Stateless(lambda x, y, i, e: label_smoothing_cross_entropy(x, y, schedule(e)))


@dataclass(frozen=True)
class TeacherSmoothing(Method):
    """Smoothing towards a teacher: targets ``(1 - r) onehot(y) + r q(x)`` with ``q`` the
    teacher's softmax on each training example (LSR-pre of Xu et al., 2020); ``drop_at > 0``
    drops it after that epoch (TSLA-pre)."""

    name: ClassVar[str] = "ls-teacher"
    primary: ClassVar[tuple[str, ...]] = ("smoothing",)
    description: ClassVar[str] = (
        "smoothing towards a teacher's predictions (LSR-pre; TSLA-pre with drop_at > 0)"
    )
    needs_teacher: ClassVar[bool] = True
    smoothing: float = 0.5
    teacher: str = "ce"  # "ce" = the ce run with the same data, noise and seed; else a path
    drop_at: int = 0  # > 0: no smoothing from this epoch on (two-stage, Xu et al. 2020)

    def __post_init__(self) -> None:
        _check(
            0 <= self.smoothing <= 1, "methods.ls-teacher.smoothing", "in [0, 1]", self.smoothing
        )
        _check(self.drop_at >= 0, "methods.ls-teacher.drop_at", ">= 0", self.drop_at)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import label_smoothing_cross_entropy
        from smoothlab.schedules import constant, two_stage

        if teacher_probs is None:
            raise ValueError("`teacher_probs` must be given for ls-teacher, got None")
        probs = teacher_probs
        rate = two_stage(self.smoothing, self.drop_at) if self.drop_at else constant(self.smoothing)
        return Stateless(
            lambda x, y, i, e: label_smoothing_cross_entropy(
                x, y, rate(e), prior=probs[i].to(x.device)
            )
        )


@dataclass(frozen=True)
class Ivon(Method):
    """Cross-entropy trained with IVON (Shen et al., ICML 2024), which Yang et al. (2025) show
    acts as adaptive, per-example label noise; :class:`smoothlab.optim.IVON`.

    IVON brings its own learning-rate recipe: ``lr`` always replaces ``train.lr``; ``lr_schedule``
    (constant | step | cosine) and ``warmup_epochs`` replace the ``[train]`` keys of the same
    name when set (``""`` and ``-1``, the defaults, keep the ``[train]`` values). Yang et al.
    (2025, App. C.2) train IVON with lr 0.2 annealed to zero by a cosine schedule after a 5-epoch
    linear warm-up, and SGD, LS and SAM with step decay: ``lr_schedule = "cosine"``,
    ``warmup_epochs = 5`` here, ``lr_schedule = "step"`` in ``[train]``.
    """

    name: ClassVar[str] = "ivon"
    description: ClassVar[str] = "IVON variational learning: adaptive label noise (Yang 2025)"
    optimizer: ClassVar[str] = "ivon"
    overrides: ClassVar[tuple[str, ...]] = ("lr", "lr_schedule", "warmup_epochs")
    lr: float = 0.2
    hess_init: float = 0.9
    beta2: float = 0.99999
    weight_decay: float = 1e-4
    ess: float = 0.0  # effective sample size; 0 = the number of training examples
    test_samples: int = 0  # posterior samples averaged at test time; 0 = predict with the mean
    lr_schedule: str = ""  # constant | step | cosine; "" = train.lr_schedule
    warmup_epochs: int = -1  # linear warm-up epochs; -1 = train.warmup_epochs

    def __post_init__(self) -> None:
        _check(self.lr > 0, "methods.ivon.lr", "> 0", self.lr)
        _check(self.hess_init > 0, "methods.ivon.hess_init", "> 0", self.hess_init)
        _check(0 <= self.beta2 < 1, "methods.ivon.beta2", "in [0, 1)", self.beta2)
        _check(self.ess >= 0 and math.isfinite(self.ess), "methods.ivon.ess", ">= 0", self.ess)
        _check(self.test_samples >= 0, "methods.ivon.test_samples", ">= 0", self.test_samples)
        schedules = ("", "constant", "step", "cosine")
        expected = 'one of "", constant, step, cosine'
        _check(
            self.lr_schedule in schedules, "methods.ivon.lr_schedule", expected, self.lr_schedule
        )
        _check(self.warmup_epochs >= -1, "methods.ivon.warmup_epochs", ">= -1", self.warmup_epochs)


@dataclass(frozen=True)
class Sam(Method):
    """Cross-entropy trained with SAM (Foret et al., ICLR 2021; ``adaptive`` = ASAM) around the
    train config's optimizer; :class:`smoothlab.optim.SAM`."""

    name: ClassVar[str] = "sam"
    primary: ClassVar[tuple[str, ...]] = ("rho",)
    description: ClassVar[str] = "sharpness-aware minimisation around the base optimizer (Foret)"
    optimizer: ClassVar[str] = "sam"
    rho: float = 0.05
    adaptive: bool = False

    def __post_init__(self) -> None:
        _check(self.rho >= 0, "methods.sam.rho", ">= 0", self.rho)


METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        CrossEntropy,
        LabelSmoothing,
        NegativeSmoothing,
        LabelRelaxation,
        ConfidencePenalty,
        OnlineSmoothing,
        TwoStageSmoothing,
        TeacherSmoothing,
        Ivon,
        Sam,
    )
}


# Old method names -> new ones: a config with an old name stops with one line naming the new one.
# ``lr`` (label relaxation) read as a learning rate in ``[methods.lr]``.
RENAMED = {"lr": "relax"}


def method_fields(name: str) -> dict[str, Any]:
    """Parameter name -> type for the method ``name`` (for config checking)."""
    cls = METHODS[name]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def resolved_parameters(
    name: str, sweep: Mapping[str, tuple[Any, ...]], train: TrainConfig
) -> dict[str, list[Any]]:
    """Every parameter of method ``name`` with its values: the ``sweep`` given, else the default;
    unset overrides show the ``[train]`` value they inherit (for ``show-config``)."""
    cls = METHODS[name]
    resolved = {}
    for f in dataclasses.fields(cls):
        values = list(sweep.get(f.name, (f.default,)))
        if f.name in cls.overrides:
            values = [v if _is_set(v) else getattr(train, f.name) for v in values]
        resolved[f.name] = values
    return resolved


def make_method(name: str, params: dict[str, Any] | tuple[tuple[str, Any], ...]) -> Method:
    """Instantiate the method ``name`` with ``params``."""
    if name not in METHODS:
        raise ConfigError(f"unknown method `{name}` (valid: {', '.join(METHODS)})")
    return METHODS[name](**dict(params))
