"""The identities the fused kernels rely on, checked on the public functions (float64)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from smoothlab import smooth_targets
from smoothlab.losses import (
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
)

rows = st.lists(
    st.lists(st.floats(-30, 30, allow_nan=False), min_size=4, max_size=4), min_size=1, max_size=5
)


@given(z=rows, r=st.floats(-3, 1), cls=st.integers(0, 3))
def test_uniform_and_negative_smoothing_are_ce_plus_a_mean_term(
    z: list[list[float]], r: float, cls: int
) -> None:
    """LS_r = (1 - r) CE + r (lse(z) - mean(z)) = CE + r (z_y - mean(z)), for any real r."""
    x = torch.tensor(z, dtype=torch.float64)
    y = torch.full((len(z),), cls)
    ce = F.cross_entropy(x, y, reduction="none")
    lse, mean = torch.logsumexp(x, 1), x.mean(1)
    ours = label_smoothing_cross_entropy(x, y, r, reduction="none")
    torch.testing.assert_close(ours, (1 - r) * ce + r * (lse - mean))
    torch.testing.assert_close(ours, ce + r * (x[:, cls] - mean))


@given(z=rows, r=st.floats(-3, 1), cls=st.integers(0, 3))
def test_gradient_is_softmax_minus_target(z: list[list[float]], r: float, cls: int) -> None:
    x = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = torch.full((len(z),), cls)
    (grad,) = torch.autograd.grad(label_smoothing_cross_entropy(x, y, r, reduction="sum"), x)
    q = smooth_targets(y, 4, r, dtype=torch.float64)
    torch.testing.assert_close(grad, torch.softmax(x.detach(), 1) - q)


@given(z=rows, alpha=st.floats(0.01, 0.99), cls=st.integers(0, 3))
def test_relaxation_depends_only_on_log_p_y(z: list[list[float]], alpha: float, cls: int) -> None:
    """Relaxation is a function of log p_y = -CE; its gradient is kappa (softmax - e_y)."""
    x = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = torch.full((len(z),), cls)
    log_p_y = -F.cross_entropy(x.detach(), y, reduction="none")
    p_y = log_p_y.exp()
    inside = p_y >= 1 - alpha
    kl = (1 - alpha) * (math.log(1 - alpha) - log_p_y) + alpha * (
        math.log(alpha) - torch.log1p(-p_y)
    )
    loss = label_relaxation_loss(x, y, alpha, reduction="none")
    expected = torch.where(inside, 0.0, kl)
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-9)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    kappa = torch.where(inside, 0.0, ((1 - alpha) - p_y) / (1 - p_y))
    onehot = F.one_hot(y, 4).double()
    torch.testing.assert_close(
        grad, kappa[:, None] * (torch.softmax(x.detach(), 1) - onehot), rtol=1e-7, atol=1e-9
    )


@given(z=rows, beta=st.floats(0, 2), cls=st.integers(0, 3))
def test_confidence_penalty_gradient(z: list[list[float]], beta: float, cls: int) -> None:
    """d(CE - beta H)/dz = p - e_y + beta p (log p + H)."""
    x = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    y = torch.full((len(z),), cls)
    (grad,) = torch.autograd.grad(confidence_penalty_loss(x, y, beta, reduction="sum"), x)
    log_p = torch.log_softmax(x.detach(), 1)
    p = log_p.exp()
    entropy = -(p * log_p).sum(1, keepdim=True)
    expected = p - F.one_hot(y, 4).double() + beta * p * (log_p + entropy)
    torch.testing.assert_close(grad, expected, rtol=1e-7, atol=1e-9)
