"""smoothlab: label smoothing and its generalisations for PyTorch.

Targets and losses are functions (:func:`smooth_targets`, :func:`label_smoothing_cross_entropy`,
:func:`label_relaxation_loss`, :func:`confidence_penalty_loss`) with module twins; schedules,
closed forms, label noise, metrics and optimizers live in their submodules; post-hoc
:class:`TemperatureScaling` is here too.
"""

from smoothlab import analysis, metrics, noise, optim, schedules, theory
from smoothlab.calibration import TemperatureScaling, VectorScaling
from smoothlab.losses import (
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
    linear_confidence_penalty_loss,
    linear_label_relaxation_loss,
    linear_label_smoothing_cross_entropy,
)
from smoothlab.nn import ConfidencePenaltyLoss, LabelRelaxationLoss, LabelSmoothingCrossEntropyLoss
from smoothlab.online import OnlineLabelSmoothingLoss
from smoothlab.targets import smooth_targets

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfidencePenaltyLoss",
    "LabelRelaxationLoss",
    "LabelSmoothingCrossEntropyLoss",
    "OnlineLabelSmoothingLoss",
    "TemperatureScaling",
    "VectorScaling",
    "analysis",
    "confidence_penalty_loss",
    "label_relaxation_loss",
    "label_smoothing_cross_entropy",
    "linear_confidence_penalty_loss",
    "linear_label_relaxation_loss",
    "linear_label_smoothing_cross_entropy",
    "metrics",
    "noise",
    "optim",
    "schedules",
    "smooth_targets",
    "theory",
]
