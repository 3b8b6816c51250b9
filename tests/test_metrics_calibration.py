"""Calibration errors: a hand-computed example, pinned edge cases, naive twins, oracles, bootstrap.

Oracles (dev-only): scikit-learn's ``calibration_curve`` bins like we do (right-closed interior
edges; ``np.searchsorted(edges[1:-1], conf)``, NumPy's type-7 quantiles for ``"quantile"``), so
per-bin accuracies and confidences agree exactly. torchmetrics' ``multiclass_calibration_error``
uses left-closed bins ``[a, b)`` (``torch.bucketize(right=True)``) with a confidence of 1.0 in a
phantom bin of its own, and computes in the input dtype (float32 here): it agrees with us to
float32 rounding on inputs with no confidence exactly on an edge, and differs (pinned below) when
one is.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smoothlab.metrics import (
    bootstrap_calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
    reliability_bins,
)
from smoothlab.metrics._binning import bin_sums, quantile_edges

F64 = torch.float64


def random_problem(n: int, c: int, seed: int, scale: float = 2.0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=generator, dtype=F64) * scale
    target = torch.randint(c, (n,), generator=generator)
    return torch.softmax(logits, dim=1), target


# --- naive float64 twin: a loop over samples and bins, straight from the definitions ---


def naive_edges(conf: list[float], n_bins: int, binning: str) -> list[float]:
    if binning == "uniform" or not conf:
        return [b / n_bins for b in range(n_bins + 1)]
    ordered, n = sorted(conf), len(conf)
    edges = [0.0]
    for b in range(1, n_bins):
        position = Fraction(b * (n - 1), n_bins)  # type-7 quantile b / n_bins
        low = math.floor(position)
        high = min(low + 1, n - 1)
        edges.append(ordered[low] + (ordered[high] - ordered[low]) * float(position - low))
    return [*edges, 1.0]


def naive_error(conf: list[float], correct: list[float], n_bins: int, norm: str, binning: str):
    edges = naive_edges(conf, n_bins, binning)
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, c in enumerate(conf):
        b = 0
        while b < n_bins - 1 and c > edges[b + 1]:  # right-closed: c in (e_b, e_{b+1}]
            b += 1
        members[b].append(i)
    gaps, weights = [], []
    for chosen in members:
        if chosen:
            acc = sum(correct[i] for i in chosen) / len(chosen)
            mean_conf = sum(conf[i] for i in chosen) / len(chosen)
            gaps.append(abs(acc - mean_conf))
            weights.append(len(chosen) / len(conf))
    if not gaps:
        return math.nan
    if norm == "l1":
        return sum(w * g for w, g in zip(weights, gaps, strict=True))
    if norm == "l2":
        return math.sqrt(sum(w * g * g for w, g in zip(weights, gaps, strict=True)))
    return max(gaps)


def top_label_lists(probs: torch.Tensor, target: torch.Tensor) -> tuple[list[float], list[float]]:
    conf, pred = [], []
    for row in probs.tolist():
        best = max(range(len(row)), key=lambda k: (row[k], -k))  # first maximum
        conf.append(row[best])
        pred.append(best)
    return conf, [float(p == t) for p, t in zip(pred, target.tolist(), strict=True)]


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [1, 3, 10, 15])
def test_matches_naive_twin(n_bins: int, norm: str, binning: str) -> None:
    probs, target = random_problem(301, 4, seed=n_bins)
    expected = naive_error(*top_label_lists(probs, target), n_bins, norm, binning)
    got = expected_calibration_error(probs, target, n_bins=n_bins, norm=norm, binning=binning)
    assert got.dtype == F64
    assert float(got) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_classwise_matches_naive_twin(norm: str, binning: str) -> None:
    probs, target = random_problem(200, 5, seed=3)
    per_class = []
    for k in range(5):
        conf = probs[:, k].tolist()
        outcome = [float(t == k) for t in target.tolist()]
        per_class.append(naive_error(conf, outcome, 10, norm, binning))
    got = classwise_calibration_error(probs, target, n_bins=10, norm=norm, binning=binning)
    assert float(got) == pytest.approx(sum(per_class) / 5, rel=1e-12)


# --- a hand-computed example and the pinned edge cases ---

HAND_PROBS = torch.tensor(
    [
        [0.30, 0.25, 0.25, 0.20],  # conf 0.30 in (0.2, 0.4], right
        [0.55, 0.45, 0.00, 0.00],  # conf 0.55 in (0.4, 0.6], wrong
        [0.10, 0.65, 0.15, 0.10],  # conf 0.65 in (0.6, 0.8], right
        [0.05, 0.05, 0.15, 0.75],  # conf 0.75 in (0.6, 0.8], wrong
        [0.90, 0.10, 0.00, 0.00],  # conf 0.90 in (0.8, 1.0], right
    ],
    dtype=F64,
)
HAND_TARGET = torch.tensor([0, 1, 1, 0, 0])


def test_hand_computed_example() -> None:
    # Gaps per bin: 0.7 (1 sample), 0.55 (1), |0.5 - 0.7| = 0.2 (2), 0.1 (1), out of 5 samples.
    ece = 0.7 / 5 + 0.55 / 5 + 0.2 * 2 / 5 + 0.1 / 5
    assert ece == pytest.approx(0.35)
    kwargs = {"n_bins": 5}
    assert float(expected_calibration_error(HAND_PROBS, HAND_TARGET, **kwargs)) == (
        pytest.approx(0.35, abs=1e-15)
    )
    rms = math.sqrt((0.7**2 + 0.55**2 + 2 * 0.2**2 + 0.1**2) / 5)
    l2 = expected_calibration_error(HAND_PROBS, HAND_TARGET, norm="l2", **kwargs)
    assert float(l2) == pytest.approx(rms, abs=1e-15)
    mce = expected_calibration_error(HAND_PROBS, HAND_TARGET, norm="max", **kwargs)
    assert float(mce) == pytest.approx(0.7, abs=1e-15)
    bins = reliability_bins(HAND_PROBS, HAND_TARGET, **kwargs)
    assert bins.count.tolist() == [0, 1, 1, 2, 1]
    assert bins.count.dtype == torch.int64
    np.testing.assert_allclose(bins.accuracy, [math.nan, 1.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(bins.confidence, [math.nan, 0.3, 0.55, 0.7, 0.9])
    np.testing.assert_allclose(bins.edges, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_confidence_one_goes_to_last_bin_not_a_phantom_one() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)
    bins = reliability_bins(probs, torch.tensor([0, 0]), n_bins=10)
    assert bins.count.tolist() == [0] * 9 + [2]
    assert bins.count.shape == (10,)
    # One right and one wrong at confidence 1: accuracy 1/2 in the last bin.
    assert float(expected_calibration_error(probs, torch.tensor([0, 0]), n_bins=10)) == 0.5


def test_confidence_zero_goes_to_first_bin() -> None:
    # Top-label confidences are >= 1/C; zero confidences appear per class and in the kernel.
    conf = torch.tensor([[0.0, 0.0, 0.05]], dtype=F64)
    _, sums = bin_sums(conf, torch.zeros_like(conf), 10, "uniform")
    assert sums[0, :, 0].tolist() == [3.0, 0.05, 0.0]
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    # Class 1: both probabilities are 0, both land in bin 0 with frequency 0: error 0.
    assert float(classwise_calibration_error(probs, torch.tensor([0, 0]))) == 0.0


@pytest.mark.parametrize("n_bins", [2, 5, 10, 15, 20])
def test_confidence_on_an_edge_goes_to_the_bin_below(n_bins: int) -> None:
    conf = torch.arange(n_bins + 1, dtype=F64).unsqueeze(0) / n_bins
    _, sums = bin_sums(conf, torch.zeros_like(conf), n_bins, "uniform")
    # Edge b / B closes bin b - 1; 0 joins bin 0, so bin 0 holds two samples.
    assert sums[0, 0].tolist() == [2.0] + [1.0] * (n_bins - 1)


def test_empty_bins_carry_no_weight() -> None:
    probs = torch.tensor([[0.95, 0.05], [0.52, 0.48]], dtype=F64)
    target = torch.tensor([0, 1])
    bins = reliability_bins(probs, target, n_bins=15)
    assert int((bins.count == 0).sum()) == 13
    assert torch.isnan(bins.accuracy[bins.count == 0]).all()
    assert torch.isnan(bins.confidence[bins.count == 0]).all()
    expected = (0.05 + 0.52) / 2
    assert float(expected_calibration_error(probs, target)) == pytest.approx(expected)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_single_sample(norm: str) -> None:
    probs = torch.tensor([[0.2, 0.7, 0.1]], dtype=F64)
    assert float(expected_calibration_error(probs, torch.tensor([1]), norm=norm)) == (
        pytest.approx(0.3)
    )
    assert float(expected_calibration_error(probs, torch.tensor([2]), norm=norm)) == (
        pytest.approx(0.7)
    )


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_all_correct_gives_one_minus_mean_confidence(binning: str) -> None:
    probs, _ = random_problem(500, 3, seed=1)
    target = probs.argmax(1)
    conf = probs.max(1).values
    got = expected_calibration_error(probs, target, binning=binning)
    assert float(got) == pytest.approx(float(1 - conf.mean()), rel=1e-12)


def test_no_samples_give_nan() -> None:
    empty = torch.zeros(0, 3, dtype=F64)
    target = torch.zeros(0, dtype=torch.int64)
    for norm in ("l1", "l2", "max"):
        for binning in ("uniform", "quantile"):
            kwargs = {"norm": norm, "binning": binning}
            assert math.isnan(float(expected_calibration_error(empty, target, **kwargs)))
    assert reliability_bins(empty, target).count.sum() == 0
    interval = bootstrap_calibration_error(empty, target)
    assert math.isnan(float(interval.low))


def test_quantile_bins_have_equal_mass() -> None:
    probs, target = random_problem(600, 3, seed=5)
    bins = reliability_bins(probs, target, n_bins=12, binning="quantile")
    # 600 distinct confidences, 12 bins: type-7 edges leave 50 per bin, give or take the edge point.
    assert int(bins.count.sum()) == 600
    assert bins.count.min() >= 49
    assert bins.count.max() <= 51


def test_quantile_bins_with_tied_confidences() -> None:
    probs = torch.tensor([[0.6, 0.4]] * 7, dtype=F64)
    target = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    bins = reliability_bins(probs, target, n_bins=4, binning="quantile")
    assert bins.count.tolist() == [7, 0, 0, 0]  # all edges coincide at 0.6
    assert float(expected_calibration_error(probs, target, binning="quantile")) == (
        pytest.approx(abs(3 / 7 - 0.6))
    )


def test_quantile_edges_hit_data_points_exactly() -> None:
    conf = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5]], dtype=F64)
    # Levels 1/4, 2/4, 3/4 of 5 points sit exactly on the 2nd, 3rd and 4th point.
    assert quantile_edges(conf, 4).tolist() == [[0.0, 0.2, 0.3, 0.4, 1.0]]


def test_float32_and_float64_inputs_agree() -> None:
    probs, target = random_problem(400, 5, seed=8)
    single = expected_calibration_error(probs.float(), target)
    double = expected_calibration_error(probs.float().double(), target)
    assert single.dtype == F64
    assert float(single) == float(double)


# --- properties ---


@given(
    n=st.integers(1, 60),
    c=st.integers(2, 6),
    n_bins=st.integers(1, 20),
    seed=st.integers(0, 2**31),
    binning=st.sampled_from(["uniform", "quantile"]),
)
def test_norm_ordering_and_invariances(n: int, c: int, n_bins: int, seed: int, binning: str):
    probs, target = random_problem(n, c, seed, scale=3.0)
    kwargs = {"n_bins": n_bins, "binning": binning}
    l1 = float(expected_calibration_error(probs, target, **kwargs))
    l2 = float(expected_calibration_error(probs, target, norm="l2", **kwargs))
    worst = float(expected_calibration_error(probs, target, norm="max", **kwargs))
    assert 0 <= l1 <= l2 + 1e-12 <= worst + 2e-12 <= 1 + 2e-12  # power means are ordered
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    shuffled = float(expected_calibration_error(probs[order], target[order], **kwargs))
    assert shuffled == pytest.approx(l1, abs=1e-12)
    classes = torch.randperm(c, generator=torch.Generator().manual_seed(seed + 1))
    relabelled = expected_calibration_error(probs[:, classes], classes.argsort()[target], **kwargs)
    assert float(relabelled) == pytest.approx(l1, abs=1e-12)


@given(n=st.integers(1, 80), seed=st.integers(0, 2**31))
def test_one_bin_is_the_overall_gap(n: int, seed: int) -> None:
    probs, target = random_problem(n, 3, seed)
    conf = probs.max(1).values
    correct = (probs.argmax(1) == target).double()
    got = expected_calibration_error(probs, target, n_bins=1)
    assert float(got) == pytest.approx(abs(float(correct.mean() - conf.mean())), abs=1e-12)


# --- oracles ---


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [10, 15, 20])
def test_reliability_bins_match_sklearn(n_bins: int, binning: str) -> None:
    calibration_curve = pytest.importorskip("sklearn.calibration").calibration_curve
    # 1002 samples: (N - 1) = 1001 shares no factor with 10, 15 or 20, so no type-7 quantile
    # position is an integer and NumPy's float arithmetic for positions cannot disagree with ours.
    probs, target = random_problem(1002, 6, seed=n_bins)
    conf, pred = probs.max(1)
    correct = (pred == target).numpy()
    prob_true, prob_pred = calibration_curve(correct, conf.numpy(), n_bins=n_bins, strategy=binning)
    bins = reliability_bins(probs, target, n_bins=n_bins, binning=binning)
    nonempty = bins.count > 0
    np.testing.assert_allclose(bins.accuracy[nonempty].numpy(), prob_true, rtol=0, atol=1e-15)
    np.testing.assert_allclose(bins.confidence[nonempty].numpy(), prob_pred, rtol=0, atol=1e-15)
    if binning == "uniform":  # no confidence sits on an edge, so np.histogram counts agree
        counts, _ = np.histogram(conf.numpy(), bins=np.linspace(0, 1, n_bins + 1))
        assert bins.count.tolist() == counts.tolist()


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("n_bins", [10, 15, 20])
def test_matches_torchmetrics_off_the_edges(n_bins: int, norm: str) -> None:
    tm = pytest.importorskip("torchmetrics.functional.classification")
    probs, target = random_problem(2000, 7, seed=100 + n_bins)
    theirs = tm.multiclass_calibration_error(probs, target, 7, n_bins=n_bins, norm=norm)
    ours = expected_calibration_error(probs, target, n_bins=n_bins, norm=norm)
    assert float(ours) == pytest.approx(float(theirs), abs=1e-6)  # they return float32


def test_differs_from_torchmetrics_on_the_edges() -> None:
    tm = pytest.importorskip("torchmetrics.functional.classification")
    # A confidence of 1.0 (wrong): we put it in (0.9, 1] with 0.95 (right); torchmetrics keeps
    # it alone in a phantom 11th bin. Ours: |0.5 - 0.975| = 0.475; theirs: (1 + 0.05) / 2.
    probs = torch.tensor([[0.0, 1.0], [0.95, 0.05]], dtype=F64)
    target = torch.tensor([0, 0])
    assert float(expected_calibration_error(probs, target, n_bins=10)) == pytest.approx(0.475)
    theirs = tm.multiclass_calibration_error(probs, target, 2, n_bins=10)
    assert float(theirs) == pytest.approx(0.525)
    # A confidence of 0.5 (wrong): ours in (0.4, 0.5] with 0.45 (right), theirs in [0.5, 0.6)
    # with 0.55 (right). Ours: 2/3 * 0.025 + 1/3 * 0.45; theirs: 1/3 * 0.55 + 2/3 * 0.025.
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.45, 0.3, 0.25], [0.55, 0.4, 0.05]], dtype=F64)
    target = torch.tensor([1, 0, 0])
    ours = expected_calibration_error(probs, target, n_bins=10)
    assert float(ours) == pytest.approx(2 / 3 * 0.025 + 0.45 / 3)
    theirs = tm.multiclass_calibration_error(probs, target, 3, n_bins=10)
    assert float(theirs) == pytest.approx(0.55 / 3 + 2 / 3 * 0.025)


# --- bootstrap ---


def test_bootstrap_matches_naive_resampling_loop() -> None:
    probs, target = random_problem(150, 3, seed=11)
    for binning in ("uniform", "quantile"):
        got = bootstrap_calibration_error(
            probs,
            target,
            binning=binning,
            n_resamples=200,
            level=0.9,
            generator=torch.Generator().manual_seed(5),
        )
        index = torch.randint(150, (200, 150), generator=torch.Generator().manual_seed(5))
        replicates = [
            float(expected_calibration_error(probs[row], target[row], binning=binning))
            for row in index
        ]
        low, high = np.percentile(replicates, [5, 95])  # NumPy's default is type 7 too
        assert float(got.low) == pytest.approx(low, rel=1e-12)
        assert float(got.high) == pytest.approx(high, rel=1e-12)
        assert float(got.estimate) == float(
            expected_calibration_error(probs, target, binning=binning)
        )
        assert got.level == 0.9


def test_bootstrap_in_chunks_draws_every_resample() -> None:
    # 5000 samples: resamples are drawn 838 rows at a time (2**22 // 5000), so 900 takes two.
    probs, target = random_problem(5000, 3, seed=12)
    got = bootstrap_calibration_error(
        probs, target, n_resamples=900, generator=torch.Generator().manual_seed(3)
    )
    generator = torch.Generator().manual_seed(3)
    conf, pred = probs.max(1)
    correct = (pred == target).double()
    replicates = []
    for rows in (838, 62):
        for row in torch.randint(5000, (rows, 5000), generator=generator):
            _, sums = bin_sums(conf[row][None], correct[row][None], 15, "uniform")
            gap = (sums[0, 2] - sums[0, 1]).abs().sum() / 5000  # sum_b n_b/N |acc_b - conf_b|
            replicates.append(float(gap))
    low, high = np.percentile(replicates, [2.5, 97.5])
    assert float(got.low) == pytest.approx(low, rel=1e-12)
    assert float(got.high) == pytest.approx(high, rel=1e-12)


def test_bootstrap_is_reproducible_with_a_generator() -> None:
    probs, target = random_problem(100, 3, seed=2)
    first = bootstrap_calibration_error(probs, target, generator=torch.Generator().manual_seed(1))
    again = bootstrap_calibration_error(probs, target, generator=torch.Generator().manual_seed(1))
    other = bootstrap_calibration_error(probs, target, generator=torch.Generator().manual_seed(2))
    assert float(first.low) == float(again.low)
    assert float(first.high) == float(again.high)
    assert (float(first.low), float(first.high)) != (float(other.low), float(other.high))


def miscalibrated(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary problem whose accuracy at confidence c is c - 0.15 (population ECE 0.15)."""
    conf = 0.65 + 0.35 * torch.rand(n, generator=generator, dtype=F64)
    right = torch.rand(n, generator=generator, dtype=F64) < conf - 0.15
    probs = torch.stack([conf, 1 - conf], dim=1)
    return probs, (~right).long()


def test_bootstrap_spread_matches_the_sampling_spread() -> None:
    generator = torch.Generator().manual_seed(0)
    estimates = [
        float(expected_calibration_error(*miscalibrated(1000, generator))) for _ in range(200)
    ]
    sampling_sd = float(np.std(estimates))
    center = float(np.mean(estimates))
    covered, widths = 0, []
    for _ in range(40):
        probs, target = miscalibrated(1000, generator)
        interval = bootstrap_calibration_error(probs, target, n_resamples=200, generator=generator)
        covered += float(interval.low) <= center <= float(interval.high)
        widths.append(float(interval.high - interval.low))
    implied_sd = float(np.mean(widths)) / (2 * 1.96)
    assert 0.75 < implied_sd / sampling_sd < 1.33
    assert covered >= 33  # nominal 95 % of 40 = 38; the binned ECE's bias costs a little


# --- validation: every message ---


@pytest.mark.parametrize(
    ("probs", "target", "kwargs", "error", "match"),
    [
        ([[0.5, 0.5]], [0], {}, TypeError, "`probs` must be a torch.Tensor, got list"),
        (torch.tensor([1, 0]), [0], {}, TypeError, "`probs` must be a floating-point tensor"),
        (torch.tensor([0.5, 0.5]), [0], {}, ValueError, r"`probs` must be a 2-D tensor of shape"),
        (torch.tensor([[0.5, 0.6]]), [0], {}, ValueError, "summing to 1 along dim 1, got sums off"),
        (torch.tensor([[math.nan, 1.0]]), [0], {}, ValueError, "`probs` must be finite"),
        (torch.tensor([[1.5, -0.5]]), [0], {}, ValueError, "`probs` must be non-negative"),
        (torch.tensor([[0.5, 0.5]]), [0.0], {}, TypeError, "`target` must be an integer tensor"),
        (torch.tensor([[0.5, 0.5]]), [2], {}, ValueError, r"class indices in \[0, 1\], got 2"),
        (torch.tensor([[0.5, 0.5]]), [-1], {}, ValueError, r"class indices in \[0, 1\], got -1"),
        (
            torch.tensor([[0.5, 0.5]]),
            [0, 1],
            {},
            ValueError,
            r"`target` must be of shape \(1,\) \(one class index per row of `probs`\), got shape",
        ),
        (
            torch.tensor([[0.5, 0.5]]),
            [0],
            {"n_bins": 0},
            ValueError,
            "`n_bins` must be >= 1, got 0",
        ),
        (
            torch.tensor([[0.5, 0.5]]),
            [0],
            {"n_bins": 2.0},
            TypeError,
            "`n_bins` must be an integer",
        ),
        (
            torch.tensor([[0.5, 0.5]]),
            [0],
            {"norm": "l3"},
            ValueError,
            "`norm` must be one of 'l1', 'l2', 'max', got 'l3'",
        ),
        (
            torch.tensor([[0.5, 0.5]]),
            [0],
            {"binning": "adaptive"},
            ValueError,
            "`binning` must be one of 'uniform', 'quantile', got 'adaptive'",
        ),
    ],
)
def test_errors(probs, target, kwargs, error, match) -> None:
    target = torch.tensor(target) if isinstance(target, list) else target
    functions = [expected_calibration_error, classwise_calibration_error]
    for function in functions:
        with pytest.raises(error, match=match):
            function(probs, target, **kwargs)
    if "norm" not in kwargs:
        with pytest.raises(error, match=match):
            reliability_bins(probs, target, **kwargs)
    with pytest.raises(error, match=match):
        bootstrap_calibration_error(probs, target, **kwargs)


def test_row_sum_tolerance_depends_on_precision() -> None:
    target = torch.tensor([0])
    slightly_off = torch.tensor([[0.5, 0.50005]])  # within 1e-4
    assert float(expected_calibration_error(slightly_off, target)) == pytest.approx(0.5, abs=1e-4)
    half = torch.tensor([[0.5, 0.505]], dtype=torch.float16)  # within half precision's 1e-2
    assert math.isfinite(float(expected_calibration_error(half, target)))
    with pytest.raises(ValueError, match=r"sums off by 0\.02"):
        expected_calibration_error(torch.tensor([[0.5, 0.52]], dtype=torch.float16), target)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_resamples": 0}, ValueError, "`n_resamples` must be >= 1, got 0"),
        ({"level": 1.0}, ValueError, "`level` must be < 1.0, got 1.0"),
        ({"level": 0}, ValueError, "`level` must be > 0.0, got 0"),
        ({"generator": 3}, TypeError, "`generator` must be a torch.Generator or None, got int"),
    ],
)
def test_bootstrap_errors(kwargs, error, match) -> None:
    probs, target = random_problem(5, 2, seed=0)
    with pytest.raises(error, match=match):
        bootstrap_calibration_error(probs, target, **kwargs)
