"""Calibration and accuracy metrics on probabilities (L1: pure functions on tensors).

- :func:`expected_calibration_error` (ECE / RMS / MCE, equal-width or equal-mass bins),
  :func:`classwise_calibration_error`, :func:`reliability_bins`,
  :func:`bootstrap_calibration_error`;
- proper scores :func:`negative_log_likelihood` and :func:`brier_score`, :func:`accuracy`,
  :func:`top_k_accuracy`, and :func:`probs_from_logits`;
- :func:`smooth_calibration_error` (smooth ECE), :func:`debiased_calibration_error`;
- :func:`aurc` for selective classification (AURC, E-AURC);
- :class:`CalibrationMeter`, the streaming (and distributed) form of the binned errors and scores.

Inputs are ``(N, C)`` probabilities and ``(N,)`` class indices; results are float64. Binning
conventions are pinned in :mod:`smoothlab.metrics.calibration`.
"""

from smoothlab.metrics.calibration import (
    BootstrapInterval,
    ReliabilityBins,
    bootstrap_calibration_error,
    classwise_calibration_error,
    debiased_calibration_error,
    expected_calibration_error,
    reliability_bins,
)
from smoothlab.metrics.meter import CalibrationMeter, CalibrationSummary
from smoothlab.metrics.scores import (
    accuracy,
    brier_score,
    negative_log_likelihood,
    probs_from_logits,
    top_k_accuracy,
)
from smoothlab.metrics.selective import aurc
from smoothlab.metrics.smooth import smooth_calibration_error

__all__ = [
    "BootstrapInterval",
    "CalibrationMeter",
    "CalibrationSummary",
    "ReliabilityBins",
    "accuracy",
    "aurc",
    "bootstrap_calibration_error",
    "brier_score",
    "classwise_calibration_error",
    "debiased_calibration_error",
    "expected_calibration_error",
    "negative_log_likelihood",
    "probs_from_logits",
    "reliability_bins",
    "smooth_calibration_error",
    "top_k_accuracy",
]
