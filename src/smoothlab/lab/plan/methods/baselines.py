"""The noisy-label baselines as lab methods (issue 17, section 1): loss correction, peer loss,
f-divergence, generalized and symmetric cross-entropy.

"To smooth or not" (Wei et al., ICML 2022, Table 5) compares negative smoothing with backward
and forward loss correction (Patrini et al., CVPR 2017), peer loss (Liu & Guo, ICML 2020) and
f-divergence training (Wei & Liu, ICLR 2021); GCE (Zhang & Sabuncu, NeurIPS 2018) and SCE
(Wang et al., ICCV 2019) are the robust losses every noisy-label table has. Each objective calls
the library's public function of :mod:`smoothlab.losses`. All of them train with the ``[train]``
optimizer, so they stack (each run's objective on its slice of the stacked logits), except loss
correction with a transition estimated from a teacher, which trains alone.

Loss correction needs the run's transition matrix ``T[clean, noisy]`` (``transition``):

- ``"true"``: the run's realised noise, :func:`smoothlab.noise.estimate_transition` of its clean
  and noisy training labels: the ``[noise]`` matrix up to sampling error, and defined for every
  noise kind (instance-dependent and human noise included).
- ``"estimated"``: the same count with the teacher's predicted classes standing in for the clean
  labels, ``T[i, j] = P(noisy = j | the teacher predicts i)``; the teacher is a ``ce`` run on
  the same data, noise and seed (``teacher = "ce"``), or a weights file, as for ``ls-teacher``.
  A class the teacher never predicts keeps an identity row.
- ``"anchors"``: Patrini et al.'s own estimator,
  :func:`smoothlab.noise.estimate_transition_from_anchors` of the same teacher's softmax outputs
  on the training examples: row ``i`` is the output at the example whose probability of class
  ``i`` is that column's 97th percentile. No clean labels and no counting: the teacher, trained
  on the noisy labels, estimates ``p(noisy | x)``, which is row ``i`` of ``T`` where ``x`` surely
  belongs to class ``i``.

>>> import torch
>>> clean, noisy = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
>>> context = RunContext(2, noisy, clean, seed=0)
>>> run_transition("true", context)
tensor([[0.5000, 0.5000],
        [0.0000, 1.0000]], dtype=torch.float64)
>>> teacher = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.8, 0.2]])
>>> run_transition("estimated", context, teacher)  # the teacher never predicts class 1
tensor([[0.2500, 0.7500],
        [0.0000, 1.0000]], dtype=torch.float64)
>>> run_transition("anchors", context, teacher)  # rows: the outputs at examples 0 and 3
tensor([[0.9000, 0.1000],
        [0.8000, 0.2000]], dtype=torch.float64)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from smoothlab.lab.plan.methods.base import Method, RunContext, check
from smoothlab.lab.plan.objectives import Objective, Stateless

__all__ = [
    "TRANSITIONS",
    "BackwardCorrection",
    "FDivergence",
    "ForwardCorrection",
    "GeneralizedCrossEntropy",
    "PeerLoss",
    "PeerObjective",
    "SymmetricCrossEntropy",
    "run_transition",
]

TRANSITIONS = ("true", "estimated", "anchors")


def run_transition(source: str, context: RunContext, teacher_probs: Tensor | None = None) -> Tensor:
    """The ``(K, K)`` float64 transition matrix a loss-corrected run trains with (see above)."""
    from smoothlab.noise import estimate_transition, estimate_transition_from_anchors

    if source == "true":
        return estimate_transition(context.clean_labels, context.labels, context.num_classes)
    if teacher_probs is None:
        raise ValueError("`teacher_probs` must be given for an estimated transition, got None")
    if source == "anchors":
        return estimate_transition_from_anchors(teacher_probs).cpu()
    predicted = teacher_probs.argmax(dim=1).cpu()
    matrix = estimate_transition(predicted, context.labels.cpu(), context.num_classes)
    # a class the teacher never predicts has no estimate (a NaN row): assume it is not flipped
    absent = matrix.isnan().any(dim=1)
    matrix[absent] = torch.eye(context.num_classes, dtype=matrix.dtype)[absent]
    return matrix


@dataclass(frozen=True)
class _LossCorrection(Method):
    """Loss correction with the run's true or a teacher-estimated transition matrix."""

    primary: ClassVar[tuple[str, ...]] = ("transition",)
    transition: str = "true"  # true | estimated (teacher's classes) | anchors (teacher's softmax)
    teacher: str = "ce"  # estimated, anchors: the ce run with the same data, noise, seed; or a path

    def __post_init__(self) -> None:
        expected = f"one of {', '.join(TRANSITIONS)}"
        path = f"methods.{self.name}"
        check(self.transition in TRANSITIONS, f"{path}.transition", expected, self.transition)
        check(bool(self.teacher), f"{path}.teacher", '"ce" or a weights file', self.teacher)

    # an instance's choice here, where other methods fix it per class; the lab reads it from
    # instances (run.variant), so a property serves where the base declares a ClassVar
    @property
    def needs_teacher(self) -> bool:  # type: ignore[override]
        """Only an estimated transition (counted or from anchors) needs a teacher's predictions."""
        return self.transition != "true"

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        """Loss correction needs the run's labels: the loop builds it with :meth:`run_objective`."""
        raise ValueError(f"`{self.name}` needs the run's labels: build it with run_objective")


@dataclass(frozen=True)
class ForwardCorrection(_LossCorrection):
    """Forward loss correction (Patrini et al., CVPR 2017): cross-entropy of the noisy label
    under the predictions pushed through ``T``,
    :func:`smoothlab.losses.forward_corrected_cross_entropy`."""

    name: ClassVar[str] = "fcorrect"
    description: ClassVar[str] = (
        "forward loss correction: -log (p T)_y, T true|estimated|anchors (Patrini 2017)"
    )

    def run_objective(self, context: RunContext, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import forward_corrected_cross_entropy

        matrix = run_transition(self.transition, context, teacher_probs)
        return Stateless(
            lambda x, y, i, e: forward_corrected_cross_entropy(x, y, matrix.to(x.device))
        )


@dataclass(frozen=True)
class BackwardCorrection(_LossCorrection):
    """Backward loss correction (Patrini et al., CVPR 2017): the cross-entropies of all labels
    mixed by row ``y`` of ``T^-1``, unbiased and unbounded below,
    :func:`smoothlab.losses.backward_corrected_cross_entropy`; ``T`` must be invertible."""

    name: ClassVar[str] = "bcorrect"
    description: ClassVar[str] = (
        "backward loss correction: CEs mixed by T^-1, T true|estimated|anchors (Patrini 2017)"
    )

    def run_objective(self, context: RunContext, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import backward_corrected_cross_entropy

        matrix = run_transition(self.transition, context, teacher_probs)
        return Stateless(
            lambda x, y, i, e: backward_corrected_cross_entropy(x, y, matrix.to(x.device))
        )


class PeerObjective:
    """Peer loss with a generator of its own, seeded from the run and checkpointed, so a run
    draws the same peers every time, resumed or not.

    >>> objective = PeerObjective(alpha=0.5, seed=0)
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> state = objective.state_dict()
    >>> first = objective(logits, torch.tensor([0, 1, 0]), torch.arange(3), 0)
    >>> objective.load_state_dict(state)
    >>> first, objective(logits, torch.tensor([0, 1, 0]), torch.arange(3), 0)
    (tensor(-0.3111), tensor(-0.3111))
    """

    def __init__(self, alpha: float, seed: int) -> None:
        self.alpha = alpha
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, logits: Tensor, target: Tensor, index: Tensor, epoch: int) -> Tensor:
        from smoothlab.losses import peer_loss

        return peer_loss(logits, target, alpha=self.alpha, generator=self.generator)

    def end_epoch(self) -> None:
        pass

    def observe_validation(self, logits: Tensor, target: Tensor) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


@dataclass(frozen=True)
class PeerLoss(Method):
    """Peer loss (Liu & Guo, ICML 2020): cross-entropy minus ``alpha`` times the cross-entropy
    of a random (input, label) peer pair from the batch, :func:`smoothlab.losses.peer_loss`; the
    pairs come from a generator seeded from the run (``PeerObjective``)."""

    name: ClassVar[str] = "peer"
    primary: ClassVar[tuple[str, ...]] = ("alpha",)
    description: ClassVar[str] = "peer loss: CE minus alpha x CE of random peer pairs (Liu 2020)"
    alpha: float = 1.0  # weight of the peer term; 0 is cross-entropy

    def __post_init__(self) -> None:
        check(self.alpha >= 0, "methods.peer.alpha", ">= 0", self.alpha)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        """Peer loss draws its pairs from the run's seed: built with :meth:`run_objective`."""
        raise ValueError("`peer` needs the run's seed: build it with run_objective")

    def run_objective(self, context: RunContext, teacher_probs: Tensor | None = None) -> Objective:
        # a stream of its own: the batch order's generator stays as every other method's
        return PeerObjective(self.alpha, context.seed ^ 0x9EE5)


@dataclass(frozen=True)
class FDivergence(Method):
    """f-divergence training (Wei & Liu, ICLR 2021): minus the variational bound of the
    divergence between the joint of (prediction, noisy label) and the product of marginals,
    :func:`smoothlab.losses.f_divergence_loss`."""

    name: ClassVar[str] = "fdiv"
    primary: ClassVar[tuple[str, ...]] = ("divergence",)
    description: ClassVar[str] = "f-divergence between joint and product (Wei & Liu 2021)"
    divergence: str = "total-variation"  # a name of smoothlab.losses.fdivergence.DIVERGENCES

    def __post_init__(self) -> None:
        from smoothlab.losses.fdivergence import DIVERGENCES

        expected = f"one of {', '.join(DIVERGENCES)}"
        check(self.divergence in DIVERGENCES, "methods.fdiv.divergence", expected, self.divergence)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import f_divergence_loss

        divergence = self.divergence
        return Stateless(lambda x, y, i, e: f_divergence_loss(x, y, divergence=divergence))


@dataclass(frozen=True)
class GeneralizedCrossEntropy(Method):
    """Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018): ``(1 - p_y^q) / q``, between
    cross-entropy (``q -> 0``) and MAE (``q = 1``),
    :func:`smoothlab.losses.generalized_cross_entropy`."""

    name: ClassVar[str] = "gce"
    primary: ClassVar[tuple[str, ...]] = ("q",)
    description: ClassVar[str] = "generalized cross-entropy (1 - p_y^q) / q (Zhang 2018)"
    q: float = 0.7  # in (0, 1]: cross-entropy as q -> 0, MAE at 1

    def __post_init__(self) -> None:
        check(0 < self.q <= 1, "methods.gce.q", "in (0, 1]", self.q)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import generalized_cross_entropy

        q = self.q
        return Stateless(lambda x, y, i, e: generalized_cross_entropy(x, y, q=q))


@dataclass(frozen=True)
class SymmetricCrossEntropy(Method):
    """Symmetric cross-entropy (Wang et al., ICCV 2019): ``alpha CE + beta`` reverse CE with
    ``log 0`` clipped to -4, :func:`smoothlab.losses.symmetric_cross_entropy`."""

    name: ClassVar[str] = "sce"
    primary: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    description: ClassVar[str] = "symmetric cross-entropy: alpha CE + beta reverse CE (Wang 2019)"
    alpha: float = 0.1  # weight of cross-entropy
    beta: float = 1.0  # weight of reverse cross-entropy (log 0 clipped to -4)

    def __post_init__(self) -> None:
        check(self.alpha >= 0, "methods.sce.alpha", ">= 0", self.alpha)
        check(self.beta >= 0, "methods.sce.beta", ">= 0", self.beta)
        check(self.alpha + self.beta > 0, "methods.sce.beta", "> 0 when alpha = 0", self.beta)

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        from smoothlab.losses import symmetric_cross_entropy

        alpha, beta = self.alpha, self.beta
        return Stateless(lambda x, y, i, e: symmetric_cross_entropy(x, y, alpha=alpha, beta=beta))
