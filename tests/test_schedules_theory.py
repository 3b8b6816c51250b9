"""Schedules as functions of the step, and the closed forms of the theory module."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smoothlab import label_smoothing_cross_entropy
from smoothlab.schedules import constant, cosine, join, linear, step, two_stage
from smoothlab.theory import optimal_logit_gap, optimal_smoothing_rate


def test_two_stage_drops_to_zero() -> None:
    s = two_stage(0.2, 10)
    assert [s(t) for t in (0, 9, 10, 100)] == [0.2, 0.2, 0.0, 0.0]
    assert two_stage(0.2, 0)(0) == 0.0


@given(t=st.integers(0, 10_000))
def test_schedules_stay_between_their_ends(t: int) -> None:
    assert 0.0 <= cosine(0.5, 100)(t) <= 0.5
    assert 0.2 <= linear(0.2, 0.9, 50, begin=10)(t) <= 0.9
    assert step(1.0, [10, 20], 0.5)(t) in (1.0, 0.5, 0.25)
    assert constant(3.0)(t) == 3.0


def test_warmup_cosine_join() -> None:
    s = join([linear(0.0, 1.0, 4), cosine(1.0, 8)], [4])
    assert s(0) == 0.0 and s(4) == 1.0 and abs(s(8) - 0.5) < 1e-12 and s(12) == 0.0
    assert s(100) == 0.0


@pytest.mark.parametrize("k", [2, 3, 10, 100])
@pytest.mark.parametrize("r", [0.05, 0.3, 0.9])
@pytest.mark.parametrize("exclusive", [False, True])
def test_logit_gap_is_the_minimiser(k: int, r: float, exclusive: bool) -> None:
    """The loss of logits [g, 0, ..., 0] is stationary at the closed-form gap and convex there."""
    y = torch.tensor([0])

    def slope(g: float) -> float:
        gap = torch.tensor(g, dtype=torch.float64, requires_grad=True)
        z = torch.cat([gap.view(1), torch.zeros(k - 1, dtype=torch.float64)]).view(1, k)
        label_smoothing_cross_entropy(z, y, r, exclusive=exclusive).backward()
        assert gap.grad is not None
        return gap.grad.item()

    g_star = optimal_logit_gap(r, k, exclusive=exclusive)
    assert abs(slope(g_star)) < 1e-12
    assert slope(g_star - 0.01) < 0 < slope(g_star + 0.01)


def test_logit_gap_edges_and_conventions() -> None:
    assert optimal_logit_gap(0.0, 10) == math.inf
    assert optimal_logit_gap(1.0, 10) == 0.0
    assert optimal_logit_gap(1.0, 10, exclusive=True) == -math.inf
    # The lecture-note formula log((K-1)(1-r)/r) is the exclusive convention's.
    assert optimal_logit_gap(0.1, 10, exclusive=True) == pytest.approx(math.log(9 * 0.9 / 0.1))


@pytest.mark.parametrize(("k", "e", "r_star"), [(10, 0.2, 0.0), (2, 0.3, 0.1), (5, 0.5, 0.4)])
def test_optimal_rate_recovers_the_clean_target(k: int, e: float, r_star: float) -> None:
    """Noisy labels smoothed with r_opt have the expected target of clean labels smoothed with r*."""
    r = optimal_smoothing_rate(k, e, r_star)
    noise = torch.full((k, k), e / (k - 1), dtype=torch.float64).fill_diagonal_(1 - e)
    eye = torch.eye(k, dtype=torch.float64)
    noisy_expected = noise @ ((1 - r) * eye + r / k)  # row i: E[target | clean = i]
    clean_target = (1 - r_star) * eye + r_star / k
    torch.testing.assert_close(noisy_expected, clean_target)


def test_optimal_rate_sign_follows_wei_et_al() -> None:
    # Low noise (e <= (K-1) r*/K): positive; high noise: negative (NLS is better).
    assert optimal_smoothing_rate(10, 0.05, 0.2) > 0
    assert optimal_smoothing_rate(10, 0.3, 0.2) < 0
    assert optimal_smoothing_rate(10, 0.0, 0.2) == pytest.approx(0.2)
