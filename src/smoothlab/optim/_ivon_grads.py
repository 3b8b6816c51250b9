"""Gradient fingerprints: how IVON tells where a parameter's ``.grad`` was last written.

IVON reads each gradient when a ``sampled_params(train=True)`` block exits. A fingerprint keeps
each gradient tensor and its version counter (bumped by every in-place write, such as
``clip_grad_norm_``'s rescaling or an accumulating ``backward``), so IVON can tell a gradient
written after it was read, or one that a closure never wrote, from the one it recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

__all__ = ["Fingerprint", "fingerprint", "mean_loss", "rewritten"]

Fingerprint = dict[Tensor, tuple[Tensor, int]]  # parameter -> (its gradient, that one's version)


def fingerprint(params: Iterable[Tensor]) -> Fingerprint:
    """The current gradient of each parameter that has one, with its version counter."""
    return {p: (p.grad, p.grad._version) for p in params if p.grad is not None}


def rewritten(params: Iterable[Tensor], before: Fingerprint) -> list[Tensor]:
    """Parameters whose gradient differs from ``before``: a new tensor, or written in place.

    A gradient dropped since (``None``, as ``zero_grad()`` leaves it) does not count.
    """
    out = []
    for p in params:
        grad, seen = p.grad, before.get(p)
        if grad is not None and (seen is None or seen[0] is not grad or seen[1] != grad._version):
            out.append(p)
    return out


def mean_loss(losses: list[Any]) -> Any:
    """The mean of the losses that are not ``None`` (``None`` if all are)."""
    given = [loss for loss in losses if loss is not None]
    return sum(given) / len(given) if given else None
