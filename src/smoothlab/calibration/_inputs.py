"""Input checks shared by the post-hoc calibrators, in the house message template (L2)."""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import (
    check_class_indices,
    check_floating,
    check_same_shape,
    check_tensor,
    fail,
)

__all__ = ["check_classes", "check_fit_inputs", "mean_nll"]


def check_fit_inputs(logits: object, target: object) -> tuple[Tensor, Tensor]:
    """Validate ``(N, C)`` finite logits with ``N >= 1``, ``C >= 2`` and ``(N,)`` class indices.

    Returns the logits as a detached float64 tensor (fitting never backpropagates into the model,
    and reading a scalar out of a tensor that requires grad warns) and the target on their device.
    """
    z = check_floating("logits", logits)
    if z.dim() != 2:
        raise fail("logits", "a 2-D tensor of shape (N, C)", z)
    if z.shape[0] < 1 or z.shape[1] < 2:
        raise fail("logits", "at least one row and two columns (classes)", z)
    z = z.detach()
    if not bool(torch.isfinite(z).all()):
        raise fail("logits", "finite", "!a tensor containing NaN or inf")
    y = check_tensor("target", target)
    check_class_indices("target", y, z.shape[1])
    check_same_shape("target", y, (z.shape[0],), "one class index per row of `logits`")
    return z.to(torch.float64), y.detach().to(z.device)


def check_classes(z: Tensor, num_classes: int) -> None:
    """Check that dimension 1 of ``z`` has ``num_classes`` entries."""
    if z.shape[1] != num_classes:
        raise fail("logits", f"{num_classes} classes along dimension 1", f"!shape {tuple(z.shape)}")


def mean_nll(log_p: Tensor, target: Tensor) -> Tensor:
    """Mean NLL of the targets under log-probabilities ``log_p``."""
    return -log_p.gather(1, target.unsqueeze(1)).mean()
