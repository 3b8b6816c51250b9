"""Post-hoc calibration of a trained classifier's logits (L2).

Every calibrator is an :class:`torch.nn.Module` with ``fit(logits, target) -> self`` on held-out
``(N, C)`` logits and ``(N,)`` labels, and a ``forward(logits)`` that returns calibrated logits
(``softmax`` of the output is the calibrated distribution):

- :class:`TemperatureScaling`, :class:`VectorScaling` (Guo et al., ICML 2017);
- :class:`MatrixScaling`, :class:`DirichletCalibration` (full matrices with ODIR, Kull et al.,
  NeurIPS 2019);
- :class:`HistogramBinning`, :class:`IsotonicCalibration` (one-vs-rest, renormalised; their
  ``forward`` returns log-probabilities).
"""

from smoothlab.calibration.binning import HistogramBinning, IsotonicCalibration
from smoothlab.calibration.linear import DirichletCalibration, MatrixScaling
from smoothlab.calibration.temperature import TemperatureScaling, VectorScaling

__all__ = [
    "DirichletCalibration",
    "HistogramBinning",
    "IsotonicCalibration",
    "MatrixScaling",
    "TemperatureScaling",
    "VectorScaling",
]
