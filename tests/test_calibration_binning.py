"""Histogram binning and isotonic calibration: scikit-learn and loop twins, conventions, state."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothlab.calibration import HistogramBinning, IsotonicCalibration
from smoothlab.calibration.binning import pool_adjacent_violators

F64 = torch.float64


def planted(n: int, c: int = 3, seed: int = 0, digits: int | None = None):
    """Overconfident logits (labels from softmax(z / 2)); rounding them creates tied probabilities."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=generator, dtype=F64) * 3
    target = torch.multinomial(torch.softmax(logits / 2, 1), 1, generator=generator).squeeze(1)
    return (logits if digits is None else logits.round(decimals=digits)), target


def renormalised(mapped: np.ndarray) -> np.ndarray:
    return mapped / mapped.sum(1, keepdims=True)


@pytest.mark.parametrize("digits", [None, 0])
def test_isotonic_matches_scikit_learn(digits: int | None) -> None:
    isotonic = pytest.importorskip("sklearn.isotonic")
    logits, target = planted(400, digits=digits, seed=1)
    module = IsotonicCalibration(3).fit(logits, target)
    probs = torch.softmax(logits, 1).numpy()
    test_logits = torch.cat([planted(300, seed=2)[0], torch.tensor([[9.0, -9.0, 0.0]], dtype=F64)])
    test_probs = torch.softmax(test_logits, 1).numpy()
    mapped = np.empty_like(test_probs)
    for k in range(3):
        oracle = isotonic.IsotonicRegression(out_of_bounds="clip")
        oracle.fit(probs[:, k], (target.numpy() == k).astype(float))
        mapped[:, k] = oracle.predict(test_probs[:, k])
    ours = module._map(torch.from_numpy(test_probs.T.copy())).T
    np.testing.assert_allclose(ours.numpy(), mapped, atol=1e-12, rtol=0)
    calibrated = torch.softmax(module(test_logits), 1).numpy()
    np.testing.assert_allclose(calibrated, renormalised(mapped), atol=1e-12, rtol=0)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(-5, 5), min_size=1, max_size=30), seed=st.integers(0, 2**31))
def test_pool_adjacent_violators_is_the_weighted_isotonic_fit(values: list[float], seed: int):
    isotonic = pytest.importorskip("sklearn.isotonic")
    weights = np.random.default_rng(seed).uniform(0.5, 3.0, len(values))
    ours = pool_adjacent_violators(np.array(values), weights)
    assert np.all(np.diff(ours) >= 0)
    oracle = isotonic.isotonic_regression(np.array(values), sample_weight=weights)
    np.testing.assert_allclose(ours, oracle, atol=1e-9)


def naive_histogram(probs: torch.Tensor, target: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Per class and bin (right-closed, 0 in the first bin), loops over samples."""
    rows, labels = probs.tolist(), target.tolist()
    values = torch.zeros(probs.shape[1], n_bins, dtype=F64)
    for k in range(probs.shape[1]):
        for b in range(n_bins):
            low, high = b / n_bins, (b + 1) / n_bins
            inside = [low < p[k] <= high or (b == 0 and p[k] == 0) for p in rows]
            hits = [y for y, hit in zip(labels, inside, strict=True) if hit]
            values[k, b] = sum(y == k for y in hits) / len(hits) if hits else (low + high) / 2
    return values


def test_histogram_matches_the_loop_twin_and_maps_by_bin() -> None:
    logits, target = planted(200, seed=3)
    module = HistogramBinning(3, n_bins=7).fit(logits, target)
    probs = torch.softmax(logits, 1)
    expected = naive_histogram(probs, target, 7)
    torch.testing.assert_close(module.values, expected, rtol=0, atol=1e-15)
    test_logits = planted(50, seed=4)[0]
    test_probs = torch.softmax(test_logits, 1)
    index = (test_probs * 7).ceil().long().clamp(1, 7) - 1
    mapped = torch.stack([expected[k, index[:, k]] for k in range(3)], 1)
    out = torch.softmax(module(test_logits), 1)
    torch.testing.assert_close(out, mapped / mapped.sum(1, keepdim=True), rtol=0, atol=1e-12)


def test_histogram_quantile_bins_hold_equal_mass() -> None:
    logits, target = planted(300, seed=5)
    module = HistogramBinning(3, n_bins=4, binning="quantile").fit(logits, target)
    probs = torch.softmax(logits, 1).T
    for k in range(3):
        inner = module.edges[k, 1:-1]
        counts = torch.bincount(torch.searchsorted(inner, probs[k].contiguous()), minlength=4)
        assert counts.tolist() == [75, 75, 75, 75]
    assert "n_bins=4, binning='quantile'" in repr(module)


def test_before_fit_empty_bins_and_all_zero_rows() -> None:
    logits = planted(20, seed=6)[0]
    fresh = IsotonicCalibration(3)(logits)
    torch.testing.assert_close(torch.softmax(fresh, 1), torch.softmax(logits, 1))
    histogram = HistogramBinning(2, n_bins=4)
    torch.testing.assert_close(
        histogram.values, torch.tensor([[0.125, 0.375, 0.625, 0.875]] * 2, dtype=F64)
    )
    # Every sample in one bin per class: the other bins keep their midpoints.
    z = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 3.0]], dtype=F64)
    histogram.fit(z, torch.tensor([0, 1, 1]))
    assert histogram.values[0].tolist() == pytest.approx([0.0, 0.375, 0.625, 0.5])
    # Isotonic fit to class 0 never being right maps class 0 to 0 everywhere; on a row where
    # class 1's map also gives 0 the output is uniform.
    isotonic = IsotonicCalibration(2).fit(z, torch.tensor([1, 1, 1]))
    assert torch.equal(isotonic.values[0], torch.zeros_like(isotonic.values[0]))
    isotonic.values[1] = 0.0
    out = isotonic(z)
    assert torch.equal(out, torch.full_like(out, float(np.log(0.5))))
    assert float(IsotonicCalibration(2).fit(z, torch.tensor([0, 1, 0]))(z).min()) > -1e3


def test_forward_shapes_dtypes_and_state_dict() -> None:
    logits, target = planted(300, seed=7, digits=1)
    images = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(9))
    for module in (HistogramBinning(3), IsotonicCalibration(3)):
        module.fit(logits, target)
        out = module(images)
        assert out.dtype == torch.float32 and out.shape == images.shape
        flat = module(images.movedim(1, -1).reshape(-1, 3).double())
        # Softmax: a zero probability's floor is log(tiny) of each dtype, -87 or -708.
        flat = torch.softmax(flat, 1).float().reshape(2, 4, 5, 3).movedim(-1, 1)
        torch.testing.assert_close(torch.softmax(out, 1), flat)
        # float32 buffers (module.float()) still work; their rounding moves knots and edges by
        # ~1e-8, which steep isotonic pieces amplify: close, not equal.
        torch.testing.assert_close(module.float()(images), out, atol=1e-3, rtol=0)
        loaded = type(module)(3)
        loaded.load_state_dict(module.state_dict())
        assert torch.equal(loaded(images), module(images))
    assert "knots=" in repr(module)


def test_fit_under_grad_and_errors() -> None:
    logits, target = planted(50, seed=8)
    logits.requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for module in (HistogramBinning(3), IsotonicCalibration(3)):
            assert not module.fit(logits, target)(logits).requires_grad  # piecewise constant
    with pytest.raises(ValueError, match="`num_classes` must be >= 2, got 1"):
        IsotonicCalibration(1)
    with pytest.raises(ValueError, match="`n_bins` must be >= 1, got 0"):
        HistogramBinning(3, n_bins=0)
    with pytest.raises(ValueError, match="`binning` must be one of 'uniform', 'quantile', got 'x'"):
        HistogramBinning(3, binning="x")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"`logits` must be 3 classes along dimension 1, got shape"
    ):
        HistogramBinning(3)(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="`logits` must be 2 classes along dimension 1"):
        IsotonicCalibration(2).fit(logits, target)
    with pytest.raises(ValueError, match="`logits` must be a tensor with at least 2 dimensions"):
        IsotonicCalibration(3)(torch.zeros(3))
    with pytest.raises(ValueError, match="`logits` must be finite"):
        IsotonicCalibration(3).fit(torch.full((2, 3), float("nan")), target[:2])
