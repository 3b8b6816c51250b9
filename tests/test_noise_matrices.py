"""Transition matrices of `smoothlab.noise`: naive twins, stochasticity, properties, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smoothlab.noise import (
    CIFAR10_CLASSES,
    asymmetric_cifar10,
    check_transition,
    class_dependent,
    from_column_stochastic,
    pairflip,
    random_transition,
    symmetric,
    to_column_stochastic,
    uniform,
)

RATES = st.floats(0.0, 0.99)
CLASSES = st.integers(2, 12)


def _loop_matrix(k: int, entry: object) -> torch.Tensor:
    """A float64 matrix filled entry by entry from ``entry(i, j)`` (the naive twin)."""
    rows = [[float(entry(i, j)) for j in range(k)] for i in range(k)]  # type: ignore[operator]
    return torch.tensor(rows, dtype=torch.float64)


def _assert_stochastic(matrix: torch.Tensor) -> None:
    assert matrix.dtype == torch.float64
    assert bool((matrix >= 0).all())
    assert float((matrix.sum(dim=1) - 1).abs().max()) <= 1e-12


def _symmetric_twin(k: int, e: float) -> torch.Tensor:
    return _loop_matrix(k, lambda i, j: 1 - e if i == j else e / (k - 1))


def _uniform_twin(k: int, e: float) -> torch.Tensor:
    return _loop_matrix(k, lambda i, j: (1 - e) * (i == j) + e / k)


def _pairflip_twin(k: int, e: float) -> torch.Tensor:
    return _loop_matrix(k, lambda i, j: 1 - e if i == j else (e if j == (i + 1) % k else 0.0))


@pytest.mark.parametrize(
    ("build", "twin"),
    [(symmetric, _symmetric_twin), (uniform, _uniform_twin), (pairflip, _pairflip_twin)],
)
@given(k=CLASSES, e=RATES)
def test_matrices_equal_their_loop_twins(build: object, twin: object, k: int, e: float) -> None:
    matrix = build(k, e)  # type: ignore[operator]
    _assert_stochastic(matrix)
    torch.testing.assert_close(matrix, twin(k, e), rtol=0, atol=1e-15)  # type: ignore[operator]


@given(k=CLASSES, kappa=st.floats(0.0, 0.5), top=st.floats(0.0, 1.0))
def test_class_dependent_equals_eq_21_22(k: int, kappa: float, top: float) -> None:
    beta = (top - kappa) / k  # so class K has rate `top`; beta may be negative
    matrix = class_dependent(k, kappa, beta)
    _assert_stochastic(matrix)

    def entry(i: int, j: int) -> float:  # 0-based i, j; the paper's class is i + 1
        rate = min(max(kappa + beta * (i + 1), 0.0), 1.0)
        return 1 - rate if i == j else rate / (k - 1)

    torch.testing.assert_close(matrix, _loop_matrix(k, entry), rtol=0, atol=1e-15)


def test_class_dependent_papers_largest_setting_is_allowed() -> None:
    # Yang et al. (2025) run kappa = 0.5, beta = 0.05 on CIFAR-10: class 10 always flips.
    matrix = class_dependent(10, 0.5, 0.05)
    assert matrix[9, 9].item() == 0.0
    assert matrix[0, 0].item() == pytest.approx(0.45, abs=1e-15)
    assert matrix[0, 1].item() == pytest.approx(0.55 / 9, abs=1e-15)


def test_asymmetric_cifar10_flips_the_named_classes() -> None:
    matrix = asymmetric_cifar10(0.3)
    _assert_stochastic(matrix)
    index = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
    flips = {
        ("truck", "automobile"),
        ("bird", "airplane"),
        ("deer", "horse"),
        ("cat", "dog"),
        ("dog", "cat"),
    }

    def entry(i: int, j: int) -> float:
        sources = {index[a] for a, _ in flips}
        if (CIFAR10_CLASSES[i], CIFAR10_CLASSES[j]) in flips:
            return 0.3
        return (0.7 if i in sources else 1.0) if i == j else 0.0

    torch.testing.assert_close(matrix, _loop_matrix(10, entry), rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "build",
    [
        lambda: symmetric(7, 0.0),
        lambda: uniform(7, 0.0),
        lambda: pairflip(7, 0.0),
        lambda: asymmetric_cifar10(0.0),
        lambda: class_dependent(7, 0.0, 0.0),
        lambda: random_transition(7, 0.0, generator=torch.Generator().manual_seed(3)),
    ],
)
def test_rate_zero_is_the_identity(build: object) -> None:
    matrix = build()  # type: ignore[operator]
    assert torch.equal(matrix, torch.eye(matrix.shape[0], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dtype_option(dtype: torch.dtype) -> None:
    for matrix in (
        symmetric(5, 0.2, dtype=dtype),
        uniform(5, 0.2, dtype=dtype),
        pairflip(5, 0.2, dtype=dtype),
        asymmetric_cifar10(0.2, dtype=dtype),
        class_dependent(5, 0.1, 0.05, dtype=dtype),
        random_transition(5, 0.2, generator=torch.Generator().manual_seed(0), dtype=dtype),
    ):
        assert matrix.dtype == dtype
        torch.testing.assert_close(matrix.sum(dim=1).double(), torch.ones(matrix.shape[0]).double())


@given(k=st.integers(2, 20), fraction=st.floats(0.0, 0.999), seed=st.integers(0, 2**31))
def test_random_transition_mean_rate_and_dominance(k: int, fraction: float, seed: int) -> None:
    e = fraction * (k - 1) / k
    matrix = random_transition(k, e, generator=torch.Generator().manual_seed(seed))
    _assert_stochastic(matrix)
    assert abs(float(1 - matrix.diagonal().mean()) - e) <= 1e-12
    margin = matrix.diagonal().unsqueeze(1) - matrix
    gap = 1 - e * k / (k - 1)
    off_diagonal = ~torch.eye(k, dtype=torch.bool)
    assert float(margin[off_diagonal].min()) >= gap / 2 - 1e-12


def test_random_transition_is_random_and_reproducible() -> None:
    first = random_transition(6, 0.4, generator=torch.Generator().manual_seed(1))
    again = random_transition(6, 0.4, generator=torch.Generator().manual_seed(1))
    other = random_transition(6, 0.4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    rates = 1 - first.diagonal()
    assert float(rates.max() - rates.min()) > 0.01  # rows differ, not just symmetric noise
    assert not torch.allclose(first, symmetric(6, 0.4))


@given(k=CLASSES, e=RATES)
def test_column_stochastic_round_trip(k: int, e: float) -> None:
    matrix = class_dependent(k, e / 2, e / (2 * k))
    column = to_column_stochastic(matrix)
    assert float((column.sum(dim=0) - 1).abs().max()) <= 1e-12
    for i in range(k):
        for j in range(k):
            assert column[j, i] == matrix[i, j]
    assert torch.equal(from_column_stochastic(column), matrix)


def test_check_transition_returns_its_input() -> None:
    matrix = pairflip(4, 0.2)
    assert check_transition(matrix) is matrix
    almost = torch.tensor([[0.5, 0.5 + 1e-7], [0.0, 1.0]])
    assert check_transition(almost) is almost
    with pytest.raises(ValueError, match=r"row 0 summing to 1\.0001"):
        check_transition(torch.tensor([[0.5, 0.5001], [0.0, 1.0]]), atol=1e-5)


# --- every error message ------------------------------------------------------------------------


@pytest.mark.parametrize("build", [symmetric, uniform, pairflip])
def test_matrix_argument_errors(build: object) -> None:
    with pytest.raises(ValueError, match=r"^`num_classes` must be >= 2, got 1$"):
        build(1, 0.1)  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"^`num_classes` must be an integer, got 2.0$"):
        build(2.0, 0.1)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"^`rate` must be < 1.0, got 1.0$"):
        build(3, 1.0)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"^`rate` must be >= 0.0, got -0.1$"):
        build(3, -0.1)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"^`rate` must be a number, not NaN, got nan$"):
        build(3, float("nan"))  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"^`rate` must be a real number, got '0.1'$"):
        build(3, "0.1")  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"^`dtype` must be a floating-point torch.dtype, got"):
        build(3, 0.1, dtype=torch.int64)  # type: ignore[operator]


def test_asymmetric_cifar10_errors() -> None:
    with pytest.raises(ValueError, match=r"^`rate` must be < 1.0, got 1.5$"):
        asymmetric_cifar10(1.5)
    with pytest.raises(TypeError, match=r"^`dtype` must be a floating-point torch.dtype, got 'x'"):
        asymmetric_cifar10(0.1, dtype="x")  # type: ignore[arg-type]


def test_class_dependent_errors_name_the_class() -> None:
    expected = (
        r"^`kappa \+ beta \* i` must be in \[0, 1\] for every class i = 1..K, got 1.04 for class "
        r"i = 9 \(kappa=0.5, beta=0.06, K=10\)$"
    )
    with pytest.raises(ValueError, match=expected):
        class_dependent(10, 0.5, 0.06)
    with pytest.raises(ValueError, match=r"got -0.05 for class i = 1 \(kappa=-0.1"):
        class_dependent(3, -0.1, 0.05)
    with pytest.raises(ValueError, match=r"got -0.1 for class i = 3 \(kappa=0.2, beta=-0.1"):
        class_dependent(3, 0.2, -0.1)
    with pytest.raises(TypeError, match=r"^`kappa` must be a real number, got None$"):
        class_dependent(3, None, 0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^`beta` must be a real number, got '0'$"):
        class_dependent(3, 0.1, "0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^`num_classes` must be >= 2, got 1$"):
        class_dependent(1, 0.1, 0.0)


def test_random_transition_errors() -> None:
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(
        ValueError,
        match=r"^`rate` must be < \(K - 1\) / K = 0.75 for a diagonally dominant matrix, got 0.75$",
    ):
        random_transition(4, 0.75, generator=generator)
    with pytest.raises(
        TypeError, match=r"^`generator` must be a torch.Generator or None, got int$"
    ):
        random_transition(4, 0.1, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^`rate` must be < 1.0, got 1.0$"):
        random_transition(4, 1.0, generator=generator)


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ([[1.0]], TypeError, r"^`transition` must be a torch.Tensor, got list$"),
        (torch.eye(2, dtype=torch.long), TypeError, r"must be a floating-point tensor, got"),
        (torch.ones(2, 3) / 3, ValueError, r"square \(K, K\) matrix with K >= 1, got .* \(2, 3\)"),
        (torch.ones(3) / 3, ValueError, r"square \(K, K\) matrix with K >= 1, got .* \(3,\)$"),
        (torch.ones(0, 0), ValueError, r"square \(K, K\) matrix with K >= 1, got .* \(0, 0\)$"),
        (torch.tensor([[1.0, float("nan")], [0, 1]]), ValueError, r"finite, got a matrix"),
        (torch.tensor([[1.1, -0.1], [0, 1]]), ValueError, r"non-negative, got T\[0, 1\] = -0.1$"),
        (torch.tensor([[1.0, 0], [0.3, 0.6]]), ValueError, r"rows summing to 1\), got row 1 sum"),
    ],
)
def test_check_transition_errors(value: object, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=message):
        check_transition(value)
    with pytest.raises(kind, match=message):
        to_column_stochastic(value)  # type: ignore[arg-type]


def test_from_column_stochastic_checks_columns() -> None:
    rows = torch.tensor([[0.9, 0.1], [0.0, 1.0]])
    with pytest.raises(
        ValueError,
        match=r"^`transition` must be column-stochastic \(columns summing to 1\), got column 0 "
        r"summing to 0.9$",
    ):
        from_column_stochastic(rows)
    with pytest.raises(ValueError, match=r"non-negative, got T\[1, 0\] = -0.5$"):
        from_column_stochastic(torch.tensor([[1.5, 0.0], [-0.5, 1.0]]))
