"""``nn.Module`` twins of the noisy-label baselines (L2), re-exported from :mod:`smoothlab.nn`.

Each stores its hyperparameters (validated here, so a bad value fails at construction) and its
``forward`` is one call of the function it names.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smoothlab._checks import check_generator, check_real, check_reduction
from smoothlab.losses.fdivergence import f_divergence_loss
from smoothlab.losses.robust import (
    backward_corrected_cross_entropy,
    forward_corrected_cross_entropy,
    generalized_cross_entropy,
    peer_loss,
    symmetric_cross_entropy,
)
from smoothlab.noise.matrices import check_transition

__all__ = [
    "BackwardCorrectedCrossEntropyLoss",
    "FDivergenceLoss",
    "ForwardCorrectedCrossEntropyLoss",
    "GeneralizedCrossEntropyLoss",
    "Loss",
    "PeerLoss",
    "SymmetricCrossEntropyLoss",
]


class Loss(nn.Module):
    """Base of the twins: ``weight`` is a buffer; ``ignore_index``, ``reduction`` attributes."""

    weight: Tensor | None

    def __init__(self, weight: Tensor | None, ignore_index: int, reduction: str) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)


class _Corrected(Loss):
    """A loss correction: the ``(C, C)`` transition matrix is a buffer (moves with ``.to``)."""

    transition: Tensor

    def __init__(
        self,
        transition: Tensor,
        *,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.register_buffer("transition", check_transition(transition))


class ForwardCorrectedCrossEntropyLoss(_Corrected):
    """Module form of :func:`smoothlab.losses.robust.forward_corrected_cross_entropy`.

    >>> loss_fn = ForwardCorrectedCrossEntropyLoss(torch.tensor([[0.8, 0.2], [0.1, 0.9]]))
    >>> loss_fn(torch.tensor([[2.0, 0.0]]), torch.tensor([1]))
    tensor(1.2607)
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return forward_corrected_cross_entropy(
            input,
            target,
            self.transition,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class BackwardCorrectedCrossEntropyLoss(_Corrected):
    """Module form of :func:`smoothlab.losses.robust.backward_corrected_cross_entropy`.

    >>> loss_fn = BackwardCorrectedCrossEntropyLoss(torch.tensor([[0.8, 0.2], [0.1, 0.9]]))
    >>> loss_fn(torch.tensor([[2.0, 0.0]]), torch.tensor([1]))
    tensor(2.4126)
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return backward_corrected_cross_entropy(
            input,
            target,
            self.transition,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class PeerLoss(Loss):
    """Module form of :func:`smoothlab.losses.robust.peer_loss`; ``generator`` is kept.

    >>> loss_fn = PeerLoss(alpha=0.5, generator=torch.Generator().manual_seed(0))
    >>> loss_fn(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1, 0]))
    tensor(-0.3111)
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        generator: torch.Generator | None = None,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.alpha = check_real("alpha", alpha, low=0.0)
        self.generator = check_generator(generator)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return peer_loss(
            input,
            target,
            alpha=self.alpha,
            generator=self.generator,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class FDivergenceLoss(nn.Module):
    """Module form of :func:`smoothlab.losses.fdivergence.f_divergence_loss`.

    >>> loss_fn = FDivergenceLoss(divergence="kl")
    >>> loss_fn(torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 1]))
    tensor(-0.0999)
    """

    prior: Tensor | None

    def __init__(
        self,
        *,
        divergence: str = "total-variation",
        prior: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.divergence = divergence
        self.register_buffer("prior", prior)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return f_divergence_loss(
            input,
            target,
            divergence=self.divergence,
            prior=self.prior,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class GeneralizedCrossEntropyLoss(Loss):
    """Module form of :func:`smoothlab.losses.robust.generalized_cross_entropy`.

    >>> GeneralizedCrossEntropyLoss(q=0.7)(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    tensor(0.2205)
    """

    def __init__(
        self,
        *,
        q: float = 0.7,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.q = check_real("q", q, low=0.0, high=1.0, low_open=True)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return generalized_cross_entropy(
            input,
            target,
            q=self.q,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class SymmetricCrossEntropyLoss(Loss):
    """Module form of :func:`smoothlab.losses.robust.symmetric_cross_entropy`.

    >>> SymmetricCrossEntropyLoss()(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    tensor(0.8760)
    """

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        beta: float = 1.0,
        log_zero: float = -4.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.alpha = check_real("alpha", alpha, low=0.0)
        self.beta = check_real("beta", beta, low=0.0)
        self.log_zero = check_real("log_zero", log_zero, high=0.0, high_open=True)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return symmetric_cross_entropy(
            input,
            target,
            alpha=self.alpha,
            beta=self.beta,
            log_zero=self.log_zero,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
