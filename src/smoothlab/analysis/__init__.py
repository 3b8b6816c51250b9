"""Label noise: what IVON's posterior, label smoothing and online label smoothing add to labels.

Yang et al. (2025) show that variational learning trains with an adaptive, per-example label
noise. This package computes it for any network trained with :class:`smoothlab.optim.IVON`
(Monte Carlo), exactly for linear models, and for the smoothing methods it is compared with.

Also the seeds' other measurements: TSLA's gradient-variance ratio delta
(:func:`gradient_variance_ratio`), logit gaps and the three-class template projection of Müller
et al. (:func:`logit_gaps`, :func:`template_projection`), and the curves behind two figures
(:func:`simplex_loss_grid`, :func:`logistic_noise_curve`).
"""

from smoothlab.analysis.geometry import logit_gaps, model_logit_gaps, template_projection
from smoothlab.analysis.linear import (
    gaussian_softmax_label_noise,
    linear_softmax_label_noise,
    logistic_label_noise,
)
from smoothlab.analysis.noise_curve import logistic_noise_curve
from smoothlab.analysis.posterior import (
    LabelNoise,
    noise_magnitude,
    predictive_label_noise,
    rank_examples,
)
from smoothlab.analysis.simplex import (
    SimplexLoss,
    SimplexLossName,
    simplex_grid,
    simplex_loss_grid,
)
from smoothlab.analysis.smoothing import (
    class_smoothed_labels,
    online_smoothing_label_noise,
    smoothing_label_noise,
)
from smoothlab.analysis.variance import GradientVariance, gradient_variance_ratio

__all__ = [
    "GradientVariance",
    "LabelNoise",
    "SimplexLoss",
    "SimplexLossName",
    "class_smoothed_labels",
    "gaussian_softmax_label_noise",
    "gradient_variance_ratio",
    "linear_softmax_label_noise",
    "logistic_label_noise",
    "logistic_noise_curve",
    "logit_gaps",
    "model_logit_gaps",
    "noise_magnitude",
    "online_smoothing_label_noise",
    "predictive_label_noise",
    "rank_examples",
    "simplex_grid",
    "simplex_loss_grid",
    "smoothing_label_noise",
    "template_projection",
]
