"""Label corruption: binomial flip rates at n = 100000, exact counts, seeds, estimation."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom

from smoothlab.noise import (
    asymmetric_cifar10,
    class_dependent,
    corrupt_labels,
    estimate_transition,
    pairflip,
    random_transition,
    realised_noise_rate,
    symmetric,
    uniform,
)

from reference import FIVE_SIGMA

N = 100_000
K = 10
# Balanced clean labels: 10000 of each class, shuffled so that order cannot matter.
CLEAN = torch.arange(K).repeat(N // K)[
    torch.randperm(N, generator=torch.Generator().manual_seed(0))
]


def _in_binomial_interval(count: int, n: int, p: float, confidence: float = FIVE_SIGMA) -> bool:
    low, high = binom.interval(confidence, n, p)
    return bool(low <= count <= high)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


MATRICES = {
    "symmetric": symmetric(K, 0.3),
    "uniform": uniform(K, 0.3),
    "pairflip": pairflip(K, 0.45),
    "asymmetric-cifar10": asymmetric_cifar10(0.4),
    "class-dependent": class_dependent(K, 0.2, 0.05),
    "random": random_transition(K, 0.35, generator=_generator(7)),
}


@pytest.mark.parametrize("name", list(MATRICES))
def test_realised_flip_rates_are_binomial(name: str) -> None:
    # Each class-c label flips independently with prob. e_c = 1 - T[c, c]: n_c = 10000 draws.
    matrix = MATRICES[name]
    noisy = corrupt_labels(CLEAN, matrix, generator=_generator(1))
    rates = 1 - matrix.diagonal()
    for c in range(K):
        flips = int((noisy[CLEAN.eq(c)] != c).sum())
        if rates[c] == 0:
            assert flips == 0
        else:
            assert _in_binomial_interval(flips, N // K, float(rates[c])), (c, flips)
    # Overall: a sum of binomials; its spread is at most that of Binomial(N, mean rate).
    assert _in_binomial_interval(int((noisy != CLEAN).sum()), N, float(rates.mean()))
    # Labels only move where the matrix allows it.
    assert bool((matrix[CLEAN, noisy] > 0).all())


def test_realised_rates_of_the_named_conventions() -> None:
    # symmetric: the flip rate is e; uniform: e (K - 1) / K; pairflip only moves to i + 1.
    assert math.isclose(float(1 - MATRICES["symmetric"].diagonal().mean()), 0.3)
    assert math.isclose(float(1 - MATRICES["uniform"].diagonal().mean()), 0.3 * 9 / 10)
    noisy = corrupt_labels(CLEAN, MATRICES["pairflip"], generator=_generator(2))
    moved = noisy != CLEAN
    assert torch.equal(noisy[moved], (CLEAN[moved] + 1) % K)
    noisy = corrupt_labels(CLEAN, MATRICES["asymmetric-cifar10"], generator=_generator(2))
    assert _in_binomial_interval(int((noisy != CLEAN).sum()), N // 2, 0.4)


def test_estimate_transition_recovers_the_matrix() -> None:
    matrix = MATRICES["random"]
    noisy = corrupt_labels(CLEAN, matrix, generator=_generator(3))
    estimate = estimate_transition(CLEAN, noisy, K)
    counts = (estimate * (N // K)).round().long()
    confidence = 1 - (1 - FIVE_SIGMA) / K**2  # Bonferroni over the K^2 entries
    for i in range(K):
        for j in range(K):
            assert _in_binomial_interval(int(counts[i, j]), N // K, float(matrix[i, j]), confidence)
    assert float((estimate - matrix).abs().max()) < 0.02


def _largest_remainder_twin(total: int, probs: list[float]) -> list[int]:
    """Hamilton's method in exact rational arithmetic, ties to the lower index."""
    exact = [Fraction(p) for p in probs]
    quotas = [total * p / sum(exact) for p in exact]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(probs)), key=lambda j: (-(quotas[j] - counts[j]), j))
    for j in order[: total - sum(counts)]:
        counts[j] += 1
    return counts


def _pair_counts(clean: torch.Tensor, noisy: torch.Tensor, k: int) -> list[list[int]]:
    counts = [[0] * k for _ in range(k)]
    for a, b in zip(clean.tolist(), noisy.tolist(), strict=True):
        counts[a][b] += 1
    return counts


@given(
    k=st.integers(2, 6),
    labels=st.lists(st.integers(0, 5), min_size=0, max_size=60),
    seed=st.integers(0, 2**31),
    fraction=st.floats(0.0, 0.99),
)
def test_exact_hits_the_largest_remainder_counts(
    k: int, labels: list[int], seed: int, fraction: float
) -> None:
    clean = torch.tensor([y % k for y in labels], dtype=torch.long)
    matrix = random_transition(k, fraction * (k - 1) / k, generator=_generator(seed))
    noisy = corrupt_labels(clean, matrix, generator=_generator(seed), exact=True)
    counts = _pair_counts(clean, noisy, k)
    for c in range(k):
        n_c = sum(counts[c])
        assert counts[c] == _largest_remainder_twin(n_c, matrix[c].tolist())
        assert all(abs(counts[c][j] - n_c * matrix[c, j].item()) < 1 for j in range(k))


@pytest.mark.parametrize(("rate", "expected"), [(0.3, 3000), (0.25, 2500), (0.123456, 1234)])
def test_exact_symmetric_flips_exactly_the_rate(rate: float, expected: int) -> None:
    # 0.123456: the kept count 8765.44 wins a spare unit over the 137.17 quotas, so 1234 flip.
    noisy = corrupt_labels(CLEAN, symmetric(K, rate), generator=_generator(4), exact=True)
    for c in range(K):
        assert int((noisy[CLEAN.eq(c)] != c).sum()) == expected
    # Ties (K - 1 equal remainders) go to the lower class index.
    counts = _pair_counts(CLEAN, noisy, K)
    assert counts[0] == _largest_remainder_twin(N // K, symmetric(K, rate)[0].tolist())


def test_exact_chooses_which_samples_flip_at_random() -> None:
    clean = torch.zeros(1000, dtype=torch.long)
    first = corrupt_labels(clean, pairflip(2, 0.5), generator=_generator(0), exact=True)
    other = corrupt_labels(clean, pairflip(2, 0.5), generator=_generator(1), exact=True)
    assert int(first.sum()) == int(other.sum()) == 500
    assert not torch.equal(first, other)
    assert 200 < int(first[:500].sum()) < 300  # not the first 500 samples


def _per_sample_twin(clean: torch.Tensor, matrix: torch.Tensor, seed: int) -> torch.Tensor:
    """The documented draw order: classes in index order, samples in index order within each."""
    generator = _generator(seed)
    noisy = clean.clone()
    for c in range(matrix.shape[0]):
        members = [n for n, y in enumerate(clean.tolist()) if y == c]
        if members:
            draws = torch.multinomial(
                matrix[c], len(members), replacement=True, generator=generator
            )
            for n, draw in zip(members, draws.tolist(), strict=True):
                noisy[n] = draw
    return noisy


@pytest.mark.parametrize("seed", [0, 1])
def test_per_sample_draws_equal_the_loop_twin(seed: int) -> None:
    clean = CLEAN[:500]
    matrix = MATRICES["class-dependent"]
    assert torch.equal(
        corrupt_labels(clean, matrix, generator=_generator(seed)),
        _per_sample_twin(clean, matrix, seed),
    )


@pytest.mark.parametrize("exact", [False, True])
def test_same_seed_same_labels(exact: bool) -> None:
    matrix = MATRICES["symmetric"]
    first = corrupt_labels(CLEAN, matrix, generator=_generator(5), exact=exact)
    again = corrupt_labels(CLEAN, matrix, generator=_generator(5), exact=exact)
    other = corrupt_labels(CLEAN, matrix, generator=_generator(6), exact=exact)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_identity_shape_and_dtype(exact: bool, dtype: torch.dtype) -> None:
    clean = torch.tensor([[0, 1, 2], [2, 1, 0]], dtype=dtype)
    noisy = corrupt_labels(clean, symmetric(3, 0.0), generator=_generator(), exact=exact)
    assert noisy.dtype == dtype
    assert torch.equal(noisy, clean)
    empty = torch.empty(0, dtype=dtype)
    assert corrupt_labels(empty, symmetric(3, 0.5), exact=exact).shape == (0,)


def test_float32_transition_is_accepted() -> None:
    matrix = symmetric(K, 0.5, dtype=torch.float32)
    noisy = corrupt_labels(CLEAN[:100], matrix, generator=_generator(), exact=True)
    assert realised_noise_rate(CLEAN[:100], noisy) > 0


def test_realised_noise_rate_and_estimate_equal_loop_twins() -> None:
    generator = _generator(8)
    clean = torch.randint(0, 4, (300,), generator=generator)
    noisy = torch.randint(0, 4, (300,), generator=generator)
    mismatches = sum(a != b for a, b in zip(clean.tolist(), noisy.tolist(), strict=True))
    assert realised_noise_rate(clean, noisy) == mismatches / 300
    counts = _pair_counts(clean, noisy, 5)
    twin = [[c / sum(row) if sum(row) else math.nan for c in row] for row in counts]
    torch.testing.assert_close(
        estimate_transition(clean, noisy, 5),
        torch.tensor(twin, dtype=torch.float64),
        equal_nan=True,
    )
    assert estimate_transition(clean, noisy, 5, dtype=torch.float32).dtype == torch.float32


# --- every error message ------------------------------------------------------------------------


def test_corrupt_labels_errors() -> None:
    matrix = symmetric(3, 0.2)
    with pytest.raises(TypeError, match=r"^`labels` must be a torch.Tensor, got list$"):
        corrupt_labels([0, 1], matrix)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"^`labels` must be an integer tensor of class indices, got"
    ):
        corrupt_labels(torch.tensor([0.0, 1.0]), matrix)
    with pytest.raises(
        TypeError, match=r"^`labels` must be an integer tensor of class indices, got"
    ):
        corrupt_labels(torch.tensor([True, False]), matrix)
    with pytest.raises(ValueError, match=r"^`labels` must be class indices in \[0, 2\], got 3$"):
        corrupt_labels(torch.tensor([0, 3]), matrix)
    with pytest.raises(ValueError, match=r"^`labels` must be class indices in \[0, 2\], got -1$"):
        corrupt_labels(torch.tensor([-1, 2]), matrix)
    with pytest.raises(
        ValueError, match=r"must be row-stochastic \(rows summing to 1\), got row 0"
    ):
        corrupt_labels(torch.tensor([0]), torch.tensor([[0.5, 0.4], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"^`transition` must be a square \(K, K\) matrix"):
        corrupt_labels(torch.tensor([0]), torch.ones(2, 3) / 3)
    with pytest.raises(ValueError, match=r"^`transition` must be non-negative, got T\[0, 1\]"):
        corrupt_labels(torch.tensor([0]), torch.tensor([[1.5, -0.5], [0.0, 1.0]]))
    with pytest.raises(TypeError, match=r"^`transition` must be a floating-point tensor, got"):
        corrupt_labels(torch.tensor([0]), torch.eye(2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"^`exact` must be a bool, got 'yes'$"):
        corrupt_labels(torch.tensor([0]), matrix, exact="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^`generator` must be a torch.Generator or None, got int"):
        corrupt_labels(torch.tensor([0]), matrix, generator=1)  # type: ignore[arg-type]


def test_measurement_errors() -> None:
    with pytest.raises(
        ValueError, match=r"^`noisy` must be of the same shape as `clean` \(3,\), got"
    ):
        realised_noise_rate(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"^`clean` must be non-empty, got"):
        realised_noise_rate(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    with pytest.raises(TypeError, match=r"^`noisy` must be an integer tensor of class indices"):
        realised_noise_rate(torch.tensor([0]), torch.tensor([0.0]))
    with pytest.raises(TypeError, match=r"^`clean` must be a torch.Tensor, got ndarray$"):
        estimate_transition(torch.tensor([0]).numpy(), torch.tensor([0]), 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^`noisy` must be class indices in \[0, 1\], got 2$"):
        estimate_transition(torch.tensor([0]), torch.tensor([2]), 2)
    with pytest.raises(ValueError, match=r"^`clean` must be class indices in \[0, 1\], got 5$"):
        estimate_transition(torch.tensor([5]), torch.tensor([0]), 2)
    with pytest.raises(ValueError, match=r"^`num_classes` must be >= 1, got 0$"):
        estimate_transition(torch.tensor([0]), torch.tensor([0]), 0)
    with pytest.raises(TypeError, match=r"^`dtype` must be a floating-point torch.dtype"):
        estimate_transition(torch.tensor([0]), torch.tensor([0]), 2, dtype=torch.int64)


def test_exact_renormalises_rows_within_tolerance() -> None:
    # A row summing to 1 - 9e-7 passes check_transition; at n = 3e6 the raw quotas would leave
    # about 2.7 units unassigned, more than K = 2 spare units can absorb.
    matrix = torch.tensor([[0.7, 0.2999991], [0.0, 1.0]], dtype=torch.float64)
    clean = torch.zeros(3_000_000, dtype=torch.long)
    noisy = corrupt_labels(clean, matrix, generator=_generator(0), exact=True)
    assert int(noisy.sum()) == _largest_remainder_twin(3_000_000, matrix[0].tolist())[1]
