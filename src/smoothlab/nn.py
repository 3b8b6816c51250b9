"""``nn.Module`` wrappers of the loss family (L2): hyperparameters stored, ``forward`` one call.

The four smoothing-family modules take the z-loss and softcap options of their functions
(``lse_square_scale``, ``softcap``; see :func:`smoothlab.label_smoothing_cross_entropy`),
validated at construction and stored as plain attributes.
"""

from __future__ import annotations

from torch import Tensor, nn

from smoothlab._checks import check_real, check_reduction
from smoothlab._nn_family import (
    AdaFocalLoss,
    BackwardCorrectedCrossEntropyLoss,
    FDivergenceLoss,
    FocalLoss,
    ForwardCorrectedCrossEntropyLoss,
    GeneralizedCrossEntropyLoss,
    LogitNormLoss,
    LogitPenaltyLoss,
    MarginLabelSmoothingLoss,
    MaxSuppressionLoss,
    PeerLoss,
    SampleDependentFocalLoss,
    SymmetricCrossEntropyLoss,
)
from smoothlab.losses import (
    Weighting,
    confidence_penalty_loss,
    cross_entropy,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
)
from smoothlab.losses._common import check_logit_options
from smoothlab.losses.cross_entropy import resolve_reduction

__all__ = [
    "AdaFocalLoss",
    "BackwardCorrectedCrossEntropyLoss",
    "ConfidencePenaltyLoss",
    "CrossEntropyLoss",
    "FDivergenceLoss",
    "FocalLoss",
    "ForwardCorrectedCrossEntropyLoss",
    "GeneralizedCrossEntropyLoss",
    "LabelRelaxationLoss",
    "LabelSmoothingCrossEntropyLoss",
    "LogitNormLoss",
    "LogitPenaltyLoss",
    "MarginLabelSmoothingLoss",
    "MaxSuppressionLoss",
    "PeerLoss",
    "SampleDependentFocalLoss",
    "SymmetricCrossEntropyLoss",
]


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """Module form of :func:`smoothlab.cross_entropy`, with ``torch.nn.CrossEntropyLoss``'s
    signature, plus three keyword-only arguments: ``prior`` (a buffer like ``weight``),
    ``lse_square_scale`` and ``softcap``.

    A subclass of PyTorch's class, so ``isinstance`` checks, attributes and state dicts carry
    over; ``label_smoothing`` may be negative and is validated here rather than at the call, as
    are the keyword-only ``lse_square_scale`` (z-loss) and ``softcap``.

    >>> import torch
    >>> logits, target = torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0])
    >>> CrossEntropyLoss(label_smoothing=0.1)(logits, target)
    tensor(0.3913)
    >>> torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, target)
    tensor(0.3913)
    >>> CrossEntropyLoss(label_smoothing=0.1, lse_square_scale=1e-2, softcap=2.0)(logits, target)
    tensor(0.5180)
    """

    prior: Tensor | None

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        prior: Tensor | None = None,
        lse_square_scale: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        mode = resolve_reduction(size_average, reduce, reduction)
        rate = check_real("label_smoothing", label_smoothing, high=1.0)
        super().__init__(weight, ignore_index=ignore_index, reduction=mode, label_smoothing=rate)
        self.register_buffer("prior", prior)
        self.lse_square_scale, self.softcap = _logit_options(lse_square_scale, softcap)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            prior=self.prior,
            lse_square_scale=self.lse_square_scale,
            softcap=self.softcap,
        )


def _logit_options(lse_square_scale: object, softcap: object) -> tuple[float, float | None]:
    """The validated z-loss scale and softcap, as the functions take them (``None``: no cap)."""
    scale, cap = check_logit_options(lse_square_scale, softcap)
    return scale, cap or None


class _Loss(nn.Module):
    """Holds the arguments common to the family; ``weight`` and ``prior`` are buffers."""

    weight: Tensor | None

    def __init__(
        self,
        weight: Tensor | None,
        ignore_index: int,
        reduction: str,
        lse_square_scale: float,
        softcap: float | None,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)
        self.lse_square_scale, self.softcap = _logit_options(lse_square_scale, softcap)

    def _options_repr(self) -> str:
        """The z-loss and softcap for ``extra_repr``, only when set (the common case is off)."""
        scale = f", lse_square_scale={self.lse_square_scale}" if self.lse_square_scale else ""
        return scale + (f", softcap={self.softcap}" if self.softcap is not None else "")


class LabelSmoothingCrossEntropyLoss(_Loss):
    """Module form of :func:`smoothlab.label_smoothing_cross_entropy` (same arguments).

    ``smoothing`` is a plain attribute: a training loop that follows a schedule sets
    ``loss_fn.smoothing = schedule(step)`` (the loop owns the step; modules never count).

    >>> import torch
    >>> loss_fn = LabelSmoothingCrossEntropyLoss(smoothing=0.1)
    >>> loss_fn(torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0]))
    tensor(0.3913)
    >>> capped = LabelSmoothingCrossEntropyLoss(0.1, lse_square_scale=1e-4, softcap=30.0)
    >>> capped.extra_repr()
    "smoothing=0.1, exclusive=False, reduction='mean', lse_square_scale=0.0001, softcap=30.0"
    >>> capped(torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0]))
    tensor(0.3922)
    """

    prior: Tensor | None

    def __init__(
        self,
        smoothing: float = 0.1,
        *,
        prior: Tensor | None = None,
        exclusive: bool = False,
        weight: Tensor | None = None,
        weighting: Weighting = "pytorch",
        ignore_index: int = -100,
        reduction: str = "mean",
        lse_square_scale: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(weight, ignore_index, reduction, lse_square_scale, softcap)
        self.smoothing = check_real("smoothing", smoothing, high=1.0)
        self.register_buffer("prior", prior)
        self.exclusive = exclusive
        self.weighting: Weighting = weighting

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return label_smoothing_cross_entropy(
            input,
            target,
            self.smoothing,
            prior=self.prior,
            exclusive=self.exclusive,
            weight=self.weight,
            weighting=self.weighting,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            lse_square_scale=self.lse_square_scale,
            softcap=self.softcap,
        )

    def extra_repr(self) -> str:
        return (
            f"smoothing={self.smoothing}, exclusive={self.exclusive}, reduction={self.reduction!r}"
            + self._options_repr()
        )


class LabelRelaxationLoss(_Loss):
    """Module form of :func:`smoothlab.label_relaxation_loss` (same arguments).

    >>> import torch
    >>> LabelRelaxationLoss(alpha=0.1)(torch.tensor([[0.5, 0.0, 0.0]]), torch.tensor([0]))
    tensor(0.4500)
    """

    def __init__(
        self,
        alpha: float = 0.1,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        lse_square_scale: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(weight, ignore_index, reduction, lse_square_scale, softcap)
        self.alpha = check_real("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return label_relaxation_loss(
            input,
            target,
            self.alpha,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            lse_square_scale=self.lse_square_scale,
            softcap=self.softcap,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, reduction={self.reduction!r}" + self._options_repr()


class ConfidencePenaltyLoss(_Loss):
    """Module form of :func:`smoothlab.confidence_penalty_loss` (same arguments).

    >>> import torch
    >>> ConfidencePenaltyLoss(beta=0.1)(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([1]))
    tensor(0.4539)
    """

    def __init__(
        self,
        beta: float = 0.1,
        *,
        threshold: float | None = None,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        lse_square_scale: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(weight, ignore_index, reduction, lse_square_scale, softcap)
        self.beta = check_real("beta", beta, low=0.0)
        self.threshold = None if threshold is None else check_real("threshold", threshold, low=0.0)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return confidence_penalty_loss(
            input,
            target,
            self.beta,
            threshold=self.threshold,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            lse_square_scale=self.lse_square_scale,
            softcap=self.softcap,
        )

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, threshold={self.threshold}, reduction={self.reduction!r}"
            + self._options_repr()
        )
