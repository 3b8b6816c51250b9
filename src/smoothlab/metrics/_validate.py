"""Input checks shared by the metrics, in the house message template (L1: torch only)."""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import (
    check_class_indices,
    check_distribution,
    check_floating,
    check_same_shape,
    check_tensor,
    fail,
)

__all__ = [
    "HALF_ROW_SUM_TOLERANCE",
    "ROW_SUM_TOLERANCE",
    "check_probs_target",
    "check_scores_target",
    "row_sum_tolerance",
]

# Rows of probabilities may be off by this much from summing to 1 (float32 and float64 inputs);
# half-precision inputs (about 3 significant digits) get HALF_ROW_SUM_TOLERANCE.
ROW_SUM_TOLERANCE = 1e-4
HALF_ROW_SUM_TOLERANCE = 1e-2


def row_sum_tolerance(dtype: torch.dtype) -> float:
    """The tolerance on row sums for probabilities of ``dtype``."""
    if dtype in (torch.float32, torch.float64):
        return ROW_SUM_TOLERANCE
    return HALF_ROW_SUM_TOLERANCE


def _check_target(target: object, rows: int, num_classes: int, what: str) -> Tensor:
    tensor = check_tensor("target", target)
    check_class_indices("target", tensor, num_classes)
    check_same_shape("target", tensor, (rows,), f"one class index per row of `{what}`")
    return tensor


def check_scores_target(scores: object, target: object) -> tuple[Tensor, Tensor]:
    """Check ``(N, C)`` real-valued ``scores`` (logits or probabilities) without NaN and
    ``(N,)`` class indices ``target``."""
    tensor = check_floating("scores", scores)
    if tensor.dim() != 2:
        raise fail("scores", "a 2-D tensor of shape (N, C)", tensor)
    if bool(torch.isnan(tensor).any()):
        raise fail("scores", "free of NaN", "!a tensor containing NaN")
    return tensor, _check_target(target, tensor.shape[0], tensor.shape[1], "scores")


def check_probs_target(probs: object, target: object) -> tuple[Tensor, Tensor]:
    """Check ``(N, C)`` probabilities (rows summing to 1) and ``(N,)`` class indices."""
    tensor = check_floating("probs", probs)
    if tensor.dim() != 2:
        raise fail("probs", "a 2-D tensor of shape (N, C)", tensor)
    # Detached: the check reads values with float(), which warns on tensors that require grad.
    check_distribution("probs", tensor.detach(), dim=1, atol=row_sum_tolerance(tensor.dtype))
    return tensor, _check_target(target, tensor.shape[0], tensor.shape[1], "probs")
