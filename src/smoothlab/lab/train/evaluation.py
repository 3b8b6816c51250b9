"""Per-run measurements on the clean test set, before and after post-hoc calibration.

The calibrators of the run's ``[calibration]`` (temperature scaling alone by default) are fitted
on the validation split (noisy labels, as a user would have) and reported under their own
suffixes (``*_ts`` for temperature scaling, ``*_iso`` for isotonic, ...:
:data:`~smoothlab.lab.plan.calibrators.CALIBRATORS`), never mixed into the raw metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothlab.calibration import TemperatureScaling
from smoothlab.lab.plan.calibrators import build_calibrator, calibrator
from smoothlab.lab.plan.schema import CalibrationConfig

if TYPE_CHECKING:
    from smoothlab.lab.train.data import RunData

__all__ = ["extreme_examples", "predict_logits", "score_logits"]

EXTREMES = 8  # most and least noisy training examples kept for the report


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch: int = 2048) -> Tensor:
    """Logits of ``model`` (in eval mode, at its current weights) on ``x``, float64 on the CPU,
    computed ``batch`` examples at a time.

    >>> model = nn.Linear(2, 3)
    >>> _ = nn.init.ones_(model.weight), nn.init.zeros_(model.bias)
    >>> predict_logits(model, torch.tensor([[1.0, 2.0]]))
    tensor([[3., 3., 3.]], dtype=torch.float64)
    """
    model.eval()
    parts = [model(x[i : i + batch]).double().cpu() for i in range(0, len(x), batch)]
    return torch.cat(parts) if parts else torch.zeros(0, 0, dtype=torch.float64)


def _scores(logits: Tensor, target: Tensor, suffix: str = "") -> dict[str, float]:
    from smoothlab.metrics import (
        accuracy,
        aurc,
        brier_score,
        classwise_calibration_error,
        expected_calibration_error,
        probs_from_logits,
        smooth_calibration_error,
        top_k_accuracy,
    )

    probs = probs_from_logits(logits)
    scores = {
        "accuracy": accuracy(probs, target),
        # from log-probabilities: a sharp temperature can underflow a probability to 0
        "nll": F.cross_entropy(logits.double(), target),
        "ece": expected_calibration_error(probs, target),
        "brier": brier_score(probs, target),
        "smooth_ece": smooth_calibration_error(probs, target),
        "classwise_ece": classwise_calibration_error(probs, target),
        "aurc": aurc(probs, target),  # selective classification: lower ranks errors last
    }
    if probs.shape[1] >= 5:
        scores["top5_accuracy"] = top_k_accuracy(probs, target, k=5)
    return {name + suffix: float(value) for name, value in scores.items()}


def _reliability(logits: Tensor, target: Tensor) -> dict[str, list[float]]:
    from smoothlab.metrics import probs_from_logits, reliability_bins

    bins = reliability_bins(probs_from_logits(logits), target)
    return {
        "edges": bins.edges.tolist(),
        "confidence": bins.confidence.nan_to_num(0.0).tolist(),
        "accuracy": bins.accuracy.nan_to_num(0.0).tolist(),
        "count": bins.count.tolist(),
    }


def score_logits(
    test: Tensor,
    y_test: Tensor,
    val: Tensor,
    y_val: Tensor,
    calibration: CalibrationConfig,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Test metrics, the same after each calibrator of ``calibration`` fitted on ``(val, y_val)``
    (none when ``y_val`` is empty), and reliability bins for the report's diagrams.

    The metrics are accuracy, top-5 accuracy when K >= 5, NLL, ECE (15 bins), Brier, smooth ECE,
    classwise ECE and AURC; a calibrator's metrics carry its suffix (``ece_ts``), its reliability
    bins are ``reliability`` + suffix, and temperature scaling's fitted ``temperature`` is kept.

    Args:
        test, y_test: ``(N, K)`` float64 test logits and ``(N,)`` clean labels.
        val, y_val: ``(M, K)`` validation logits and ``(M,)`` (noisy) labels; ``M = 0`` fits
            no calibrator.
        calibration: the run's ``[calibration]``: which calibrators, with which options.

    Logits three times too sharp: temperature scaling finds T close to 3 on the validation half,
    and both calibrators cut the test ECE (isotonic's NLL is large: it maps some true classes'
    probabilities to 0, which the log-probabilities floor at the smallest float):

    >>> g = torch.Generator().manual_seed(0)
    >>> y = torch.randint(0, 3, (400,), generator=g)
    >>> z = 3 * (F.one_hot(y, 3) + torch.randn(400, 3, generator=g, dtype=torch.float64))
    >>> methods = CalibrationConfig(methods=("temperature", "isotonic"))
    >>> metrics, extras = score_logits(z[200:], y[200:], z[:200], y[:200], methods)
    >>> print(" ".join(f"{metrics[m]:.3f}" for m in ("temperature", "ece", "ece_ts", "ece_iso")))
    3.342 0.249 0.057 0.090
    >>> print(" ".join(f"{metrics[m]:.3f}" for m in ("nll", "nll_ts", "nll_iso")))
    1.413 0.868 14.979
    >>> sorted(extras)
    ['reliability', 'reliability_iso', 'reliability_ts']
    """
    metrics = _scores(test, y_test)
    extras: dict[str, Any] = {"reliability": _reliability(test, y_test)}
    for name in calibration.methods if len(y_val) else ():
        suffix = calibrator(name).suffix
        module = build_calibrator(name, test.shape[1], calibration).fit(val, y_val)
        with torch.no_grad():
            calibrated = module(test).double()
        metrics.update(_scores(calibrated, y_test, suffix))
        extras["reliability" + suffix] = _reliability(calibrated, y_test)
        if isinstance(module, TemperatureScaling):  # the one fitted number worth a column
            metrics["temperature"] = float(module.temperature)
    return metrics, extras


def extreme_examples(model: nn.Module, optimizer: Any, data: RunData) -> dict[str, Any]:
    """The training examples with the largest and smallest IVON-induced label noise.

    The noise of example i is ``softmax(f(x_i; m)) - E_q[softmax(f(x_i; theta))]`` (Yang et al.
    2025, Eq. 16), estimated by :func:`smoothlab.analysis.predictive_label_noise`; examples are
    ranked by its magnitude. Inputs are kept (unstandardised) so the report can draw them.
    """
    from smoothlab.analysis import predictive_label_noise, rank_examples

    device = next(model.parameters()).device
    x = data.x_train[:2000]
    model.eval()
    magnitude = predictive_label_noise(model, optimizer, x.to(device), n_samples=16).magnitude.cpu()
    picks = {
        "most": rank_examples(magnitude, EXTREMES),
        "least": rank_examples(magnitude, EXTREMES, least=True),
    }
    return {
        "shape": list(x.shape[1:]),
        **{
            name: {
                "x": data.unscale(x[idx]).flatten(1).tolist(),
                "label": data.y_train[idx].tolist(),
                "clean": data.y_train_clean[idx].tolist(),
                "noise": magnitude[idx].tolist(),
            }
            for name, idx in picks.items()
        },
    }
