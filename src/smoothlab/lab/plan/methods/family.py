"""The newer members of the smoothing family as lab methods (issue 17, section 2).

Each method's objective calls the library's public function: logit regularisers
(:mod:`smoothlab.losses.regularized`), focal losses (:mod:`smoothlab.losses.focal`,
:class:`smoothlab.adafocal.AdaFocalLoss`) and self-distillation targets
(:mod:`smoothlab.distill`). AdaFocal and PS-KD keep state between epochs
(:mod:`smoothlab.lab.plan.stateful`), checkpointed like online smoothing's. All of them train
with the ``[train]`` optimizer and no teacher, so they stack (each run's objective on its slice
of the stacked logits; AdaFocal gets its validation logits from the shared epoch record).

>>> import torch
>>> method = MaxSuppression(alpha=0.1, ramp_epochs=4)
>>> method.label()
'maxsup(alpha=0.1, ramp_epochs=4)'
>>> logits = torch.tensor([[2.0, 0.5, -1.0], [2.0, 0.5, -1.0]])
>>> method.objective(3)(logits, torch.tensor([0, 1]), torch.tensor([0, 1]), 4)  # alpha = 0.2
tensor(1.2913)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from smoothlab.lab.plan.methods.base import Method, RunContext, check
from smoothlab.lab.plan.objectives import Objective, Stateless
from smoothlab.lab.plan.stateful import AdaFocalObjective, SelfDistillationObjective

__all__ = [
    "AdaFocal",
    "Focal",
    "LogitNorm",
    "LogitPenalty",
    "MarginLabelSmoothing",
    "MaxSuppression",
    "ProgressiveSelfDistillation",
    "SampleDependentFocal",
    "ZipfSmoothing",
]


def _ramp(name: str, ramp_epochs: int, epochs: int = 0) -> int:
    """Epochs of a ramp: ``ramp_epochs``, or with -1 the run's ``epochs`` (which only a run
    knows: :meth:`Method.run_objective` passes them)."""
    if ramp_epochs >= 0:
        return ramp_epochs
    if epochs <= 0:
        raise ValueError(
            f"`{name}` with ramp_epochs = -1 ramps over the run's epochs: build it with "
            "run_objective, got no epochs"
        )
    return epochs


@dataclass(frozen=True)
class MaxSuppression(Method):
    """MaxSup (Zhou et al., NeurIPS 2025): ``CE + alpha (max_j z_j - mean_j z_j)``, label
    smoothing with ``z_y`` replaced by the top logit; :func:`smoothlab.losses.max_suppression_loss`.

    ``ramp_epochs`` turns on the authors' schedule,
    :func:`smoothlab.losses.max_suppression_schedule`: ``alpha`` rises linearly to ``alpha_end``
    over that many epochs, or over the whole run with -1 (their recipe: 0.1 to 0.2 over the
    run); 0, the default, keeps ``alpha`` constant.
    """

    name: ClassVar[str] = "maxsup"
    primary: ClassVar[tuple[str, ...]] = ("alpha",)
    description: ClassVar[str] = "max suppression: LS with the top logit for z_y (Zhou 2025)"
    alpha: float = 0.1  # the suppression weight (the smoothing rate it replaces); the ramp's start
    alpha_end: float = 0.2  # reached after ramp_epochs (unused when ramp_epochs = 0)
    ramp_epochs: int = 0  # epochs of the linear ramp; 0 = constant alpha; -1 = train.epochs

    def __post_init__(self) -> None:
        check(self.alpha >= 0, "methods.maxsup.alpha", ">= 0", self.alpha)
        check(self.alpha_end >= 0, "methods.maxsup.alpha_end", ">= 0", self.alpha_end)
        check(self.ramp_epochs >= -1, "methods.maxsup.ramp_epochs", ">= -1", self.ramp_epochs)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        return self._objective(_ramp(self.name, self.ramp_epochs))

    def run_objective(self, context: RunContext, teacher_probs: Tensor | None = None) -> Objective:
        return self._objective(_ramp(self.name, self.ramp_epochs, context.epochs))

    def _objective(self, ramp: int) -> Objective:
        from smoothlab.losses import max_suppression_loss, max_suppression_schedule
        from smoothlab.schedules import constant

        if ramp:
            alpha = max_suppression_schedule(ramp, start=self.alpha, end=self.alpha_end)
        else:
            alpha = constant(self.alpha)
        return Stateless(lambda x, y, i, e: max_suppression_loss(x, y, alpha=alpha(e)))


@dataclass(frozen=True)
class MarginLabelSmoothing(Method):
    """Margin-based label smoothing, MbLS (Liu et al., CVPR 2022): ``CE + alpha sum_j relu(max_k
    z_k - z_j - margin)``; :func:`smoothlab.losses.margin_label_smoothing_loss`."""

    name: ClassVar[str] = "mbls"
    primary: ClassVar[tuple[str, ...]] = ("margin", "alpha")
    description: ClassVar[str] = "margin-based LS: penalise logit gaps beyond a margin (Liu 2022)"
    margin: float = 10.0  # logit gaps up to this are free
    alpha: float = 0.1  # weight of the penalty on the gaps beyond the margin

    def __post_init__(self) -> None:
        check(self.margin >= 0, "methods.mbls.margin", ">= 0", self.margin)
        check(self.alpha >= 0, "methods.mbls.alpha", ">= 0", self.alpha)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import margin_label_smoothing_loss

        margin, alpha = self.margin, self.alpha
        return Stateless(
            lambda x, y, i, e: margin_label_smoothing_loss(x, y, margin=margin, alpha=alpha)
        )


@dataclass(frozen=True)
class LogitNorm(Method):
    """LogitNorm (Wei et al., ICML 2022): ``CE(z / (tau ||z||_2))``, cross-entropy of logits of
    fixed norm; :func:`smoothlab.losses.logit_norm_loss`."""

    name: ClassVar[str] = "logitnorm"
    primary: ClassVar[tuple[str, ...]] = ("temperature",)
    description: ClassVar[str] = "cross-entropy of logits normalised to norm 1/tau (Wei 2022)"
    temperature: float = 0.04  # tau: the logits are scaled to norm 1 / tau

    def __post_init__(self) -> None:
        check(self.temperature > 0, "methods.logitnorm.temperature", "> 0", self.temperature)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import logit_norm_loss

        tau = self.temperature
        return Stateless(lambda x, y, i, e: logit_norm_loss(x, y, temperature=tau))


@dataclass(frozen=True)
class LogitPenalty(Method):
    """The logit penalty (Dauphin & Cubuk, ICLR 2021): ``CE + beta/2 ||z||_2^2``;
    :func:`smoothlab.losses.logit_penalty_loss`. The paper gives no default (the scale depends on
    the model); 0.01 keeps the penalty of logits of norm 10 at half a nat."""

    name: ClassVar[str] = "logit-penalty"
    primary: ClassVar[tuple[str, ...]] = ("beta",)
    description: ClassVar[str] = "cross-entropy plus beta/2 x squared logit norm (Dauphin 2021)"
    beta: float = 0.01  # weight of beta/2 x the squared logit norm

    def __post_init__(self) -> None:
        check(self.beta >= 0, "methods.logit-penalty.beta", ">= 0", self.beta)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import logit_penalty_loss

        beta = self.beta
        return Stateless(lambda x, y, i, e: logit_penalty_loss(x, y, beta=beta))


@dataclass(frozen=True)
class Focal(Method):
    """Focal loss (Lin et al., ICCV 2017), calibrating per Mukhoti et al. (NeurIPS 2020):
    ``-(1 - p_y)^gamma log p_y``; :func:`smoothlab.losses.focal_loss`."""

    name: ClassVar[str] = "focal"
    primary: ClassVar[tuple[str, ...]] = ("gamma",)
    description: ClassVar[str] = "focal loss -(1 - p_y)^gamma log p_y (Lin 2017, Mukhoti 2020)"
    gamma: float = 2.0  # the focusing parameter; 0 = cross-entropy

    def __post_init__(self) -> None:
        check(self.gamma >= 0, "methods.focal.gamma", ">= 0", self.gamma)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import focal_loss

        gamma = self.gamma
        return Stateless(lambda x, y, i, e: focal_loss(x, y, gamma=gamma))


@dataclass(frozen=True)
class SampleDependentFocal(Method):
    """FLSD-53 (Mukhoti et al., NeurIPS 2020): focal loss with ``gamma = 5`` where ``p_y <
    threshold`` and 3 elsewhere; :func:`smoothlab.losses.sample_dependent_focal_loss`."""

    name: ClassVar[str] = "flsd53"
    description: ClassVar[str] = (
        "sample-dependent focal: gamma 5 if p_y < 0.2, else 3 (Mukhoti 2020)"
    )
    threshold: float = 0.2  # gamma 5 where p_y is below it, 3 elsewhere

    def __post_init__(self) -> None:
        check(0 <= self.threshold <= 1, "methods.flsd53.threshold", "in [0, 1]", self.threshold)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import sample_dependent_focal_loss

        theta = self.threshold
        return Stateless(lambda x, y, i, e: sample_dependent_focal_loss(x, y, threshold=theta))


@dataclass(frozen=True)
class AdaFocal(Method):
    """AdaFocal (Ghosh et al., NeurIPS 2022): one focal ``gamma`` per confidence bin, updated
    after every epoch from the validation split's calibration, switching to the inverse focal
    loss; :class:`smoothlab.adafocal.AdaFocalLoss`. Needs ``data.val_fraction > 0``."""

    name: ClassVar[str] = "adafocal"
    description: ClassVar[str] = "per-bin focal gamma from validation calibration (Ghosh 2022)"
    num_bins: int = 15  # equal-mass confidence bins, each with its gamma
    lam: float = 1.0  # update rate: gamma_b <- gamma_b exp(lam x (confidence - accuracy))
    gamma_init: float = 1.0  # every bin's gamma before the first update

    def __post_init__(self) -> None:
        check(self.num_bins >= 1, "methods.adafocal.num_bins", ">= 1", self.num_bins)
        check(self.lam >= 0, "methods.adafocal.lam", ">= 0", self.lam)
        # AdaFocalLoss clips gammas to [-2, 20]; the start must lie inside
        ok = -2 <= self.gamma_init <= 20
        check(ok, "methods.adafocal.gamma_init", "in [-2, 20]", self.gamma_init)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        return AdaFocalObjective(self.num_bins, lam=self.lam, gamma_init=self.gamma_init)


@dataclass(frozen=True)
class ProgressiveSelfDistillation(Method):
    """PS-KD (Kim et al., ICCV 2021): cross-entropy against ``(1 - a_t) onehot(y) + a_t
    p_{t-1}(x)``, the model's own prediction for the example in the previous epoch;
    :func:`smoothlab.progressive_self_distillation_targets`.

    ``a_t`` rises linearly from 0 to ``alpha`` over ``ramp_epochs`` epochs
    (:func:`smoothlab.distill.progressive_self_distillation_schedule`), by default -1 the whole
    run as in the paper (0.8 over the run); 0 uses ``alpha`` from the start. The first epoch
    has no previous prediction and trains with cross-entropy.
    """

    name: ClassVar[str] = "ps-kd"
    primary: ClassVar[tuple[str, ...]] = ("alpha",)
    description: ClassVar[str] = "self-distillation from last epoch's predictions (Kim 2021)"
    alpha: float = 0.8  # the final weight of last epoch's predictions in the targets
    ramp_epochs: int = -1  # linear ramp from 0 over these epochs; 0 = none; -1 = train.epochs

    def __post_init__(self) -> None:
        check(0 <= self.alpha <= 1, "methods.ps-kd.alpha", "in [0, 1]", self.alpha)
        check(self.ramp_epochs >= -1, "methods.ps-kd.ramp_epochs", ">= -1", self.ramp_epochs)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        return self._objective(_ramp(self.name, self.ramp_epochs))

    def run_objective(self, context: RunContext, teacher_probs: Tensor | None = None) -> Objective:
        return self._objective(_ramp(self.name, self.ramp_epochs, context.epochs))

    def _objective(self, ramp: int) -> Objective:
        from smoothlab.distill import progressive_self_distillation_schedule
        from smoothlab.schedules import constant

        if ramp:
            return SelfDistillationObjective(
                progressive_self_distillation_schedule(self.alpha, ramp)
            )
        return SelfDistillationObjective(constant(self.alpha))


@dataclass(frozen=True)
class ZipfSmoothing(Method):
    """Zipf's label smoothing (Liang et al., ECCV 2022): the smoothing mass on the other classes
    follows Zipf's law ``rank^-power`` over the model's own ranking of them in the same forward
    pass; :func:`smoothlab.zipf_targets`, then cross-entropy with those targets."""

    name: ClassVar[str] = "zipf"
    primary: ClassVar[tuple[str, ...]] = ("smoothing",)
    description: ClassVar[str] = "smoothing mass by Zipf's law over the model's ranks (Liang 2022)"
    smoothing: float = 0.1  # mass moved from the label to the other classes
    power: float = 1.0  # Zipf exponent: the class ranked r gets mass proportional to r^-power

    def __post_init__(self) -> None:
        check(0 <= self.smoothing <= 1, "methods.zipf.smoothing", "in [0, 1]", self.smoothing)
        check(self.power >= 0, "methods.zipf.power", ">= 0", self.power)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.distill import zipf_targets
        from smoothlab.losses import label_smoothing_cross_entropy

        eps, power = self.smoothing, self.power

        def loss(x: Tensor, y: Tensor, i: Tensor, e: int) -> Tensor:
            q = zipf_targets(y, x, smoothing=eps, power=power)
            return label_smoothing_cross_entropy(x, q, 0.0)

        return Stateless(loss)
