"""The smoothing methods of the seed papers, and the optimizers that act as label noise.

Cross-entropy, label smoothing (positive and negative), label relaxation, the confidence
penalty, online, two-stage and teacher smoothing; IVON and SAM, which train cross-entropy with
their own optimizer kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from smoothlab.lab.plan.methods.base import Method, check
from smoothlab.lab.plan.objectives import Objective, OnlineObjective, Stateless

__all__ = [
    "ConfidencePenalty",
    "CrossEntropy",
    "Ivon",
    "LabelRelaxation",
    "LabelSmoothing",
    "NegativeSmoothing",
    "OnlineSmoothing",
    "Sam",
    "TeacherSmoothing",
    "TwoStageSmoothing",
]


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
        check(self.smoothing <= 1, f"methods.{self.name}.smoothing", "<= 1", self.smoothing)

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
        check(0 < self.alpha < 1, "methods.relax.alpha", "in (0, 1)", self.alpha)

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
        check(self.beta >= 0, "methods.cp.beta", ">= 0", self.beta)

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
        check(0 <= self.alpha <= 1, "methods.ols.alpha", "in [0, 1]", self.alpha)

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
        check(self.smoothing <= 1, "methods.tsla.smoothing", "<= 1", self.smoothing)
        check(self.drop_at >= 0, "methods.tsla.drop_at", ">= 0", self.drop_at)

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
        check(0 <= self.smoothing <= 1, "methods.ls-teacher.smoothing", "in [0, 1]", self.smoothing)
        check(self.drop_at >= 0, "methods.ls-teacher.drop_at", ">= 0", self.drop_at)

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
    late: ClassVar[tuple[str, ...]] = ("train_samples",)
    lr: float = 0.2  # IVON's learning rate, always in place of train.lr
    hess_init: float = 0.9  # h0; a weight's posterior std is 1 / sqrt(ess (h + weight_decay))
    beta2: float = 0.99999  # 1 keeps the Hessian, hence the posterior spread, at hess_init (Fig. 6)
    weight_decay: float = 1e-4  # IVON's own delta (train.weight_decay does not reach IVON)
    ess: float = 0.0  # effective sample size; 0 = the number of training examples
    test_samples: int = 0  # posterior samples averaged at test time; 0 = predict with the mean
    train_samples: int = 1  # weight samples per step (forward-backward each); IVON's mc_samples
    lr_schedule: str = ""  # constant | step | cosine; "" = train.lr_schedule
    warmup_epochs: int = -1  # linear warm-up epochs; -1 = train.warmup_epochs

    def __post_init__(self) -> None:
        check(self.lr > 0, "methods.ivon.lr", "> 0", self.lr)
        check(self.hess_init > 0, "methods.ivon.hess_init", "> 0", self.hess_init)
        check(0 <= self.beta2 <= 1, "methods.ivon.beta2", "in [0, 1]", self.beta2)
        check(self.ess >= 0 and math.isfinite(self.ess), "methods.ivon.ess", ">= 0", self.ess)
        check(self.test_samples >= 0, "methods.ivon.test_samples", ">= 0", self.test_samples)
        check(self.train_samples >= 1, "methods.ivon.train_samples", ">= 1", self.train_samples)
        schedules = ("", "constant", "step", "cosine")
        expected = 'one of "", constant, step, cosine'
        check(self.lr_schedule in schedules, "methods.ivon.lr_schedule", expected, self.lr_schedule)
        check(self.warmup_epochs >= -1, "methods.ivon.warmup_epochs", ">= -1", self.warmup_epochs)


@dataclass(frozen=True)
class Sam(Method):
    """Cross-entropy trained with SAM (Foret et al., ICLR 2021; ``adaptive`` = ASAM) around the
    train config's optimizer; :class:`smoothlab.optim.SAM`."""

    name: ClassVar[str] = "sam"
    primary: ClassVar[tuple[str, ...]] = ("rho",)
    description: ClassVar[str] = "sharpness-aware minimisation of the base optimizer (Foret 2021)"
    optimizer: ClassVar[str] = "sam"
    rho: float = 0.05
    adaptive: bool = False

    def __post_init__(self) -> None:
        check(self.rho >= 0, "methods.sam.rho", ">= 0", self.rho)
