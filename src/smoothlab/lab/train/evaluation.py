"""Per-run measurements on the clean test set, before and after temperature scaling.

Temperature scaling is fitted on the validation split (noisy labels, as a user would have) and
reported as separate ``*_ts`` metrics, never mixed into the raw ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
        brier_score,
        expected_calibration_error,
        probs_from_logits,
        top_k_accuracy,
    )

    probs = probs_from_logits(logits)
    scores = {
        "accuracy": accuracy(probs, target),
        # from log-probabilities: a sharp temperature can underflow a probability to 0
        "nll": F.cross_entropy(logits.double(), target),
        "ece": expected_calibration_error(probs, target),
        "brier": brier_score(probs, target),
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
    test: Tensor, y_test: Tensor, val: Tensor, y_val: Tensor
) -> tuple[dict[str, float], dict[str, Any]]:
    """Test metrics (accuracy, top-5 when K >= 5, NLL, ECE, Brier), the same after temperature
    scaling fitted on ``(val, y_val)`` (suffix ``_ts``, plus ``temperature``), and reliability
    bins for the report's diagrams."""
    metrics = _scores(test, y_test)
    extras: dict[str, Any] = {"reliability": _reliability(test, y_test)}
    if len(y_val):
        from smoothlab.calibration import TemperatureScaling

        scaler = TemperatureScaling().fit(val, y_val)
        with torch.no_grad():
            scaled = scaler(test).double()
        metrics.update(_scores(scaled, y_test, "_ts"))
        metrics["temperature"] = float(scaler.temperature)
        extras["reliability_ts"] = _reliability(scaled, y_test)
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
