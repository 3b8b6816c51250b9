"""``nn.Module`` twins of the newer smoothing-family losses (L2), re-exported from ``smoothlab.nn``.

Each stores its hyperparameters (validated here, so a bad value fails at construction) and its
``forward`` is one call of the function it names. This module also gathers the noisy-label
baselines' twins (:mod:`smoothlab._nn_robust`) and :class:`~smoothlab.adafocal.AdaFocalLoss`,
so that :mod:`smoothlab.nn` imports the whole family from one place.
"""

from __future__ import annotations

from torch import Tensor

from smoothlab._checks import check_real
from smoothlab._nn_robust import (
    BackwardCorrectedCrossEntropyLoss,
    FDivergenceLoss,
    ForwardCorrectedCrossEntropyLoss,
    GeneralizedCrossEntropyLoss,
    Loss,
    PeerLoss,
    SymmetricCrossEntropyLoss,
)
from smoothlab.adafocal import AdaFocalLoss
from smoothlab.losses.focal import focal_loss, sample_dependent_focal_loss
from smoothlab.losses.regularized import (
    logit_norm_loss,
    logit_penalty_loss,
    margin_label_smoothing_loss,
    max_suppression_loss,
)

__all__ = [
    "AdaFocalLoss",
    "BackwardCorrectedCrossEntropyLoss",
    "FDivergenceLoss",
    "FocalLoss",
    "ForwardCorrectedCrossEntropyLoss",
    "GeneralizedCrossEntropyLoss",
    "LogitNormLoss",
    "LogitPenaltyLoss",
    "MarginLabelSmoothingLoss",
    "MaxSuppressionLoss",
    "PeerLoss",
    "SampleDependentFocalLoss",
    "SymmetricCrossEntropyLoss",
]


class MaxSuppressionLoss(Loss):
    """Module form of :func:`smoothlab.losses.regularized.max_suppression_loss`.

    ``alpha`` is a plain attribute: a loop following
    :func:`~smoothlab.losses.regularized.max_suppression_schedule` sets it each epoch.

    >>> import torch
    >>> MaxSuppressionLoss(alpha=0.1)(torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([1]))
    tensor(1.8913)
    """

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.alpha = check_real("alpha", alpha, low=0.0)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return max_suppression_loss(
            input,
            target,
            alpha=self.alpha,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class MarginLabelSmoothingLoss(Loss):
    """Module form of :func:`smoothlab.losses.regularized.margin_label_smoothing_loss`.

    >>> import torch
    >>> MarginLabelSmoothingLoss()(torch.tensor([[8.0, 0.0, -4.0]]), torch.tensor([0]))
    tensor(0.2003)
    """

    def __init__(
        self,
        *,
        margin: float = 10.0,
        alpha: float = 0.1,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.margin = check_real("margin", margin, low=0.0)
        self.alpha = check_real("alpha", alpha, low=0.0)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return margin_label_smoothing_loss(
            input,
            target,
            margin=self.margin,
            alpha=self.alpha,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class LogitNormLoss(Loss):
    """Module form of :func:`smoothlab.losses.regularized.logit_norm_loss`.

    >>> import torch
    >>> LogitNormLoss(temperature=0.5)(torch.tensor([[3.0, 4.0, 0.0]]), torch.tensor([1]))
    tensor(0.6271)
    """

    def __init__(
        self,
        *,
        temperature: float = 0.04,
        eps: float = 1e-7,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.temperature = check_real("temperature", temperature, low=0.0, low_open=True)
        self.eps = check_real("eps", eps, low=0.0, low_open=True)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return logit_norm_loss(
            input,
            target,
            temperature=self.temperature,
            eps=self.eps,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class LogitPenaltyLoss(Loss):
    """Module form of :func:`smoothlab.losses.regularized.logit_penalty_loss`.

    >>> import torch
    >>> LogitPenaltyLoss(beta=0.1)(torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0]))
    tensor(0.5038)
    """

    def __init__(
        self,
        *,
        beta: float,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.beta = check_real("beta", beta, low=0.0)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return logit_penalty_loss(
            input,
            target,
            beta=self.beta,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class FocalLoss(Loss):
    """Module form of :func:`smoothlab.losses.focal.focal_loss`.

    >>> import torch
    >>> FocalLoss(gamma=2.0)(torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0]))
    tensor(0.0111)
    """

    def __init__(
        self,
        *,
        gamma: float = 2.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.gamma = check_real("gamma", gamma, low=0.0)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return focal_loss(
            input,
            target,
            gamma=self.gamma,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class SampleDependentFocalLoss(Loss):
    """Module form of :func:`smoothlab.losses.focal.sample_dependent_focal_loss` (FLSD-53).

    >>> import torch
    >>> SampleDependentFocalLoss()(torch.tensor([[0.0, 3.0, 0.0]]), torch.tensor([0]))
    tensor(2.4549)
    """

    def __init__(
        self,
        *,
        threshold: float = 0.2,
        gamma_below: float = 5.0,
        gamma_above: float = 3.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.threshold = check_real("threshold", threshold, low=0.0, high=1.0)
        self.gamma_below = check_real("gamma_below", gamma_below, low=0.0)
        self.gamma_above = check_real("gamma_above", gamma_above, low=0.0)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return sample_dependent_focal_loss(
            input,
            target,
            threshold=self.threshold,
            gamma_below=self.gamma_below,
            gamma_above=self.gamma_above,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
