"""smoothlab: label smoothing and its generalisations for PyTorch.

:func:`cross_entropy` / :class:`smoothlab.nn.CrossEntropyLoss` replace PyTorch's by name alone.
Targets and losses are functions (:func:`smooth_targets`, :func:`label_smoothing_cross_entropy`,
:func:`label_relaxation_loss`, :func:`confidence_penalty_loss`) with module twins; schedules,
closed forms, label noise, metrics and optimizers live in their submodules; post-hoc
calibrators (:class:`TemperatureScaling`, :class:`MatrixScaling`, :class:`IsotonicCalibration`,
...) are here too.
"""

from smoothlab import analysis, distill, metrics, noise, optim, schedules, theory
from smoothlab.adafocal import AdaFocalLoss
from smoothlab.calibration import (
    DirichletCalibration,
    HistogramBinning,
    IsotonicCalibration,
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
)
from smoothlab.distill import progressive_self_distillation_targets, zipf_targets
from smoothlab.losses import (
    backward_corrected_cross_entropy,
    confidence_penalty_loss,
    cross_entropy,
    f_divergence_loss,
    focal_loss,
    forward_corrected_cross_entropy,
    generalized_cross_entropy,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
    linear_confidence_penalty_loss,
    linear_label_relaxation_loss,
    linear_label_smoothing_cross_entropy,
    logit_norm_loss,
    logit_penalty_loss,
    margin_label_smoothing_loss,
    max_suppression_loss,
    peer_loss,
    sample_dependent_focal_loss,
    symmetric_cross_entropy,
)
from smoothlab.nn import (
    ConfidencePenaltyLoss,
    CrossEntropyLoss,
    LabelRelaxationLoss,
    LabelSmoothingCrossEntropyLoss,
)
from smoothlab.online import OnlineLabelSmoothingLoss
from smoothlab.targets import smooth_targets

__version__ = "0.1.0.dev0"

__all__ = [
    "AdaFocalLoss",
    "ConfidencePenaltyLoss",
    "CrossEntropyLoss",
    "DirichletCalibration",
    "HistogramBinning",
    "IsotonicCalibration",
    "LabelRelaxationLoss",
    "LabelSmoothingCrossEntropyLoss",
    "MatrixScaling",
    "OnlineLabelSmoothingLoss",
    "TemperatureScaling",
    "VectorScaling",
    "analysis",
    "backward_corrected_cross_entropy",
    "confidence_penalty_loss",
    "cross_entropy",
    "distill",
    "f_divergence_loss",
    "focal_loss",
    "forward_corrected_cross_entropy",
    "generalized_cross_entropy",
    "label_relaxation_loss",
    "label_smoothing_cross_entropy",
    "linear_confidence_penalty_loss",
    "linear_label_relaxation_loss",
    "linear_label_smoothing_cross_entropy",
    "logit_norm_loss",
    "logit_penalty_loss",
    "margin_label_smoothing_loss",
    "max_suppression_loss",
    "metrics",
    "noise",
    "optim",
    "peer_loss",
    "progressive_self_distillation_targets",
    "sample_dependent_focal_loss",
    "schedules",
    "smooth_targets",
    "symmetric_cross_entropy",
    "theory",
    "zipf_targets",
]
