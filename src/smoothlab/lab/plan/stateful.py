"""Stateful objectives of the smoothing family: AdaFocal's per-bin gammas and PS-KD's memory.

Both keep state between epochs, as online label smoothing does
(:class:`~smoothlab.lab.plan.objectives.OnlineObjective`), and both checkpoint it through
``state_dict`` (tensors only, so ``torch.load(weights_only=True)`` reads it back):

- :class:`AdaFocalObjective` trains with :class:`smoothlab.adafocal.AdaFocalLoss`; the loop hands
  it the validation split's logits after every epoch (``observe_validation``), from which the
  loss updates one focusing parameter per confidence bin (Ghosh et al., NeurIPS 2022).
- :class:`SelfDistillationObjective` is PS-KD (Kim et al., ICCV 2021): cross-entropy against
  :func:`smoothlab.progressive_self_distillation_targets`, the label mixed with the model's own
  softmax output for the same example in the previous epoch. It remembers the outputs of the
  training forward passes, as the authors' implementation does, so it costs no extra pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from smoothlab.schedules import Schedule

__all__ = ["AdaFocalObjective", "SelfDistillationObjective"]


class AdaFocalObjective:
    """AdaFocal's loss as a lab objective: ``gamma_b`` per confidence bin, updated from the
    validation split's calibration by :meth:`observe_validation` (see
    :class:`smoothlab.adafocal.AdaFocalLoss` for the rule).

    >>> objective = AdaFocalObjective(num_bins=2)
    >>> logits, target = torch.tensor([[3.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
    >>> round(objective(logits, target, torch.tensor([0, 1]), 0).item(), 4)
    0.9378
    >>> objective.observe_validation(torch.tensor([[4.0, 0.0], [0.5, 0.0]]), torch.tensor([1, 0]))
    >>> objective.state_dict()["gammas"]
    tensor([0.6855, 2.6698], dtype=torch.float64)
    """

    def __init__(self, num_bins: int = 15, *, lam: float = 1.0, gamma_init: float = 1.0) -> None:
        from smoothlab.adafocal import AdaFocalLoss

        self.loss = AdaFocalLoss(num_bins, lam=lam, gamma_init=gamma_init)
        self.unobserved = False  # an epoch ended and no validation logits came

    def __call__(self, logits: Tensor, target: Tensor, index: Tensor, epoch: int) -> Tensor:
        if self.unobserved:  # without a split the gammas would silently stay at gamma_init
            raise ValueError(
                "`data.val_fraction` must be > 0 for adafocal (its gammas follow the "
                "validation split's calibration), got no validation split"
            )
        return self.loss(logits, target)  # type: ignore[no-any-return]

    def end_epoch(self) -> None:
        self.unobserved = True  # the gammas move with the validation data, in observe_validation

    def observe_validation(self, logits: Tensor, target: Tensor) -> None:
        """Update every bin's gamma from the validation split's logits and labels."""
        self.unobserved = False
        bins = self.loss.num_bins
        if len(target) < bins:  # every equal-mass bin needs an example
            raise ValueError(
                f"`data.val_fraction` must leave >= num_bins = {bins} validation examples for "
                f"adafocal, got {len(target)}"
            )
        self.loss.update(logits, target)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.loss.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> Any:
        return self.loss.load_state_dict(state)


class SelfDistillationObjective:
    r"""PS-KD: cross-entropy against :math:`(1 - \alpha_t) e_y + \alpha_t p^{(t-1)}(x)`.

    :math:`p^{(t-1)}(x)` is the softmax output for the same training example (``index``) in
    the previous epoch trained with this objective; the first such epoch has none and trains
    with plain cross-entropy. :math:`\alpha_t` = ``alpha(epoch)``. Every epoch must visit each
    training example once (the loop's batches partition a permutation).

    >>> from smoothlab.schedules import constant
    >>> objective = SelfDistillationObjective(constant(0.5))
    >>> logits, target = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> index = torch.tensor([1, 0])  # the batch holds training examples 1 and 0
    >>> round(objective(logits, target, index, 0).item(), 4)  # no memory yet: cross-entropy
    0.7201
    >>> objective.end_epoch()
    >>> objective.state_dict()["previous"]  # rows in training-set order
    tensor([[0.2689, 0.7311],
            [0.8808, 0.1192]])
    >>> round(objective(logits, target, index, 1).item(), 4)
    0.5969
    """

    def __init__(self, alpha: Schedule) -> None:
        self.alpha = alpha
        self.previous: Tensor | None = None  # (N, K) last epoch's outputs, training-set order
        self.seen: list[tuple[Tensor, Tensor]] = []  # this epoch's (index, probabilities)

    def __call__(self, logits: Tensor, target: Tensor, index: Tensor, epoch: int) -> Tensor:
        from smoothlab.distill import progressive_self_distillation_targets
        from smoothlab.losses import label_smoothing_cross_entropy

        # kept where they are (a GPU's): end_epoch checks and stores them, once per epoch
        self.seen.append((index, torch.softmax(logits.detach().float(), dim=1)))
        if self.previous is None:
            return label_smoothing_cross_entropy(logits, target, 0.0)
        if self.previous.device != logits.device:  # restored from a checkpoint: moved once
            self.previous = self.previous.to(logits.device)
        prior = self.previous[index.to(logits.device)]
        q = progressive_self_distillation_targets(target, prior, self.alpha(epoch))
        return label_smoothing_cross_entropy(logits, q.to(logits.dtype), 0.0)

    def end_epoch(self) -> None:
        probs = torch.cat([p for _, p in self.seen])
        index = torch.cat([i.to(probs.device) for i, _ in self.seen])
        self.seen = []
        if not torch.equal(torch.sort(index).values, torch.arange(len(index), device=index.device)):
            raise ValueError(
                f"`index` must visit each of the {len(index)} training examples once per "
                "epoch for PS-KD, got repeats or gaps"
            )
        self.previous = torch.empty_like(probs)
        self.previous[index] = probs

    def observe_validation(self, logits: Tensor, target: Tensor) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {} if self.previous is None else {"previous": self.previous}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous = state.get("previous")
