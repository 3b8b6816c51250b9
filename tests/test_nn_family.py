"""The module twins of the baselines and the smoothing family: one call of their function."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from smoothlab import _nn_family as fam
from smoothlab.losses.fdivergence import f_divergence_loss
from smoothlab.losses.focal import focal_loss, sample_dependent_focal_loss
from smoothlab.losses.regularized import (
    logit_norm_loss,
    logit_penalty_loss,
    margin_label_smoothing_loss,
    max_suppression_loss,
)
from smoothlab.losses.robust import (
    backward_corrected_cross_entropy,
    forward_corrected_cross_entropy,
    generalized_cross_entropy,
    peer_loss,
    symmetric_cross_entropy,
)
from smoothlab.noise import pairflip

T = pairflip(4, 0.3)
W = torch.tensor([1.0, 0.5, 2.0, 1.5], dtype=torch.float64)
TWINS: list[tuple[nn.Module, Callable[..., Tensor]]] = [
    (
        fam.ForwardCorrectedCrossEntropyLoss(T, weight=W, reduction="sum"),
        lambda z, y: forward_corrected_cross_entropy(z, y, T, weight=W, reduction="sum"),
    ),
    (
        fam.BackwardCorrectedCrossEntropyLoss(T, ignore_index=3),
        lambda z, y: backward_corrected_cross_entropy(z, y, T, ignore_index=3),
    ),
    (
        fam.PeerLoss(alpha=0.3, generator=torch.Generator().manual_seed(2)),
        lambda z, y: peer_loss(z, y, alpha=0.3, generator=torch.Generator().manual_seed(2)),
    ),
    (
        fam.FDivergenceLoss(divergence="pearson", reduction="none"),
        lambda z, y: f_divergence_loss(z, y, divergence="pearson", reduction="none"),
    ),
    (
        fam.GeneralizedCrossEntropyLoss(q=0.4, weight=W),
        lambda z, y: generalized_cross_entropy(z, y, q=0.4, weight=W),
    ),
    (
        fam.SymmetricCrossEntropyLoss(alpha=0.2, beta=0.5, log_zero=-2.0),
        lambda z, y: symmetric_cross_entropy(z, y, alpha=0.2, beta=0.5, log_zero=-2.0),
    ),
    (fam.MaxSuppressionLoss(alpha=0.2), lambda z, y: max_suppression_loss(z, y, alpha=0.2)),
    (
        fam.MarginLabelSmoothingLoss(margin=1.0, alpha=0.3),
        lambda z, y: margin_label_smoothing_loss(z, y, margin=1.0, alpha=0.3),
    ),
    (
        fam.LogitNormLoss(temperature=0.2, eps=1e-3),
        lambda z, y: logit_norm_loss(z, y, temperature=0.2, eps=1e-3),
    ),
    (fam.LogitPenaltyLoss(beta=0.01), lambda z, y: logit_penalty_loss(z, y, beta=0.01)),
    (fam.FocalLoss(gamma=1.0, weight=W), lambda z, y: focal_loss(z, y, gamma=1.0, weight=W)),
    (
        fam.SampleDependentFocalLoss(threshold=0.4, gamma_below=4.0, gamma_above=1.0),
        lambda z, y: sample_dependent_focal_loss(
            z, y, threshold=0.4, gamma_below=4.0, gamma_above=1.0
        ),
    ),
]


@pytest.mark.parametrize(("module", "function"), TWINS, ids=lambda v: type(v).__name__)
def test_module_is_one_call_of_its_function(module: nn.Module, function: Callable) -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    torch.testing.assert_close(module(z, y), function(z, y))


def test_buffers_travel_with_the_module() -> None:
    module = fam.ForwardCorrectedCrossEntropyLoss(T, weight=W)
    assert set(module.state_dict()) == {"weight", "transition"}
    assert module.to(torch.float32).transition.dtype == torch.float32
    prior = torch.tensor([0.5, 0.5])
    assert "prior" in fam.FDivergenceLoss(prior=prior).state_dict()
    assert repr(fam.AdaFocalLoss()).startswith("AdaFocalLoss(num_bins=15")


ERRORS = [
    (
        lambda: fam.ForwardCorrectedCrossEntropyLoss(torch.ones(2, 2)),
        ValueError,
        "`transition` must be row-stochastic (rows summing to 1), got row 0 summing to 2",
    ),
    (lambda: fam.PeerLoss(generator=1), TypeError, "`generator` must be a torch.Generator"),
    (lambda: fam.PeerLoss(alpha=-1), ValueError, "`alpha` must be >= 0.0, got -1"),
    (lambda: fam.FDivergenceLoss(reduction="x"), ValueError, "`reduction` must be one of"),
    (lambda: fam.GeneralizedCrossEntropyLoss(q=0), ValueError, "`q` must be > 0.0, got 0"),
    (lambda: fam.SymmetricCrossEntropyLoss(log_zero=1), ValueError, "`log_zero` must be < 0.0"),
    (lambda: fam.SymmetricCrossEntropyLoss(beta=-1), ValueError, "`beta` must be >= 0.0"),
    (lambda: fam.MaxSuppressionLoss(alpha=-1), ValueError, "`alpha` must be >= 0.0, got -1"),
    (lambda: fam.MarginLabelSmoothingLoss(margin=-1), ValueError, "`margin` must be >= 0.0"),
    (lambda: fam.LogitNormLoss(temperature=0), ValueError, "`temperature` must be > 0.0"),
    (lambda: fam.LogitNormLoss(eps=-1.0), ValueError, "`eps` must be > 0.0, got -1.0"),
    (lambda: fam.LogitPenaltyLoss(beta=-0.1), ValueError, "`beta` must be >= 0.0, got -0.1"),
    (lambda: fam.FocalLoss(gamma=-2), ValueError, "`gamma` must be >= 0.0, got -2"),
    (lambda: fam.SampleDependentFocalLoss(threshold=2), ValueError, "`threshold` must be <= 1.0"),
    (lambda: fam.SampleDependentFocalLoss(gamma_below=-1), ValueError, "`gamma_below` must be"),
    (lambda: fam.SampleDependentFocalLoss(gamma_above=-1), ValueError, "`gamma_above` must be"),
]


@pytest.mark.parametrize(("call", "kind", "message"), ERRORS)
def test_construction_errors(call: object, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call()  # type: ignore[operator]
