"""Training objectives: what a method of :data:`smoothlab.lab.plan.methods.METHODS` trains with.

An :class:`Objective` is called by the loop as ``objective(logits, target, index, epoch)``: the
loop owns the epoch (house rule 4), and ``index`` (the examples' positions in the training set)
lets a per-example prior such as a teacher's predictions follow the batch. Stateless losses are
plain functions wrapped in :class:`Stateless`; online label smoothing keeps class-wise soft
labels between epochs (:class:`OnlineObjective`), which checkpoints save and restore.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LossFn",
    "Objective",
    "OnlineObjective",
    "Stateless",
    "cross_entropy",
    "teacher_probabilities",
]


class Objective(Protocol):
    """A training loss: ``objective(logits, target, index, epoch)``, ``end_epoch()`` and
    ``observe_validation(...)`` after each epoch, and its state for checkpoints (online
    smoothing's soft labels)."""

    def __call__(self, logits: Tensor, target: Tensor, index: Tensor, epoch: int) -> Tensor: ...

    def end_epoch(self) -> None:
        """Called by the loop after every epoch trained with this objective."""

    def observe_validation(self, logits: Tensor, target: Tensor) -> None:
        """Called by the loop after :meth:`end_epoch` with the validation split's float64
        logits and (noisy) labels, when there is a split (AdaFocal's calibration)."""

    def state_dict(self) -> dict[str, Any]:
        """Tensors to checkpoint (empty for stateless losses)."""

    def load_state_dict(self, state: dict[str, Any]) -> Any:
        """Restore what :meth:`state_dict` returned."""


LossFn = Callable[[Tensor, Tensor, Tensor, int], Tensor]


def cross_entropy(logits: Tensor, target: Tensor, index: Tensor, epoch: int) -> Tensor:
    """Plain cross-entropy with the (noisy) one-hot labels, ``mean_n -log softmax(z_n)[y_n]``,
    as a :data:`LossFn` (``index`` and ``epoch`` are unused).

    >>> cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), torch.tensor([0]), 0)
    tensor(0.1269)
    """
    return F.cross_entropy(logits, target)


class Stateless:
    """An :class:`Objective` from a plain function of (logits, target, index, epoch)."""

    def __init__(self, loss: LossFn) -> None:
        self.loss = loss

    def __call__(self, logits: Tensor, target: Tensor, index: Tensor, epoch: int) -> Tensor:
        return self.loss(logits, target, index, epoch)

    def end_epoch(self) -> None:
        pass

    def observe_validation(self, logits: Tensor, target: Tensor) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class OnlineObjective:
    """Online label smoothing's loss (:class:`smoothlab.online.OnlineLabelSmoothingLoss`): its
    soft labels move on at :meth:`end_epoch` and are part of the checkpointed state."""

    def __init__(self, num_classes: int, alpha: float) -> None:
        from smoothlab.online import OnlineLabelSmoothingLoss

        self.loss = OnlineLabelSmoothingLoss(num_classes, alpha=alpha)

    def __call__(self, logits: Tensor, target: Tensor, index: Tensor, epoch: int) -> Tensor:
        self.loss.to(logits.device)
        return self.loss(logits, target)  # type: ignore[no-any-return]

    def end_epoch(self) -> None:
        self.loss.next_epoch()

    def observe_validation(self, logits: Tensor, target: Tensor) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return self.loss.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> Any:
        return self.loss.load_state_dict(state)


def teacher_probabilities(model: torch.nn.Module, inputs: Tensor, batch: int = 1024) -> Tensor:
    """Softmax outputs of a trained model on ``inputs`` (the teacher prior of ``ls-teacher``),
    ``(N, K)`` float32 on the CPU, computed in eval mode in batches of ``batch``.

    >>> model = torch.nn.Linear(2, 3)
    >>> _ = torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)
    >>> teacher_probabilities(model, torch.ones(2, 2))
    tensor([[0.3333, 0.3333, 0.3333],
            [0.3333, 0.3333, 0.3333]])
    """
    model.eval()
    with torch.no_grad():
        parts = [
            F.softmax(model(inputs[i : i + batch]), dim=1) for i in range(0, len(inputs), batch)
        ]
    return torch.cat(parts).float().cpu()
