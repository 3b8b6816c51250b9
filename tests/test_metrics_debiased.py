"""Debiased squared calibration error: a naive per-bin twin, unbiasedness, pinned conventions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothlab.metrics import debiased_calibration_error, expected_calibration_error

F64 = torch.float64


def naive_debiased(probs: torch.Tensor, target: torch.Tensor, n_bins: int) -> float:
    """One bin at a time, equal-width right-closed bins, in Python floats."""
    conf = probs.max(1).values.tolist()
    correct = (probs.argmax(1) == target).tolist()
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(conf):
        members[max(0, math.ceil(c * n_bins) - 1)].append(i)
    total = 0.0
    for bin_ in members:
        n = len(bin_)
        if n < 2:
            continue
        acc = sum(correct[i] for i in bin_) / n
        mean_conf = sum(conf[i] for i in bin_) / n
        total += n / len(conf) * ((acc - mean_conf) ** 2 - acc * (1 - acc) / (n - 1))
    return total


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60), c=st.integers(2, 5), bins=st.integers(1, 8), seed=st.integers(0, 2**31)
)
def test_matches_the_naive_twin(n: int, c: int, bins: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    # Rounded probabilities put confidences on bin edges too (n_bins = 4: 0.25, 0.5, ...).
    probs = torch.softmax(torch.randn(n, c, generator=generator, dtype=F64) * 2, 1)
    probs = torch.cat([probs[:, :1].mul(8).round().div(8), probs[:, 1:]], 1)
    probs = probs / probs.sum(1, keepdim=True)
    target = torch.randint(c, (n,), generator=generator)
    ours = float(debiased_calibration_error(probs, target, n_bins=bins))
    assert ours == pytest.approx(naive_debiased(probs, target, bins), abs=1e-12)


def test_unbiased_where_the_plugin_is_not() -> None:
    # Fixed confidences, outcomes Bernoulli with a true accuracy constant in each bin: the
    # debiased estimator's mean is the true squared error; the plug-in's exceeds it.
    conf = torch.tensor([0.55, 0.6, 0.65, 0.7] * 3 + [0.8, 0.85, 0.9, 0.95] * 3, dtype=F64)
    accuracy = torch.where(conf <= 0.75, 0.5, 0.7)
    truth = float(((accuracy - conf).view(2, 12).mean(1) ** 2).mean())  # equal-size bins
    probs = torch.stack([conf, 1 - conf], 1)
    generator = torch.Generator().manual_seed(0)
    draws = 1500
    right = torch.rand(draws, conf.shape[0], generator=generator, dtype=F64) < accuracy
    debiased, plugin = [], []
    for row in right:
        target = torch.where(row, 0, 1)
        debiased.append(float(debiased_calibration_error(probs, target, n_bins=2)))
        plugin.append(float(expected_calibration_error(probs, target, n_bins=2, norm="l2")) ** 2)
    mean, stderr = torch.tensor(debiased).mean(), torch.tensor(debiased).std() / math.sqrt(draws)
    assert abs(float(mean) - truth) < 5 * float(stderr)
    plug_mean = torch.tensor(plugin).mean()
    assert float(plug_mean) - truth > 5 * float(torch.tensor(plugin).std() / math.sqrt(draws))


def test_singleton_bins_drop_out_and_empty_input_is_nan() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4]], dtype=F64)
    # Bin (0.5, 1] with n_bins = 2 holds all three; with 10 bins 0.9 sits alone and drops out.
    value = debiased_calibration_error(probs, torch.tensor([0, 0, 1]), n_bins=10)
    assert float(value) == pytest.approx(2 / 3 * ((0.5 - 0.6) ** 2 - 0.25 / 1))
    empty = debiased_calibration_error(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64))
    assert math.isnan(float(empty))


def test_quantile_bins_and_errors() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]], dtype=F64)
    target = torch.tensor([0, 1, 0, 0])
    # Two equal-mass bins: {0.6, 0.7} all right, {0.8, 0.9} half right.
    expected = 0.5 * ((1 - 0.65) ** 2 - 0) + 0.5 * ((0.5 - 0.85) ** 2 - 0.25)
    value = debiased_calibration_error(probs, target, n_bins=2, binning="quantile")
    assert float(value) == pytest.approx(expected)
    with pytest.raises(ValueError, match="`n_bins` must be >= 1, got 0"):
        debiased_calibration_error(probs, target, n_bins=0)
    with pytest.raises(ValueError, match="`binning` must be one of 'uniform', 'quantile', got 'x'"):
        debiased_calibration_error(probs, target, binning="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`probs` must be a distribution summing to 1"):
        debiased_calibration_error(probs * 2, target)


def test_gradcheck_inside_fixed_bins() -> None:
    # Differentiable in the probabilities while no confidence crosses a bin edge.
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(12, 3, generator=generator, dtype=F64).requires_grad_()
    target = torch.randint(3, (12,), generator=generator)

    def estimate(z: torch.Tensor) -> torch.Tensor:
        return debiased_calibration_error(torch.softmax(z, 1), target, n_bins=3)

    assert torch.autograd.gradcheck(estimate, (logits,))
