"""The stack's one-expression objectives equal each run's own loss function, value and gradient."""

from __future__ import annotations

import torch

from smoothlab.lab.plan.methods import CrossEntropy, LabelSmoothing, Method, NegativeSmoothing
from smoothlab.lab.plan.methods.smoothing import ConfidencePenalty, LabelRelaxation
from smoothlab.lab.train.stacked_objectives import StackedObjective, coefficients
from smoothlab.losses import (
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
)

METHODS: list[Method] = [
    CrossEntropy(),
    LabelSmoothing(smoothing=0.2),
    NegativeSmoothing(smoothing=-0.4),
    ConfidencePenalty(beta=0.3),
    LabelRelaxation(alpha=0.1),
    LabelRelaxation(alpha=0.4),
]


def _alone(method: Method, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each run's own loss function (the solo loop's objective)."""
    r, beta, alpha = coefficients(method) or (0.0, 0.0, 0.0)
    if alpha:
        return label_relaxation_loss(logits, y, alpha)
    if beta:
        return confidence_penalty_loss(logits, y, beta)
    return label_smoothing_cross_entropy(logits, y, r)


def _both(logits: torch.Tensor, y: torch.Tensor, epoch: int, switch: int = 0) -> None:
    together = logits.clone().requires_grad_()
    switches = torch.full((len(METHODS),), switch)
    losses = StackedObjective(METHODS, switches)(together, y, epoch)
    (grad,) = torch.autograd.grad(losses.sum(), together)
    for i, method in enumerate(METHODS):
        alone = logits[i].clone().requires_grad_()
        loss = _alone(method if epoch >= switch else CrossEntropy(), alone, y[i])
        (expected,) = torch.autograd.grad(loss, alone)
        torch.testing.assert_close(losses[i], loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad[i], expected, rtol=1e-5, atol=1e-6)
        assert torch.isfinite(grad[i]).all()


def test_each_run_gets_its_own_loss_and_gradient() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(len(METHODS), 16, 5, generator=generator)
    y = torch.randint(0, 5, (len(METHODS), 16), generator=generator)
    _both(logits, y, epoch=0)


def test_before_the_switch_every_run_trains_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(len(METHODS), 8, 4, generator=generator)
    y = torch.randint(0, 4, (len(METHODS), 8), generator=generator)
    _both(logits, y, epoch=2, switch=3)


def test_certain_predictions_give_finite_gradients() -> None:
    # p_y = 1 in float32 (log p_y = 0): inside every credal set, where log(1 - p_y) is -inf
    logits = torch.zeros(len(METHODS), 3, 4)
    logits[:, :, 0] = 200.0
    y = torch.zeros(len(METHODS), 3, dtype=torch.long)
    _both(logits, y, epoch=0)


def test_methods_outside_the_expression_run_their_own_objective() -> None:
    from smoothlab.lab.plan.methods.smoothing import OnlineSmoothing

    assert coefficients(OnlineSmoothing()) is None
    objective = StackedObjective([CrossEntropy(), OnlineSmoothing()], torch.zeros(2))
    assert objective.own == [1]
    assert not objective.penalised and not objective.relaxing
