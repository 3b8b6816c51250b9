"""The label-smoothing loss family as pure functions (L1).

Each function takes PyTorch's ``(input, target)`` with the class dimension at 1, a keyword-only
hyperparameter, ``weight`` / ``ignore_index`` / ``reduction`` where they make sense, and validates
its inputs with one message template. Their modules live in :mod:`smoothlab.nn`.
"""

from smoothlab.losses.confidence import confidence_penalty_loss
from smoothlab.losses.linear import (
    linear_confidence_penalty_loss,
    linear_label_relaxation_loss,
    linear_label_smoothing_cross_entropy,
)
from smoothlab.losses.relaxation import label_relaxation_loss, log1mexp
from smoothlab.losses.smoothing import Weighting, label_smoothing_cross_entropy

__all__ = [
    "Weighting",
    "confidence_penalty_loss",
    "label_relaxation_loss",
    "label_smoothing_cross_entropy",
    "linear_confidence_penalty_loss",
    "linear_label_relaxation_loss",
    "linear_label_smoothing_cross_entropy",
    "log1mexp",
]
