"""Smooth ECE: a closed form, a naive image-sum twin, the authors' relplot as oracle, gradients,
and the bandwidth search against a plain-bisection twin."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothlab.metrics import smooth, smooth_calibration_error
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


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 50), start=st.integers(0, 300), count=st.integers(1, 400))
def test_coefficients_match_a_loop(n: int, start: int, count: int) -> None:
    conf, residual = torch.rand(n, dtype=F64), torch.randn(n, dtype=F64)
    ours = smooth._cosine_coefficients(conf, residual, start + count, start=start).numpy()
    expected = [
        sum(
            r * math.cos(math.pi * m * c)
            for c, r in zip(conf.tolist(), residual.tolist(), strict=True)
        )
        / n
        for m in range(start, start + count)
    ]
    # Both round the phase pi m c to ~eps pi m, so the tolerance grows with the highest term.
    tolerance = 2e-15 * (start + count + 1) * float(residual.abs().max())
    np.testing.assert_allclose(ours, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("sigma", [0.004, 0.02, 0.05, 0.3, 1.0])
def test_slope_is_the_derivative_of_the_error(sigma: float) -> None:
    probs, target = problem(30, 10)
    conf = probs.max(1).values
    residual = conf - (probs.argmax(1) == target).double()
    coefficients = smooth._cosine_coefficients(conf, residual, smooth._terms(sigma))
    error, slope = smooth._error_and_slope(coefficients, sigma)
    bandwidth = torch.tensor(sigma, dtype=F64, requires_grad=True)
    value = smooth._error_at(coefficients, bandwidth)
    (expected,) = torch.autograd.grad(value, bandwidth)
    assert error == pytest.approx(float(value.detach()), rel=1e-14)
    # At wide bandwidths the slope is ~0 and both are rounding noise of the error's size.
    assert slope == pytest.approx(float(expected), rel=1e-12, abs=1e-15)
    assert slope <= 1e-15  # smECE_sigma does not increase with sigma


def bisection_smooth_ece(probs: torch.Tensor, target: torch.Tensor) -> float:
    """The search's twin: plain bisection on ``smECE_sigma - sigma`` at fixed bandwidths (float64),
    to the same relative 1e-13, a root below the floor reported as smECE at the floor."""

    def error(sigma: float) -> float:
        return float(smooth_calibration_error(probs, target, bandwidth=sigma))

    at_floor = error(MIN_BANDWIDTH)
    if at_floor <= MIN_BANDWIDTH:
        return at_floor
    low, high = MIN_BANDWIDTH, 1.0
    while high - low > 1e-13 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if error(middle) > middle else (low, middle)
    return (low + high) / 2


def softmax_problem(n: int, seed: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The lab's kind of input: 10 classes, labels from softmax(z), predictions softmax(z / T)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=generator, dtype=F64) * 3
    target = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)
    return torch.softmax(logits / temperature, 1), target


def edge_problems() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    two = torch.tensor([0, 1])
    confident = torch.tensor([[0.999, 0.001], [0.97, 0.03], [0.995, 0.005]], dtype=F64)
    probs, _ = problem(12, 7)
    return {
        "well calibrated": problem(200, 1, c=10, sharpen=1.0),
        "over-confident": problem(200, 2, c=10, sharpen=2.5),
        "under-confident": problem(200, 3, c=10, sharpen=0.5),
        "one sample": problem(1, 4),
        "two samples": problem(2, 5),
        "all correct": (probs, probs.argmax(1)),
        "root at the floor": (torch.tensor([[0.5005, 0.4995]] * 2, dtype=F64), two),
        "root just above the floor": (torch.tensor([[0.5015, 0.4985]] * 2, dtype=F64), two),
        "root near 1": (confident, torch.ones(3, dtype=torch.int64)),
    }


class Counter:
    """Counts the search's evaluations (one FFT batch each) while passing them through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls, self.inner = 0, smooth._error_and_slope
        monkeypatch.setattr(smooth, "_error_and_slope", self)

    def __call__(self, coefficients: torch.Tensor, sigma: float) -> tuple[float, float]:
        self.calls += 1
        return self.inner(coefficients, sigma)


@pytest.mark.parametrize("name", list(edge_problems()))
def test_search_matches_bisection_on_edge_cases(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    probs, target = edge_problems()[name]
    counter = Counter(monkeypatch)
    ours = float(smooth_calibration_error(probs, target))
    assert counter.calls <= 12  # bisection took ~45
    assert ours == pytest.approx(bisection_smooth_ece(probs, target), rel=1e-12, abs=1e-300)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 2**31), sharpen=st.floats(0.3, 3.0))
def test_search_matches_bisection_on_random_problems(n: int, seed: int, sharpen: float) -> None:
    probs, target = problem(n, seed, c=2 + seed % 9, sharpen=sharpen)
    ours = float(smooth_calibration_error(probs, target))
    assert ours == pytest.approx(bisection_smooth_ece(probs, target), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("n", [600, 3000])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_search_takes_few_evaluations_on_the_labs_inputs(
    n: int, temperature: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    probs, target = softmax_problem(n, 8, temperature)
    counter = Counter(monkeypatch)
    value = float(smooth_calibration_error(probs, target))
    assert 2 <= counter.calls <= 12
    # It is the fixed point: smECE at the returned bandwidth is the bandwidth.
    at_value = float(smooth_calibration_error(probs, target, bandwidth=value))
    assert at_value == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(
    "bad_step",
    [lambda sigma, error, slope: 5.0, lambda sigma, error, slope: sigma],
    ids=["leaves the bracket", "does not shrink it"],
)
def test_bad_newton_steps_fall_back_to_bisection(
    bad_step: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    probs, target = problem(40, 9)
    monkeypatch.setattr(smooth, "_newton_step", bad_step)
    counter = Counter(monkeypatch)
    ours = float(smooth_calibration_error(probs, target))
    assert ours == pytest.approx(bisection_smooth_ece(probs, target), rel=1e-12)
    assert 12 < counter.calls <= 100  # bisection's pace, never worse than twice its ~45


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
