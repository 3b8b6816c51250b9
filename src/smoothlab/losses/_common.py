"""Shared input handling for the loss family: shapes, dtypes, targets, ignore_index, reduction.

Every loss in :mod:`smoothlab.losses` takes PyTorch's ``(input, target)`` pair with the class
dimension at 1 and goes through :func:`prepare`, so the same inputs are accepted (and the same
errors raised) by all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from smoothlab._checks import (
    Reduction,
    assert_on_device,
    check_class_indices,
    check_floating,
    check_int,
    check_real,
    check_reduction,
    check_tensor,
    check_weight,
    fail,
    host_reads,
    reduce_loss,
)

__all__ = [
    "Batch",
    "Coef",
    "capped",
    "check_logit_options",
    "check_pair",
    "class_index",
    "compute_dtype",
    "example_weight",
    "finish",
    "finish_weighted",
    "masked",
    "massed",
    "prepare",
    "soft_cross_entropy",
    "valid_mask",
    "z_loss",
]


#: A per-position coefficient: one number for every position, or a flat ``(N * S,)`` tensor.
Coef = float | Tensor


@dataclass(frozen=True)
class Batch:
    """A validated batch.

    Attributes:
        logits: ``(N, C, ...)`` in the compute dtype (float32 for half-precision inputs), or in
            the input's dtype when prepared with ``upcast=False`` (the fused kernels).
        index: ``(N, ...)`` int64 class indices with ignored positions replaced by 0, or ``None``
            for probability targets.
        probs: ``(N, C, ...)`` probability targets in the compute dtype, or ``None``.
        valid: ``(N, ...)`` bool mask of non-ignored positions, or ``None`` when nothing is ignored.
        weight: ``(C,)`` class weights in the compute dtype, or ``None``.
        reduction: the validated reduction.
        unbatched: the caller passed a single ``(C,)`` example.
    """

    logits: Tensor
    index: Tensor | None
    probs: Tensor | None
    valid: Tensor | None
    weight: Tensor | None
    reduction: Reduction
    unbatched: bool

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def class_view(self, vector: Tensor) -> Tensor:
        """View a ``(C,)`` vector as ``(1, C, 1, ...)`` to broadcast against the logits."""
        return vector.view(1, -1, *([1] * (self.logits.dim() - 2)))

    def gather(self, values: Tensor) -> Tensor:
        """``values[n, y_n, ...]``: pick the true class along dim 1 of an ``(N, C, ...)`` tensor."""
        assert self.index is not None  # internal: callers only gather with class-index targets
        return values.gather(1, self.index.unsqueeze(1)).squeeze(1)

    def flat_index(self) -> Tensor | None:
        """The class indices as a flat ``(N * S,)`` vector (``None`` for probability targets)."""
        return None if self.index is None else self.index.reshape(-1)

    def flat_valid(self) -> Tensor | None:
        """The mask of non-ignored positions as a flat vector (``None``: nothing is ignored)."""
        return None if self.valid is None else self.valid.reshape(-1)

    def flat_weight(self) -> Tensor | None:
        """``weight[y]`` per position as a flat vector (0 where ignored), ``None`` without."""
        w_y = self.target_weight()
        return None if w_y is None else w_y.reshape(-1)

    def target_weight(self) -> Tensor | None:
        """``weight[y]`` per position (0 at ignored positions), or ``None`` without weights."""
        if self.weight is None or self.index is None:
            return None
        picked = self.weight[self.index]
        return picked if self.valid is None else picked * self.valid


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are computed (and accumulated) in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def check_pair(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    allow_probs: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Reduction, bool]:
    """Check everything but the range of class indices; shared by both paths, one set of messages.

    Returns ``(logits, target, weight, reduction, unbatched)`` with a ``(C,)`` input (and its
    target) given a batch dimension; logits keep their dtype.
    """
    check_floating("input", input, min_dim=1)
    check_tensor("target", target)
    mode = check_reduction(reduction)
    check_int("ignore_index", ignore_index)
    unbatched = input.dim() == 1
    logits = input.unsqueeze(0) if unbatched else input
    target = target.unsqueeze(0) if unbatched else target
    num_classes = int(logits.shape[1])
    if num_classes < 1:
        raise fail("input", "a tensor with at least one class along dim 1", input)
    weight = check_weight(weight, num_classes)
    if target.is_floating_point():
        if not allow_probs:
            raise fail("target", "an integer tensor of class indices", target, kind=TypeError)
        if target.shape != logits.shape:
            raise fail(
                "target",
                f"of the input's shape {tuple(logits.shape)} for probability targets",
                f"!shape {tuple(target.shape)}",
            )
        return logits, target, weight, mode, unbatched
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != tuple(expected):
        raise fail(
            "target",
            f"of shape {tuple(expected)} for class indices (input {tuple(logits.shape)})",
            f"!shape {tuple(target.shape)}",
        )
    return logits, target, weight, mode, unbatched


def valid_mask(target: Tensor, num_classes: int, ignore_index: int) -> Tensor | None:
    """Check class indices; return the mask of non-ignored positions, ``None`` if none is ignored.

    The common case (no index equal to ``ignore_index``, all in range) costs one ``aminmax``;
    anything else goes through :func:`smoothlab._checks.check_class_indices` for its message.
    Where reading the targets on the host would synchronise (a GPU, ``torch.compile``:
    :func:`~smoothlab._checks.host_reads`) the mask is always returned and the range is asserted
    on the device (:func:`~smoothlab._checks.assert_on_device`).
    """
    if target.dtype in (torch.bool, torch.complex64, torch.complex128) or target.numel() == 0:
        check_class_indices("target", target, num_classes, ignore_index=ignore_index)
        return None
    if not host_reads(target):  # whether any is ignored is not read: a mask always
        valid = target != ignore_index
        inside = (target >= 0) & (target < num_classes)
        expected = f"class indices in [0, {num_classes - 1}] or ignore_index={ignore_index}"
        assert_on_device(inside | ~valid, "target", expected)
        return valid
    low, high = torch.aminmax(target)
    if int(low) >= 0 and int(high) < num_classes and not 0 <= ignore_index < num_classes:
        return None
    valid = target != ignore_index
    low, high = torch.aminmax(torch.where(valid, target, 0))
    if int(low) < 0 or int(high) >= num_classes:
        check_class_indices("target", target, num_classes, ignore_index=ignore_index)
    return None if bool(valid.all()) else valid


def class_index(
    target: Tensor, num_classes: int, ignore_index: int
) -> tuple[Tensor, Tensor | None]:
    """Checked int64 class indices (0 at ignored positions) and :func:`valid_mask`'s mask."""
    valid = valid_mask(target, num_classes, ignore_index)
    index = target.long()
    return (index if valid is None else index.masked_fill(~valid, 0)), valid


def prepare(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    allow_probs: bool = True,
    upcast: bool = True,
) -> Batch:
    """Validate ``(input, target)`` in PyTorch's conventions and return a :class:`Batch`.

    ``upcast=False`` keeps the logits (and probability targets) in the input's dtype: the fused
    kernels convert chunk by chunk instead of copying the whole tensor.
    """
    logits, target, weight, mode, unbatched = check_pair(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        allow_probs=allow_probs,
    )
    dtype = compute_dtype(logits.dtype)
    if upcast:
        logits = logits.to(dtype)
    weight = None if weight is None else weight.to(device=logits.device, dtype=dtype)
    if target.is_floating_point():
        probs = target.to(dtype) if upcast else target
        return Batch(logits, None, probs, None, weight, mode, unbatched)
    index, valid = class_index(target, int(logits.shape[1]), ignore_index)
    return Batch(logits, index, None, valid, weight, mode, unbatched)


def massed(mass: float | Tensor, values: Tensor) -> Tensor:
    """``mass * values``, exactly 0 where ``mass`` is 0 even where ``values`` is infinite.

    A term with no target mass (a zero weight or probability) is no term: ``0 * -inf`` would be
    NaN, where the loss's limit is the finite sum of the other terms.
    """
    product = mass * values
    if isinstance(mass, Tensor):
        # Only the NaNs of 0 * inf are replaced: the gradient in a mass of 0 stays ``values``.
        return torch.where(product.isnan() & (mass == 0), 0.0, product)
    return product if mass != 0.0 else torch.where(product.isnan(), 0.0, product)


def soft_cross_entropy(batch: Batch, q: Tensor, log_p: Tensor, *, weighted: bool = True) -> Tensor:
    """``-sum_j w_j q_j log p_j`` over dim 1 (PyTorch's class weights, unless ``weighted`` is
    false), 0 where ``w_j q_j = 0``."""
    if batch.weight is not None and weighted:
        q = q * batch.class_view(batch.weight)
    return -torch.where(q != 0, q * log_p, 0.0).sum(dim=1)


def finish(batch: Batch, loss: Tensor, denominator: Tensor | None) -> Tensor:
    """Zero ignored positions, then reduce; ``denominator`` is the weight of a ``mean``.

    ``denominator=None`` means the number of non-ignored positions.
    """
    if batch.valid is not None:
        loss = loss.masked_fill(~batch.valid, 0.0)
    if batch.reduction == "mean" and denominator is None and batch.valid is not None:
        denominator = batch.valid.sum().to(loss.dtype)
    if batch.reduction == "none" and batch.unbatched:
        loss = loss.squeeze(0)
    return reduce_loss(loss, batch.reduction, denominator)


def masked(value: Coef, batch: Batch) -> Coef:
    """A per-position coefficient, 0 at ignored positions (flat; unchanged if none is)."""
    valid = batch.flat_valid()
    return value if valid is None else valid.to(compute_dtype(batch.logits.dtype)) * value


def example_weight(batch: Batch) -> Coef:
    """Each position's weight, flat: ``weight[y]`` (0 where ignored), else the valid mask or 1."""
    w_y = batch.flat_weight()
    return masked(1.0, batch) if w_y is None else w_y


def finish_weighted(batch: Batch, loss: Tensor, extra: float | Tensor = 0.0) -> Tensor:
    """Scale each position's loss by ``weight[y]``, add the unweighted ``extra`` (a z-loss),
    then reduce; a mean divides by the sum of the weights."""
    w_y = batch.target_weight()
    if w_y is None:
        return finish(batch, loss + extra, None)
    return finish(batch, w_y * loss + extra, w_y.sum())


def check_logit_options(lse_square_scale: object, softcap: object) -> tuple[float, float]:
    """Validate the z-loss scale (``>= 0``) and the softcap (``None`` or ``> 0``; 0 for none)."""
    scale = check_real("lse_square_scale", lse_square_scale, low=0.0)
    cap = 0.0 if softcap is None else check_real("softcap", softcap, low=0.0, low_open=True)
    return scale, cap


def capped(batch: Batch, softcap: float) -> Batch:
    """The batch with logits ``softcap tanh(z / softcap)`` (unchanged for a softcap of 0)."""
    if not softcap:
        return batch
    return replace(batch, logits=softcap * torch.tanh(batch.logits / softcap))


def z_loss(batch: Batch, lse_square_scale: float) -> Tensor | float:
    """``s lse(z)^2`` per position (PaLM's auxiliary z-loss), or 0 for ``s = 0``."""
    if not lse_square_scale:
        return 0.0
    return lse_square_scale * torch.logsumexp(batch.logits, dim=1).square()
