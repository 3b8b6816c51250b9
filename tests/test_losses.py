"""The loss family against slow truths, PyTorch, gradcheck and properties."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from smoothlab import (
    ConfidencePenaltyLoss,
    LabelRelaxationLoss,
    LabelSmoothingCrossEntropyLoss,
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
)

import reference as ref

REDUCTIONS = ["mean", "sum", "none"]


def _data(n: int, k: int, seed: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, k, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (n,), generator=g)
    return logits, target


def _close(ours: torch.Tensor, truth: float | list[float], tol: float = 1e-10) -> None:
    expected = torch.tensor(truth, dtype=torch.float64)
    torch.testing.assert_close(ours, expected, rtol=tol, atol=tol, equal_nan=True)


# --- naive twins (float64, 1e-10) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("r", "reduction", "use_weight", "weighting", "exclusive", "use_prior"),
    [
        (0.1, "mean", False, "pytorch", False, None),
        (0.3, "sum", True, "pytorch", False, None),
        (0.3, "mean", True, "example", False, None),
        (-0.7, "none", False, "pytorch", False, None),
        (-2.0, "mean", True, "pytorch", False, None),
        (1.0, "mean", False, "pytorch", False, None),
        (0.2, "mean", False, "pytorch", True, None),
        (0.2, "none", True, "example", False, "class"),
        (0.4, "mean", True, "pytorch", False, "example"),
        (0.4, "sum", False, "pytorch", True, "example"),
        (-0.5, "mean", False, "pytorch", False, "class"),
    ],
)
def test_label_smoothing_matches_naive_twin(
    r: float,
    reduction: str,
    use_weight: bool,
    weighting: str,
    exclusive: bool,
    use_prior: str | None,
) -> None:
    logits, target = _data(9, 5, seed=1)
    target[3] = -100
    g = torch.Generator().manual_seed(2)
    weight = torch.rand(5, generator=g, dtype=torch.float64) + 0.1 if use_weight else None
    prior = None
    if use_prior == "class":
        prior = torch.softmax(torch.randn(5, generator=g, dtype=torch.float64), 0)
    elif use_prior == "example":
        prior = torch.softmax(torch.randn(9, 5, generator=g, dtype=torch.float64), 1)
    ours = label_smoothing_cross_entropy(
        logits,
        target,
        r,
        prior=prior,
        exclusive=exclusive,
        weight=weight,
        weighting=weighting,
        reduction=reduction,  # type: ignore[arg-type]
    )
    truth = ref.ls_ce(
        logits.tolist(),
        target.tolist(),
        r,
        prior=None if prior is None else prior.tolist(),
        exclusive=exclusive,
        weight=None if weight is None else weight.tolist(),
        weighting=weighting,
        reduction=reduction,
    )
    _close(ours, truth)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
def test_soft_targets_match_naive_twin(reduction: str, use_weight: bool) -> None:
    logits, _ = _data(7, 4, seed=3)
    g = torch.Generator().manual_seed(4)
    target = torch.softmax(torch.randn(7, 4, generator=g, dtype=torch.float64), 1)
    weight = torch.rand(4, generator=g, dtype=torch.float64) if use_weight else None
    ours = label_smoothing_cross_entropy(logits, target, 0.25, weight=weight, reduction=reduction)
    truth = ref.soft_ce(
        logits.tolist(),
        target.tolist(),
        0.25,
        weight=None if weight is None else weight.tolist(),
        reduction=reduction,
    )
    _close(ours, truth)


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.5, 0.9])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_relaxation_matches_naive_twin(alpha: float, reduction: str) -> None:
    logits, target = _data(12, 4, seed=5)
    target[0] = -100
    ours = label_relaxation_loss(logits, target, alpha, reduction=reduction)
    _close(ours, ref.relaxation(logits.tolist(), target.tolist(), alpha, reduction=reduction))


@pytest.mark.parametrize(
    ("beta", "threshold", "use_weight", "reduction"),
    [
        (0.1, None, False, "mean"),
        (0.5, None, True, "sum"),
        (1.0, 1.0, True, "mean"),
        (0.3, 0.5, False, "none"),
        (0.0, None, True, "mean"),
    ],
)
def test_confidence_penalty_matches_naive_twin(
    beta: float, threshold: float | None, use_weight: bool, reduction: str
) -> None:
    logits, target = _data(10, 6, seed=6)
    weight = torch.linspace(0.5, 2.0, 6, dtype=torch.float64) if use_weight else None
    ours = confidence_penalty_loss(
        logits, target, beta, threshold=threshold, weight=weight, reduction=reduction
    )
    truth = ref.confidence_penalty(
        logits.tolist(),
        target.tolist(),
        beta,
        threshold=threshold,
        weight=None if weight is None else weight.tolist(),
        reduction=reduction,
    )
    _close(ours, truth)


# --- PyTorch's label_smoothing: identical numbers for every combination it accepts -----------

SHAPES = [(6, 5), (4, 3, 7), (3, 4, 2, 5), (5,)]


@pytest.mark.parametrize(
    ("shape", "r", "use_weight", "ignore", "reduction", "dtype"),
    list(
        itertools.product(
            SHAPES,
            [0.0, 0.1, 0.6, 1.0],
            [False, True],
            [False, True],
            REDUCTIONS,
            [torch.float32, torch.float64],
        )
    ),
)
def test_equals_pytorch_label_smoothing(
    shape: tuple[int, ...],
    r: float,
    use_weight: bool,
    ignore: bool,
    reduction: str,
    dtype: torch.dtype,
) -> None:
    g = torch.Generator().manual_seed(hash((shape, r)) % 1000)
    k = shape[0] if len(shape) == 1 else shape[1]
    logits = 2 * torch.randn(shape, generator=g, dtype=dtype)
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    target = torch.randint(0, k, tshape, generator=g)
    if ignore and target.dim() > 0:
        target.view(-1)[::3] = 7
    weight = torch.rand(k, generator=g, dtype=dtype) + 0.2 if use_weight else None
    ignore_index = 7 if ignore else -100
    ours = label_smoothing_cross_entropy(
        logits, target, r, weight=weight, ignore_index=ignore_index, reduction=reduction
    )
    theirs = F.cross_entropy(
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=r,
    )
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)


@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("r", [0.0, 0.3])
def test_equals_pytorch_with_probability_targets(
    use_weight: bool, reduction: str, r: float
) -> None:
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    target = torch.softmax(torch.randn(4, 5, 3, generator=g, dtype=torch.float64), 1)
    weight = torch.rand(5, generator=g, dtype=torch.float64) if use_weight else None
    ours = label_smoothing_cross_entropy(logits, target, r, weight=weight, reduction=reduction)
    theirs = F.cross_entropy(logits, target, weight=weight, reduction=reduction, label_smoothing=r)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_gradients_equal_pytorch() -> None:
    logits, target = _data(16, 7, seed=12)
    weight = torch.rand(7, generator=torch.Generator().manual_seed(12), dtype=torch.float64) + 0.5
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    label_smoothing_cross_entropy(a, target, 0.2, weight=weight).backward()
    F.cross_entropy(b, target, weight=weight, label_smoothing=0.2).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


# --- gradcheck (float64, random shapes, negative smoothing included) ---------------------------


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 2), (2, 3, 2, 2)])
@pytest.mark.parametrize("r", [-0.8, 0.0, 0.3])
def test_gradcheck_label_smoothing(shape: tuple[int, ...], r: float) -> None:
    g = torch.Generator().manual_seed(13)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    prior = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1)
    w = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.1
    assert torch.autograd.gradcheck(lambda z: label_smoothing_cross_entropy(z, y, r, weight=w), x)
    assert torch.autograd.gradcheck(
        lambda z: label_smoothing_cross_entropy(z, y, r, prior=prior), x
    )
    assert torch.autograd.gradcheck(lambda z: label_smoothing_cross_entropy(z, prior, r), x)


@pytest.mark.parametrize("shape", [(6, 3), (3, 4, 2)])
def test_gradcheck_relaxation_and_penalty(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(14)
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    assert torch.autograd.gradcheck(lambda z: label_relaxation_loss(z, y, 0.3), x)
    assert torch.autograd.gradcheck(lambda z: confidence_penalty_loss(z, y, 0.4), x)
    assert torch.autograd.gradcheck(lambda z: confidence_penalty_loss(z, y, 0.4, threshold=5.0), x)


# --- properties ---------------------------------------------------------------------------------

logit_rows = st.lists(
    st.lists(st.floats(-20, 20, allow_nan=False), min_size=3, max_size=3), min_size=1, max_size=6
)


def _loss_fns() -> list:
    return [
        lambda z, y: label_smoothing_cross_entropy(z, y, 0.2),
        lambda z, y: label_smoothing_cross_entropy(z, y, -1.5),
        lambda z, y: label_relaxation_loss(z, y, 0.2),
        lambda z, y: confidence_penalty_loss(z, y, 0.5),
    ]


@given(rows=logit_rows, shift=st.floats(-50, 50), which=st.integers(0, 3), cls=st.integers(0, 2))
def test_gradient_rows_sum_to_zero_and_shift_invariance(
    rows: list[list[float]], shift: float, which: int, cls: int
) -> None:
    fn = _loss_fns()[which]
    z = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    y = torch.full((len(rows),), cls)
    loss = fn(z, y)
    loss.backward()
    assert z.grad is not None
    torch.testing.assert_close(
        z.grad.sum(1), torch.zeros(len(rows), dtype=torch.float64), atol=1e-9, rtol=0
    )
    torch.testing.assert_close(fn(z.detach() + shift, y), loss.detach(), atol=1e-9, rtol=1e-9)


@given(rows=logit_rows, cls=st.integers(0, 2))
def test_zero_smoothing_is_cross_entropy(rows: list[list[float]], cls: int) -> None:
    z = torch.tensor(rows, dtype=torch.float64)
    y = torch.full((len(rows),), cls)
    torch.testing.assert_close(label_smoothing_cross_entropy(z, y, 0.0), F.cross_entropy(z, y))
    torch.testing.assert_close(confidence_penalty_loss(z, y, 0.0), F.cross_entropy(z, y))


@given(alpha=st.floats(0.01, 0.99), rows=logit_rows)
def test_relaxation_zero_inside_set_with_zero_gradient(
    alpha: float, rows: list[list[float]]
) -> None:
    z = torch.tensor(rows, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(len(rows), dtype=torch.long)
    losses = label_relaxation_loss(z, y, alpha, reduction="none")
    inside = torch.softmax(z.detach(), 1)[:, 0] >= 1 - alpha
    assert bool((losses[inside] == 0).all())
    assert bool((losses[~inside] >= 0).all())
    losses.sum().backward()
    assert z.grad is not None
    assert bool((z.grad[inside] == 0).all())


@pytest.mark.parametrize("alpha", [0.1, 0.4])
def test_relaxation_continuous_at_the_border(alpha: float) -> None:
    # Logits [t, 0, 0] put p_y = 1 - alpha at t = log(2 (1 - alpha) / alpha).
    border = math.log(2 * (1 - alpha) / alpha)
    for eps in (1e-3, 1e-6, 1e-9):
        z = torch.tensor([[border - eps, 0.0, 0.0], [border + eps, 0.0, 0.0]], dtype=torch.float64)
        values = label_relaxation_loss(z, torch.tensor([0, 0]), alpha, reduction="none")
        assert values[1] == 0
        assert 0 <= values[0] < 10 * eps


def test_confidence_penalty_raises_entropy() -> None:
    """The sign: a gradient step on the penalty alone makes the prediction less confident."""
    z = torch.tensor([[3.0, 0.0, -1.0]], requires_grad=True)
    y = torch.tensor([0])
    (confidence_penalty_loss(z, y, 1.0) - F.cross_entropy(z, y)).backward()
    assert z.grad is not None
    stepped = z.detach() - 0.1 * z.grad
    entropy = lambda t: -(torch.softmax(t, 1) * torch.log_softmax(t, 1)).sum()  # noqa: E731
    assert entropy(stepped) > entropy(z.detach())


def test_threshold_penalises_only_low_entropy() -> None:
    z = torch.tensor([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0]])
    y = torch.tensor([0, 0])
    hinge = confidence_penalty_loss(z, y, 1.0, threshold=0.5, reduction="none")
    ce = F.cross_entropy(z, y, reduction="none")
    assert hinge[0] == ce[0]  # entropy log 3 > 0.5: no penalty
    assert hinge[1] > ce[1]


def test_negative_smoothing_is_unbounded_below() -> None:
    y = torch.tensor([0])
    values = [
        label_smoothing_cross_entropy(torch.tensor([[t, 0.0]]), y, -0.5).item()
        for t in (1, 10, 100)
    ]
    assert values[0] > values[1] > values[2] and values[2] < -20


def test_exclusive_uniform_equals_rescaled_rate() -> None:
    logits, target = _data(8, 5, seed=15)
    ours = label_smoothing_cross_entropy(logits, target, 0.2, exclusive=True)
    torch.testing.assert_close(ours, label_smoothing_cross_entropy(logits, target, 0.25))


def test_class_prior_equals_per_example_prior() -> None:
    logits, target = _data(8, 5, seed=16)
    g = torch.Generator().manual_seed(16)
    prior = torch.softmax(torch.randn(5, generator=g, dtype=torch.float64), 0)
    a = label_smoothing_cross_entropy(logits, target, 0.3, prior=prior)
    b = label_smoothing_cross_entropy(logits, target, 0.3, prior=prior.expand(8, 5).clone())
    torch.testing.assert_close(a, b)


# --- stability ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", _loss_fns())
def test_huge_logits_are_finite(fn) -> None:  # type: ignore[no-untyped-def]
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], requires_grad=True)
    loss = fn(z, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss) and z.grad is not None and bool(torch.isfinite(z.grad).all())


def test_minus_inf_logits_where_target_has_no_mass() -> None:
    z = torch.tensor([[2.0, -math.inf, 0.0]], requires_grad=True)
    y = torch.tensor([0])
    prior = torch.tensor([0.5, 0.0, 0.5])
    soft = torch.tensor([[0.7, 0.0, 0.3]])
    for loss in (
        label_smoothing_cross_entropy(z, y, 0.0),
        label_smoothing_cross_entropy(z, y, 0.2, prior=prior),
        label_smoothing_cross_entropy(z, soft, 0.0),
        label_relaxation_loss(z, y, 0.1),
        confidence_penalty_loss(z, y, 0.3),
    ):
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fn", _loss_fns())
def test_half_precision_accumulates_in_float32(dtype: torch.dtype, fn) -> None:  # type: ignore[no-untyped-def]
    logits, target = _data(64, 10, seed=17, scale=30.0)
    z = logits.to(dtype).requires_grad_()
    loss = fn(z, target)
    assert loss.dtype == torch.float32
    loss.backward()
    assert z.grad is not None and z.grad.dtype == dtype and bool(torch.isfinite(z.grad).all())
    torch.testing.assert_close(loss, fn(z.detach().double(), target).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "fn",
    [
        lambda z, y, red: label_smoothing_cross_entropy(z, y, 0.1, reduction=red),
        lambda z, y, red: label_relaxation_loss(z, y, 0.1, reduction=red),
        lambda z, y, red: confidence_penalty_loss(z, y, 0.1, reduction=red),
    ],
)
@pytest.mark.parametrize("case", ["empty", "all_ignored"])
def test_empty_and_all_ignored_batches(fn, case: str) -> None:  # type: ignore[no-untyped-def]
    """One rule, as PyTorch: mean is NaN, sum is 0, none is zeros (or an empty tensor)."""
    n = 0 if case == "empty" else 3
    z = torch.randn(n, 4, generator=torch.Generator().manual_seed(17), requires_grad=True)
    y = torch.full((n,), -100)
    assert torch.isnan(fn(z, y, "mean"))
    total = fn(z, y, "sum")
    assert total == 0
    (grad,) = torch.autograd.grad(total, z)
    assert bool((grad == 0).all())
    none = fn(z, y, "none")
    assert none.shape == (n,) and bool((none == 0).all())


def test_all_ignored_mean_matches_pytorch() -> None:
    z, y = torch.randn(3, 4, generator=torch.Generator().manual_seed(17)), torch.full((3,), -100)
    assert torch.isnan(F.cross_entropy(z, y, label_smoothing=0.1))


# --- modules --------------------------------------------------------------------------------------


def test_modules_equal_functions_and_keep_buffers() -> None:
    logits, target = _data(8, 4, seed=18)
    w = torch.rand(4, generator=torch.Generator().manual_seed(18), dtype=torch.float64)
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    m = LabelSmoothingCrossEntropyLoss(0.2, prior=prior, weight=w)
    torch.testing.assert_close(
        m(logits, target), label_smoothing_cross_entropy(logits, target, 0.2, prior=prior, weight=w)
    )
    assert set(m.state_dict()) == {"weight", "prior"}
    torch.testing.assert_close(
        LabelRelaxationLoss(0.3)(logits, target), label_relaxation_loss(logits, target, 0.3)
    )
    torch.testing.assert_close(
        ConfidencePenaltyLoss(0.3, threshold=1.0)(logits, target),
        confidence_penalty_loss(logits, target, 0.3, threshold=1.0),
    )
    assert "smoothing=0.2" in repr(m)
