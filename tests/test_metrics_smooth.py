"""Smooth ECE: a closed form, a naive image-sum twin, the authors' relplot as oracle, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothlab.metrics import smooth_calibration_error
from smoothlab.metrics.smooth import MIN_BANDWIDTH

F64 = torch.float64


def problem(
    n: int, seed: int, c: int = 4, sharpen: float = 1.4
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities softmax(z) with labels drawn from softmax(z / sharpen): overconfident."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=generator, dtype=F64) * 2
    truth = torch.softmax(logits / sharpen, dim=1)
    return torch.softmax(logits, 1), torch.multinomial(truth, 1, generator=generator).squeeze(1)


def naive_smooth_ece(conf: np.ndarray, correct: np.ndarray, sigma: float) -> float:
    """Reflected Gaussian as a sum of mirror images, one sample at a time, trapezoid on a grid."""
    t = np.linspace(0.0, 1.0, 4001)
    rho = np.zeros_like(t)
    for c, o in zip(conf, correct, strict=True):
        kernel = np.zeros_like(t)
        for k in range(-6, 7):
            for centre in (c - 2 * k, -c - 2 * k):
                kernel += np.exp(-((t - centre) ** 2) / (2 * sigma**2))
        rho += (c - o) * kernel / (math.sqrt(2 * math.pi) * sigma)
    return float(np.trapezoid(np.abs(rho / len(conf)), t))


def naive_fixed_point(conf: np.ndarray, correct: np.ndarray) -> float:
    low, high = MIN_BANDWIDTH, 1.0
    for _ in range(24):
        middle = (low + high) / 2
        low, high = (
            (middle, high) if naive_smooth_ece(conf, correct, middle) > middle else (low, middle)
        )
    return (low + high) / 2


def top(probs: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    prediction = probs.argmax(1)
    return probs.max(1).values.numpy(), (prediction == target).double().numpy()


@pytest.mark.parametrize("confidence", [0.3, 0.75, 1.0])
def test_one_confidence_gives_its_gap_at_every_bandwidth(confidence: float) -> None:
    # All mass at one point: rho is (c - acc) times a kernel of mass 1 on [0, 1].
    probs = torch.tensor([[confidence, 1 - confidence]] * 8, dtype=F64)
    target = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1])  # accuracy 3/8 when class 0 is the arg-max
    gap = abs(confidence - 3 / 8) if confidence >= 0.5 else abs(1 - confidence - 5 / 8)
    for sigma in (0.01, 0.1, 1.0):
        value = smooth_calibration_error(probs, target, bandwidth=sigma)
        assert float(value) == pytest.approx(gap, abs=1e-12)
    assert float(smooth_calibration_error(probs, target)) == pytest.approx(gap, rel=1e-12)


@pytest.mark.parametrize(("n", "seed", "sigma"), [(5, 0, 0.05), (12, 1, 0.2), (30, 2, 0.7)])
def test_fixed_bandwidth_matches_the_naive_image_sum(n: int, seed: int, sigma: float) -> None:
    probs, target = problem(n, seed)
    ours = float(smooth_calibration_error(probs, target, bandwidth=sigma))
    assert ours == pytest.approx(naive_smooth_ece(*top(probs, target), sigma), abs=2e-6)


@pytest.mark.parametrize(("n", "seed"), [(8, 3), (16, 4)])
def test_fixed_point_matches_the_naive_bisection(n: int, seed: int) -> None:
    probs, target = problem(n, seed)
    ours = float(smooth_calibration_error(probs, target))
    assert ours == pytest.approx(naive_fixed_point(*top(probs, target)), abs=1e-5)
    # The value is its own bandwidth.
    assert float(smooth_calibration_error(probs, target, bandwidth=ours)) == pytest.approx(
        ours, abs=1e-11
    )


def test_matches_relplot() -> None:
    relplot = pytest.importorskip("relplot")
    probs, target = problem(3000, 5)
    conf, correct = top(probs, target)
    # relplot rounds samples to a grid of about 1000 points and evaluates on 200: ~1e-4 apart.
    for sigma in (0.03, 0.1):
        ours = float(smooth_calibration_error(probs, target, bandwidth=sigma))
        assert ours == pytest.approx(relplot.smECE_sigma(conf, correct, sigma), abs=3e-4)
    value, width = relplot.smECE(conf, correct, return_width=True)
    ours = float(smooth_calibration_error(probs, target))
    # relplot bisects to 2**-10 and returns the upper end of its bracket.
    assert ours <= width <= ours + 2**-10 + 1e-12
    assert float(smooth_calibration_error(probs, target, bandwidth=width)) == pytest.approx(
        value, abs=3e-4
    )


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), seed=st.integers(0, 2**31), low=st.floats(0.01, 0.5))
def test_nonincreasing_in_the_bandwidth_and_bounded(n: int, seed: int, low: float) -> None:
    probs, target = problem(n, seed)
    small = float(smooth_calibration_error(probs, target, bandwidth=low))
    large = float(smooth_calibration_error(probs, target, bandwidth=min(1.0, 2 * low)))
    assert large <= small + 1e-12
    conf, correct = top(probs, target)
    assert small <= float(np.abs(conf - correct).mean()) + 1e-12  # the triangle inequality
    value = float(smooth_calibration_error(probs, target))
    assert MIN_BANDWIDTH <= value <= 1.0


def test_perfect_calibration_reports_the_smallest_bandwidth() -> None:
    probs = torch.tensor([[0.5, 0.5]] * 4, dtype=F64)
    # Zero up to rounding: the coefficients' angle-addition products need not cancel exactly.
    value = smooth_calibration_error(probs, torch.tensor([0, 0, 1, 1]))
    assert float(value) == pytest.approx(0.0, abs=1e-15)
    # Nearly calibrated: the fixed point is below the floor, reported at the floor.
    probs = torch.tensor([[0.5005, 0.4995]] * 2, dtype=F64)
    value = smooth_calibration_error(probs, torch.tensor([0, 1]))
    assert float(value) == pytest.approx(0.0005, rel=1e-9)


def test_gradients_at_a_fixed_bandwidth_and_through_the_fixed_point() -> None:
    probs, target = problem(6, 6, c=3)
    logits = probs.log().requires_grad_()

    def fixed(z: torch.Tensor) -> torch.Tensor:
        return smooth_calibration_error(torch.softmax(z, 1), target, bandwidth=0.1)

    def solved(z: torch.Tensor) -> torch.Tensor:
        return smooth_calibration_error(torch.softmax(z, 1), target)

    assert torch.autograd.gradcheck(fixed, (logits,))
    assert torch.autograd.gradcheck(solved, (logits,), atol=1e-6)


def test_empty_input_and_errors() -> None:
    empty = smooth_calibration_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    assert math.isnan(float(empty))
    probs, target = problem(4, 0)
    with pytest.raises(ValueError, match=r"`bandwidth` must be > 0\.0, got 0"):
        smooth_calibration_error(probs, target, bandwidth=0)
    with pytest.raises(ValueError, match=r"`bandwidth` must be <= 1\.0, got 1\.5"):
        smooth_calibration_error(probs, target, bandwidth=1.5)
    with pytest.raises(TypeError, match="`bandwidth` must be a real number, got 'wide'"):
        smooth_calibration_error(probs, target, bandwidth="wide")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`probs` must be a distribution summing to 1 along dim 1"):
        smooth_calibration_error(probs * 2, target)
