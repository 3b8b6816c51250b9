"""The anchor-point transition estimator (Patrini et al., CVPR 2017): against a naive loop and
NumPy's quantile, exact on planted problems, the argmax rule at quantile 1, properties under
permutations, every error message."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothlab.noise import estimate_transition_from_anchors, random_transition

# quantiles with two decimals, which the naive twin reads as exact fractions
QUANTILES = st.integers(0, 100).map(lambda k: k / 100)


def _naive(probs: torch.Tensor, quantile: float) -> torch.Tensor:
    """Per class: sort the column in Python, take the ceil(q (N - 1))-th value (q read as the
    decimal it was written as), the first example holding it, and its output renormalised."""
    rows = probs.double().tolist()
    n, k = len(rows), len(rows[0])
    position = math.ceil(Fraction(repr(quantile)) * (n - 1))
    out = []
    for i in range(k):
        value = sorted(row[i] for row in rows)[position]
        anchor = next(m for m in range(n) if rows[m][i] == value)
        total = sum(rows[anchor])
        out.append([p / total for p in rows[anchor]])
    return torch.tensor(out, dtype=torch.float64)


def _softmax(n: int, k: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(scale * torch.randn(n, k, generator=g, dtype=torch.float64), dim=1)


def _planted(transition: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """An exact noisy-label model: each example's output is its clean class's row of ``T``,
    classes shuffled so that the anchors are not the first rows."""
    k = transition.shape[0]
    clean = torch.arange(k).repeat(per_class)
    clean = clean[torch.randperm(len(clean), generator=torch.Generator().manual_seed(seed))]
    return torch.nn.functional.one_hot(clean, k).double() @ transition


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(1, 5), seed=st.integers(0, 2**16), quantile=QUANTILES)
def test_matches_the_naive_loop(n: int, k: int, seed: int, quantile: float) -> None:
    probs = _softmax(n, k, seed)
    expected = _naive(probs, quantile)
    torch.testing.assert_close(
        estimate_transition_from_anchors(probs, quantile=quantile), expected, rtol=0, atol=1e-15
    )


def test_ties_go_to_the_lowest_example_index() -> None:
    # column 0 has its maximum 0.5 at examples 1 and 2, whose other entries differ
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.1, 0.1, 0.8]])
    estimate = estimate_transition_from_anchors(probs, quantile=1.0)
    torch.testing.assert_close(estimate, _naive(probs, 1.0))
    assert estimate[0].tolist() == pytest.approx([0.5, 0.5, 0.0])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30), k=st.integers(1, 6), seed=st.integers(0, 2**16), q=st.integers(0, 64))
def test_the_diagonal_is_numpys_higher_quantile_of_each_column(
    n: int, k: int, seed: int, q: int
) -> None:
    # dyadic quantiles: q (N - 1) is exact in floating point, for NumPy as for us
    probs = _softmax(n, k, seed)
    estimate = estimate_transition_from_anchors(probs, quantile=q / 64)
    oracle = np.quantile(probs.numpy(), q / 64, axis=0, method="higher")
    # the anchor's probability of its own class, up to the renormalisation (rows sum to 1 +- ulp)
    np.testing.assert_allclose(torch.diagonal(estimate).numpy(), oracle, rtol=1e-14, atol=0)


def test_decimal_quantiles_land_on_the_whole_position_they_mean() -> None:
    # 0.07 * 100 is 7.000000000000001 in floating point: NumPy's "higher" takes position 8 of
    # 0..100, the estimator position 7 (the 7 % quantile of 101 values)
    column = torch.linspace(0.5, 1.0, 101, dtype=torch.float64)
    probs = torch.stack([column, 1 - column], dim=1)
    estimate = estimate_transition_from_anchors(probs, quantile=0.07)
    assert float(estimate[0, 0]) == float(column[7])
    assert float(np.quantile(column.numpy(), 0.07, method="higher")) == float(column[8])


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(2, 6),
    per_class=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    rate=st.floats(0.0, 0.45),
)
def test_an_exact_model_with_perfect_anchors_gives_back_T(
    k: int, per_class: int, seed: int, rate: float
) -> None:
    # a random_transition with rate < 0.5 keeps T[i, i] > 0.5 > T[c, i]: the anchors are class i
    transition = random_transition(k, rate, generator=torch.Generator().manual_seed(seed))
    probs = _planted(transition, per_class, seed)
    for quantile in (1.0, 1 - (per_class - 1) / (k * per_class - 1)):  # the lowest that works
        estimate = estimate_transition_from_anchors(probs, quantile=quantile)
        torch.testing.assert_close(estimate, transition, rtol=0, atol=1e-15)


def test_dyadic_planted_transition_is_recovered_bit_for_bit() -> None:
    transition = torch.tensor(
        [
            [0.75, 0.125, 0.125, 0.0],
            [0.0, 0.625, 0.25, 0.125],
            [0.25, 0.0, 0.75, 0.0],
            [0.0, 0.0, 0.5, 0.5],
        ],
        dtype=torch.float64,
    )
    probs = _planted(transition, 10, seed=3)
    for quantile in (0.97, 1.0):
        assert torch.equal(estimate_transition_from_anchors(probs, quantile=quantile), transition)
    # below the share of the class (quantile 0.6 of 40 falls among other classes) it is not T
    assert not torch.equal(estimate_transition_from_anchors(probs, quantile=0.6), transition)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 15), k=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_quantile_one_is_the_argmax_rule(n: int, k: int, seed: int) -> None:
    probs = _softmax(n, k, seed).float()  # float32 softmax, as a model gives
    anchors = probs.argmax(dim=0)
    expected = probs.double()[anchors]
    expected = expected / expected.sum(dim=1, keepdim=True)
    assert torch.equal(estimate_transition_from_anchors(probs, quantile=1.0), expected)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 15), k=st.integers(2, 5), seed=st.integers(0, 2**16), quantile=QUANTILES)
def test_properties(n: int, k: int, seed: int, quantile: float) -> None:
    probs = _softmax(n, k, seed)  # continuous draws: no ties, so the anchors are unique
    estimate = estimate_transition_from_anchors(probs, quantile=quantile)
    assert estimate.shape == (k, k) and estimate.dtype == torch.float64
    assert bool((estimate >= 0).all())
    torch.testing.assert_close(estimate.sum(dim=1), torch.ones(k, dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    examples, classes = torch.randperm(n, generator=g), torch.randperm(k, generator=g)
    # the order of the examples does not matter
    torch.testing.assert_close(
        estimate_transition_from_anchors(probs[examples], quantile=quantile), estimate
    )
    # renaming the classes renames the rows and columns
    permuted = estimate_transition_from_anchors(probs[:, classes], quantile=quantile)
    torch.testing.assert_close(permuted, estimate[classes][:, classes])
    # a higher quantile never picks an anchor less sure of its class
    higher = estimate_transition_from_anchors(probs, quantile=min(1.0, quantile + 0.25))
    assert bool((torch.diagonal(higher) >= torch.diagonal(estimate)).all())


def test_float32_half_and_gradient_free() -> None:
    probs = _softmax(20, 3, seed=0).float().requires_grad_()
    estimate = estimate_transition_from_anchors(probs)
    assert estimate.dtype == torch.float64 and not estimate.requires_grad
    half = estimate_transition_from_anchors(probs.detach().half())
    torch.testing.assert_close(half.sum(dim=1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize(
    ("probs", "kwargs", "error", "message"),
    [
        ([[1.0]], {}, TypeError, "`probs` must be a torch.Tensor, got list"),
        (
            torch.tensor([[1, 0]]),
            {},
            TypeError,
            "`probs` must be a floating-point tensor, got a torch.int64 tensor of shape (1, 2)",
        ),
        (
            torch.ones(3),
            {},
            ValueError,
            "`probs` must be a 2-D tensor of shape (N, K) with N, K >= 1, got a torch.float32 "
            "tensor of shape (3,)",
        ),
        (
            torch.ones(0, 3),
            {},
            ValueError,
            "`probs` must be a 2-D tensor of shape (N, K) with N, K >= 1, got a torch.float32 "
            "tensor of shape (0, 3)",
        ),
        (
            torch.tensor([[0.5, 0.6]]),
            {},
            ValueError,
            "`probs` must be a distribution summing to 1 along dim 1, got sums off by 0.1",
        ),
        (
            torch.tensor([[1.5, -0.5]]),
            {},
            ValueError,
            "`probs` must be non-negative probabilities, got a minimum of -0.5",
        ),
        (
            torch.tensor([[math.nan, 1.0]]),
            {},
            ValueError,
            "`probs` must be finite probabilities, got a tensor containing NaN or inf",
        ),
        (torch.eye(2), {"quantile": 1.5}, ValueError, "`quantile` must be <= 1.0, got 1.5"),
        (torch.eye(2), {"quantile": -0.1}, ValueError, "`quantile` must be >= 0.0, got -0.1"),
        (torch.eye(2), {"quantile": True}, TypeError, "`quantile` must be a real number, got True"),
    ],
)
def test_errors_say_what_is_wrong(
    probs: object, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        estimate_transition_from_anchors(probs, **kwargs)  # type: ignore[arg-type]
    assert str(raised.value) == message
