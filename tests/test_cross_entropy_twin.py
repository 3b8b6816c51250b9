"""``smoothlab.cross_entropy`` / ``smoothlab.nn.CrossEntropyLoss`` against PyTorch's twins.

Same signature, same numbers for every input PyTorch accepts (the combinations of the existing
parity tests), and what PyTorch refuses or drops: negative smoothing, a prior, half-precision
batches it overflows. Also the zero-mass semantics at ``-inf`` logits, on every path.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import smoothlab
from smoothlab import _native, cross_entropy, label_smoothing_cross_entropy
from smoothlab.nn import CrossEntropyLoss

REDUCTIONS = ["mean", "sum", "none"]
SHAPES = [(6, 5), (4, 3, 7), (3, 4, 2, 5), (5,)]


def _naive(
    logits: torch.Tensor,
    target: torch.Tensor,
    r: float,
    *,
    weight: torch.Tensor | None = None,
    prior: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Float64 loops over ``(N, C)`` rows: ``-sum_j w_j q_j log p_j``, ``0 log 0 = 0``."""
    z, k = logits.double().tolist(), logits.shape[1]
    w = [1.0] * k if weight is None else weight.double().tolist()
    losses, denominator = [], 0.0
    for n, (row, y) in enumerate(zip(z, target.tolist(), strict=True)):
        if y == ignore_index:
            losses.append(0.0)
            continue
        top = max(row)
        lse = top + math.log(sum(math.exp(v - top) for v in row))
        pi = [1.0 / k] * k if prior is None else prior.double().expand(len(z), k)[n].tolist()
        q = [w[j] * ((1 - r) * (j == y) + r * pi[j]) for j in range(k)]
        losses.append(-sum(0.0 if q[j] == 0 else q[j] * (row[j] - lse) for j in range(k)))
        denominator += w[y]
    out = torch.tensor(losses, dtype=torch.float64)
    if reduction == "none":
        return out
    return out.sum() if reduction == "sum" else out.sum() / denominator


def _case(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    k = shape[0] if len(shape) == 1 else shape[1]
    logits = 2 * torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    return logits, torch.randint(0, k, tshape, generator=g), g, k


def _tol(dtype: torch.dtype) -> float:
    return 1e-6 if dtype == torch.float32 else 1e-12


# --- the signature ------------------------------------------------------------------------------


def _parameters(fn: object) -> list[tuple[str, object, object]]:
    params = inspect.signature(fn).parameters.values()  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in params]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (cross_entropy, F.cross_entropy),
        (CrossEntropyLoss.__init__, torch.nn.CrossEntropyLoss.__init__),
        (CrossEntropyLoss.forward, torch.nn.CrossEntropyLoss.forward),
    ],
)
def test_signature_is_pytorchs_plus_keyword_only_extras(ours: object, theirs: object) -> None:
    mine, torchs = _parameters(ours), _parameters(theirs)
    assert mine[: len(torchs)] == torchs
    extras = [("prior", None), ("lse_square_scale", 0.0), ("softcap", None)]
    keyword = [(name, inspect.Parameter.KEYWORD_ONLY, default) for name, default in extras]
    assert mine[len(torchs) :] == ([] if ours is CrossEntropyLoss.forward else keyword)


def test_public_names_and_subclass() -> None:
    assert smoothlab.cross_entropy is cross_entropy
    assert smoothlab.CrossEntropyLoss is CrossEntropyLoss
    assert issubclass(CrossEntropyLoss, torch.nn.CrossEntropyLoss)


# --- same numbers as PyTorch ----------------------------------------------------------------------


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
def test_equals_pytorch_with_class_indices(
    shape: tuple[int, ...],
    r: float,
    use_weight: bool,
    ignore: bool,
    reduction: str,
    dtype: torch.dtype,
) -> None:
    logits, target, g, k = _case(shape, seed=len(shape) * 10 + int(10 * r), dtype=dtype)
    if ignore and target.dim() > 0:
        target.view(-1)[::3] = 1  # PyTorch's ignore_index may be a valid class
    weight = torch.rand(k, generator=g, dtype=torch.float64).to(dtype) + 0.2 if use_weight else None
    args = (weight, None, 1 if ignore else -100, None, reduction, r)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    ours, theirs = cross_entropy(a, target, *args), F.cross_entropy(b, target, *args)
    tol = _tol(dtype)
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol, equal_nan=True)
    if not math.isnan(float(theirs.detach().sum())):
        (ga,) = torch.autograd.grad(ours.sum(), a)
        (gb,) = torch.autograd.grad(theirs.sum(), b)
        torch.testing.assert_close(ga, gb, rtol=tol, atol=tol)
    module = CrossEntropyLoss(weight, ignore_index=args[2], reduction=reduction, label_smoothing=r)
    theirs_m = torch.nn.CrossEntropyLoss(weight, ignore_index=args[2], reduction=reduction)
    theirs_m.label_smoothing = r
    torch.testing.assert_close(module(logits, target), theirs_m(logits, target), equal_nan=True)


@pytest.mark.parametrize(
    ("shape", "r", "use_weight", "reduction", "normalised"),
    list(itertools.product(SHAPES, [0.0, 0.3, 1.0], [False, True], REDUCTIONS, [True, False])),
)
def test_equals_pytorch_with_probability_targets(
    shape: tuple[int, ...], r: float, use_weight: bool, reduction: str, normalised: bool
) -> None:
    logits, _, g, k = _case(shape, seed=7)
    raw = torch.randn(shape, generator=g, dtype=torch.float64)
    # PyTorch takes any floating target; normalised or not, the numbers must agree.
    target = torch.softmax(raw, 0 if len(shape) == 1 else 1) if normalised else raw
    weight = torch.rand(k, generator=g, dtype=torch.float64) if use_weight else None
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    kwargs = {"weight": weight, "reduction": reduction, "label_smoothing": r}
    ours, theirs = cross_entropy(a, target, **kwargs), F.cross_entropy(b, target, **kwargs)  # type: ignore[arg-type]
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    (ga,) = torch.autograd.grad(ours.sum(), a)
    (gb,) = torch.autograd.grad(theirs.sum(), b)
    torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["empty", "all ignored", "uint8 targets", "large C"])
def test_equals_pytorch_on_edge_batches(case: str, reduction: str) -> None:
    g = torch.Generator().manual_seed(3)
    n, k = {"empty": (0, 4), "large C": (3, 300)}.get(case, (5, 4))
    logits = torch.randn(n, k, generator=g)
    target = torch.randint(0, k, (n,), generator=g)
    if case == "all ignored":
        target.fill_(-100)
    if case == "uint8 targets":
        target = target.to(torch.uint8)
    kwargs = {"reduction": reduction, "label_smoothing": 0.2}
    torch.testing.assert_close(
        cross_entropy(logits, target, **kwargs),  # type: ignore[arg-type]
        F.cross_entropy(logits, target, **kwargs),  # type: ignore[arg-type]
        equal_nan=True,
    )


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.lists(st.floats(-20, 20), min_size=3, max_size=3), min_size=1, max_size=5),
    r=st.floats(0.0, 1.0),
    data=st.data(),
)
def test_equals_pytorch_on_any_rows(rows: list[list[float]], r: float, data: st.DataObject) -> None:
    logits = torch.tensor(rows, dtype=torch.float64)
    target = torch.tensor(
        data.draw(st.lists(st.integers(0, 2), min_size=len(rows), max_size=len(rows)))
    )
    torch.testing.assert_close(
        cross_entropy(logits, target, label_smoothing=r),
        F.cross_entropy(logits, target, label_smoothing=r),
        rtol=1e-12,
        atol=1e-12,
    )


# --- PyTorch's legacy arguments -------------------------------------------------------------------


LEGACY = [
    (s, r) for s, r in itertools.product([None, True, False], repeat=2) if (s, r) != (None, None)
]


def _warned(call: object) -> tuple[torch.Tensor, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()  # type: ignore[operator]
    return out, [str(w.message) for w in caught]


@pytest.mark.parametrize(("size_average", "reduce"), LEGACY)
def test_legacy_arguments_as_pytorch(size_average: bool | None, reduce: bool | None) -> None:
    logits, target, _, _ = _case((6, 5), seed=4)
    weight = torch.linspace(0.5, 1.5, 5, dtype=torch.float64)
    args = (weight, size_average, -100, reduce, "sum", 0.1)
    ours, ours_warned = _warned(lambda: cross_entropy(logits, target, *args))
    theirs, theirs_warned = _warned(lambda: F.cross_entropy(logits, target, *args))
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert ours_warned == theirs_warned and len(ours_warned) == 1
    module, module_warned = _warned(lambda: CrossEntropyLoss(*args))
    torch_module, _ = _warned(lambda: torch.nn.CrossEntropyLoss(*args))
    assert module.reduction == torch_module.reduction  # type: ignore[attr-defined]
    assert module_warned == theirs_warned


def test_legacy_warning_points_at_the_caller() -> None:
    logits, target, _, _ = _case((3, 4), seed=5)
    with pytest.warns(UserWarning, match="size_average and reduce") as caught:
        cross_entropy(logits, target, reduce=False)
    assert caught[0].filename == __file__


def test_elementwise_mean_is_the_old_name_of_mean() -> None:
    logits, target, _, _ = _case((4, 3), seed=6)
    ours, ours_warned = _warned(lambda: cross_entropy(logits, target, reduction="elementwise_mean"))
    theirs, theirs_warned = _warned(
        lambda: F.cross_entropy(logits, target, reduction="elementwise_mean")
    )
    torch.testing.assert_close(ours, theirs)
    assert ours_warned == theirs_warned and len(ours_warned) == 1


# --- what PyTorch refuses or drops ------------------------------------------------------------------


@pytest.mark.parametrize("r", [-0.1, -0.8, -3.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_negative_smoothing_is_never_dropped(r: float, reduction: str) -> None:
    logits, target, g, k = _case((6, 4), seed=8)
    target[2] = -100
    weight = torch.rand(k, generator=g, dtype=torch.float64) + 0.3
    ours = cross_entropy(logits, target, weight, reduction=reduction, label_smoothing=r)
    truth = _naive(logits, target, r, weight=weight, reduction=reduction)
    torch.testing.assert_close(ours, truth, rtol=1e-12, atol=1e-12)
    dropped = F.cross_entropy(logits, target, weight, reduction=reduction, label_smoothing=r)
    torch.testing.assert_close(
        dropped, F.cross_entropy(logits, target, weight, reduction=reduction)
    )
    assert not torch.allclose(ours, dropped)


@pytest.mark.parametrize("kind", ["class", "example"])
@pytest.mark.parametrize("r", [0.0, 0.3, -0.4])
def test_prior_replaces_the_uniform_distribution(kind: str, r: float) -> None:
    logits, target, g, k = _case((6, 4), seed=9)
    shape = (k,) if kind == "class" else (6, k)
    prior = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), -1)
    weight = torch.rand(k, generator=g, dtype=torch.float64) + 0.3
    a = logits.clone().requires_grad_()
    ours = cross_entropy(a, target, weight, label_smoothing=r, prior=prior)
    truth = _naive(logits, target, r, weight=weight, prior=prior)
    torch.testing.assert_close(ours, truth, rtol=1e-12, atol=1e-12)
    module = CrossEntropyLoss(weight, label_smoothing=r, prior=prior)
    torch.testing.assert_close(module(logits, target), truth, rtol=1e-12, atol=1e-12)
    assert "prior" in module.state_dict()
    assert torch.autograd.gradcheck(
        lambda z: cross_entropy(z, target, weight, label_smoothing=r, prior=prior), a
    )


@pytest.mark.parametrize("kind", ["class", "example"])
def test_prior_with_probability_targets(kind: str) -> None:
    logits, _, g, k = _case((5, 4), seed=14)
    target = torch.softmax(torch.randn(5, k, generator=g, dtype=torch.float64), 1)
    shape = (k,) if kind == "class" else (5, k)
    prior = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), -1)
    weight = torch.rand(k, generator=g, dtype=torch.float64) + 0.3
    q = weight * (0.7 * target + 0.3 * prior)
    truth = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    ours = cross_entropy(logits, target, weight, label_smoothing=0.3, prior=prior)
    torch.testing.assert_close(ours, truth, rtol=1e-12, atol=1e-12)


def test_uniform_prior_is_pytorchs_smoothing() -> None:
    logits, target, _, k = _case((5, 3, 2), seed=10)
    uniform = torch.full((k,), 1.0 / k, dtype=torch.float64)
    torch.testing.assert_close(
        cross_entropy(logits, target, label_smoothing=0.4, prior=uniform),
        F.cross_entropy(logits, target, label_smoothing=0.4),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_half_precision_batches_pytorch_overflows(dtype: torch.dtype, reduction: str) -> None:
    g = torch.Generator().manual_seed(11)
    logits = (8 * torch.randn(8192, 6, generator=g)).to(dtype)
    target = torch.randint(0, 6, (8192,), generator=g)
    z = logits.clone().requires_grad_()
    ours = cross_entropy(z, target, reduction=reduction, label_smoothing=0.1)
    truth = F.cross_entropy(logits.double(), target, reduction=reduction, label_smoothing=0.1)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), truth, rtol=1e-5, atol=0.0)
    ours.backward()
    assert z.grad is not None and z.grad.dtype == dtype and bool(torch.isfinite(z.grad).all())
    if dtype == torch.float16:  # PyTorch's float16 loss passes 65504 and overflows
        assert torch.isinf(F.cross_entropy(logits, target, reduction=reduction))


def test_module_is_a_drop_in_for_pytorchs() -> None:
    logits, target, g, k = _case((6, 4), seed=12)
    weight = torch.rand(k, generator=g, dtype=torch.float64) + 0.3
    theirs = torch.nn.CrossEntropyLoss(weight, ignore_index=2, label_smoothing=0.2)
    ours = CrossEntropyLoss(torch.ones(k, dtype=torch.float64), ignore_index=2, label_smoothing=0.2)
    ours.load_state_dict(theirs.state_dict())  # strict: the same keys
    assert repr(ours) == repr(theirs)
    torch.testing.assert_close(ours(logits, target), theirs(logits, target), rtol=1e-12, atol=1e-12)
    ours.label_smoothing = -0.3  # a schedule may set the rate, negative included
    truth = _naive(logits, target, -0.3, weight=weight, ignore_index=2)
    torch.testing.assert_close(ours(logits, target), truth, rtol=1e-12, atol=1e-12)


# --- errors -----------------------------------------------------------------------------------------


Z, Y = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])

ERRORS = [
    (
        lambda: cross_entropy(Z, Y, label_smoothing=1.5),
        ValueError,
        "`label_smoothing` must be <= 1.0, got 1.5",
    ),
    (
        lambda: cross_entropy(Z, Y, label_smoothing=math.nan),
        ValueError,
        "`label_smoothing` must be a number, not NaN, got nan",
    ),
    (
        lambda: cross_entropy(Z, Y, label_smoothing="0.1"),
        TypeError,
        "`label_smoothing` must be a real number, got '0.1'",
    ),
    (
        lambda: cross_entropy(Z, Y, size_average=1),
        TypeError,
        "`size_average` must be a bool or None, got 1",
    ),
    (
        lambda: cross_entropy(Z, Y, reduce="no"),
        TypeError,
        "`reduce` must be a bool or None, got 'no'",
    ),
    (
        lambda: cross_entropy(Z, Y, reduction="avg"),
        ValueError,
        "`reduction` must be one of 'mean', 'sum', 'none', got 'avg'",
    ),
    (
        lambda: cross_entropy(Z, Y, label_smoothing=0.1, prior=torch.ones(3)),
        ValueError,
        "`prior` must be a distribution summing to 1 along dim 0, got sums off by 2",
    ),
    (
        lambda: CrossEntropyLoss(label_smoothing=2.0),
        ValueError,
        "`label_smoothing` must be <= 1.0, got 2.0",
    ),
    (
        lambda: CrossEntropyLoss(reduction="avg"),
        ValueError,
        "`reduction` must be one of 'mean', 'sum', 'none', got 'avg'",
    ),
    (
        lambda: CrossEntropyLoss(reduce=0),
        TypeError,
        "`reduce` must be a bool or None, got 0",
    ),
]


@pytest.mark.parametrize(("call", "kind", "message"), ERRORS)
def test_bad_input_message(call: object, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind) as caught:
        call()  # type: ignore[operator]
    assert str(caught.value) == message


# --- zero target mass at -inf logits (issue 12, defect 1) -------------------------------------------


INF = math.inf


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("r", [0.0, 0.1, -0.2, 1.0])
@pytest.mark.parametrize("spatial", [False, True])
def test_zero_weight_class_at_minus_inf_is_no_term(
    native: bool, fused: bool, r: float, spatial: bool
) -> None:
    """A class of weight 0 contributes nothing, even at a ``-inf`` logit, on every path.

    PyTorch returns NaN there (0 * inf); before the fix, the fused path gave 0.4749 and the
    composition NaN for the first row.
    """
    logits = torch.tensor([[1.0, -INF, 0.5], [0.2, -INF, 0.3], [0.0, 2.0, -1.0]])
    target = torch.tensor([0, 1, 1])  # row 1: the true class itself has weight 0, at -inf
    weight = torch.tensor([1.0, 0.0, 2.0])
    truth = _naive(logits, target, r, weight=weight, reduction="none").float()
    theirs = F.cross_entropy(logits, target, weight, reduction="none", label_smoothing=r)
    assert torch.isnan(theirs[1]) and (r <= 0.0 or torch.isnan(theirs[0]))
    if spatial:
        logits, target, truth = logits.T.unsqueeze(0), target.unsqueeze(0), truth.unsqueeze(0)
    z = logits.clone().requires_grad_()
    with contextlib.nullcontext() if native else _native.disabled():
        loss = label_smoothing_cross_entropy(
            z, target, r, weight=weight, reduction="none", fused=fused
        )
        (grad,) = torch.autograd.grad(loss.sum(), z)
    torch.testing.assert_close(loss.detach(), truth, rtol=1e-6, atol=1e-6)
    assert bool(torch.isfinite(grad).all())
    assert bool((grad[torch.isinf(logits)] == 0).all())  # masked logits get no gradient


def test_zero_weight_at_minus_inf_fused_equals_composition_in_the_issues_case() -> None:
    logits = torch.tensor([[1.0, -INF, 0.5]])
    target, weight = torch.tensor([0]), torch.tensor([1.0, 0.0, 1.0])
    fused = label_smoothing_cross_entropy(logits, target, 0.1, weight=weight)
    composition = label_smoothing_cross_entropy(logits, target, 0.1, weight=weight, fused=False)
    assert torch.isfinite(fused) and torch.equal(fused, composition)
    torch.testing.assert_close(cross_entropy(logits, target, weight, label_smoothing=0.1), fused)


# --- the exclusive prior with all its mass on the true class (issue 12, defect 2) -----------------


def test_exclusive_prior_of_an_ignored_position_is_not_checked() -> None:
    """A one-hot teacher row at an ignored (padding) position has nowhere to put ``r``, but it
    is ignored: no error, and the same loss as without that row."""
    logits, target, g, k = _case((4, 3), seed=13)
    teacher = torch.softmax(torch.randn(4, k, generator=g, dtype=torch.float64), 1)
    teacher[1] = torch.eye(k, dtype=torch.float64)[0]
    target[1] = -100
    for fused in (True, False):
        ours = label_smoothing_cross_entropy(
            logits, target, 0.3, prior=teacher, exclusive=True, fused=fused, reduction="sum"
        )
        keep = torch.tensor([0, 2, 3])
        rest = label_smoothing_cross_entropy(
            logits[keep], target[keep], 0.3, prior=teacher[keep], exclusive=True, reduction="sum"
        )
        torch.testing.assert_close(ours, rest, rtol=1e-12, atol=1e-12)
