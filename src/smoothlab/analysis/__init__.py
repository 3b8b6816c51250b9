"""Label noise: what IVON's posterior, label smoothing and online label smoothing add to labels.

Yang et al. (2025) show that variational learning trains with an adaptive, per-example label
noise. This package computes it for any network trained with :class:`smoothlab.optim.IVON`
(Monte Carlo), exactly for linear models, and for the smoothing methods it is compared with.
"""

from smoothlab.analysis.linear import (
    gaussian_softmax_label_noise,
    linear_softmax_label_noise,
    logistic_label_noise,
)
from smoothlab.analysis.posterior import (
    LabelNoise,
    noise_magnitude,
    predictive_label_noise,
    rank_examples,
)
from smoothlab.analysis.smoothing import online_smoothing_label_noise, smoothing_label_noise

__all__ = [
    "LabelNoise",
    "gaussian_softmax_label_noise",
    "linear_softmax_label_noise",
    "logistic_label_noise",
    "noise_magnitude",
    "online_smoothing_label_noise",
    "predictive_label_noise",
    "rank_examples",
    "smoothing_label_noise",
]
