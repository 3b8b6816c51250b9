"""The fused path (default) equals the composition (``fused=False``): values, gradients, errors.

Chunking is exercised by shrinking ``CHUNK_BYTES`` and ``GRAIN`` so that small tensors are split
into many chunks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch

from smoothlab.losses import (
    _fused,
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
)

Loss = Callable[..., torch.Tensor]


def _data(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    k = shape[0] if len(shape) == 1 else shape[1]
    z = 3 * torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    y = torch.randint(0, k, tshape, generator=g)
    return z, y, g


def _both(fn: Loss, z: torch.Tensor, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
    """(loss, grad) of the fused path and of the composition."""
    out = []
    for fused in (True, False):
        x = z.detach().clone().requires_grad_()
        loss = fn(x, *args, fused=fused, **kwargs)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        out.append((loss.detach(), grad))
    return out


def _assert_same(
    fn: Loss, z: torch.Tensor, *args: object, tol: float = 1e-12, **kwargs: object
) -> None:
    (l1, g1), (l2, g2) = _both(fn, z, *args, **kwargs)
    torch.testing.assert_close(l1, l2, rtol=tol, atol=tol, equal_nan=True)
    torch.testing.assert_close(g1, g2, rtol=tol, atol=tol)


@pytest.fixture(params=["one chunk", "many chunks"])
def chunking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "many chunks":
        monkeypatch.setattr(_fused, "CHUNK_BYTES", 64)
        monkeypatch.setattr(_fused, "GRAIN", 3)
    return str(request.param)


SHAPES = [(7, 5), (5, 4, 3), (3, 4, 2, 2), (6,), (9, 70)]
VARIANTS = [
    {"smoothing": 0.1},
    {"smoothing": -0.7},
    {"smoothing": 0.0},
    {"smoothing": 1.0},
    {"smoothing": 0.3, "exclusive": True},
    {"smoothing": 0.3, "prior": "class"},
    {"smoothing": 0.3, "prior": "example"},
    {"smoothing": -0.4, "prior": "example", "exclusive": True},
    {"smoothing": 0.2, "prior": "class", "exclusive": True},
]


def _prior(kind: object, z: torch.Tensor, g: torch.Generator) -> torch.Tensor | None:
    k = z.shape[0] if z.dim() == 1 else z.shape[1]
    if kind == "class":
        return torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), 0)
    if kind == "example":
        return torch.softmax(
            torch.randn(z.shape, generator=g, dtype=torch.float64), 0 if z.dim() == 1 else 1
        )
    return None


@pytest.mark.parametrize(
    ("shape", "variant", "weighted", "reduction"),
    list(
        itertools.product(SHAPES, VARIANTS, ["none", "pytorch", "example"], ["mean", "sum", "none"])
    ),
)
def test_label_smoothing_fused_equals_composition(
    shape: tuple[int, ...], variant: dict[str, object], weighted: str, reduction: str, chunking: str
) -> None:
    z, y, g = _data(shape, seed=len(shape))
    kwargs = dict(variant)
    kwargs["prior"] = _prior(kwargs.get("prior"), z, g)
    if y.dim() > 0:
        y.view(-1)[::4] = -100
    if weighted != "none":
        kwargs["weight"] = (
            torch.rand(
                z.shape[-1] if z.dim() == 1 else z.shape[1], generator=g, dtype=torch.float64
            )
            + 0.1
        )
        kwargs["weighting"] = weighted
    _assert_same(label_smoothing_cross_entropy, z, y, reduction=reduction, **kwargs)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("prior", [None, "class", "example"])
def test_soft_targets_fused_equals_composition(
    shape: tuple[int, ...], reduction: str, prior: str | None, chunking: str
) -> None:
    z, _, g = _data(shape, seed=3)
    t = torch.softmax(
        torch.randn(z.shape, generator=g, dtype=torch.float64), 0 if z.dim() == 1 else 1
    )
    k = z.shape[0] if z.dim() == 1 else z.shape[1]
    w = torch.rand(k, generator=g, dtype=torch.float64)
    pi = _prior(prior, z, g)
    _assert_same(label_smoothing_cross_entropy, z, t, 0.3, prior=pi, weight=w, reduction=reduction)
    _assert_same(confidence_penalty_loss, z, t, 0.4, weight=w, reduction=reduction)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_relaxation_and_penalty_fused_equal_composition(
    shape: tuple[int, ...], reduction: str, weighted: bool, chunking: str
) -> None:
    z, y, g = _data(shape, seed=5)
    if y.dim() > 0:
        y.view(-1)[1::3] = -100
    k = z.shape[0] if z.dim() == 1 else z.shape[1]
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.1 if weighted else None
    for alpha in (0.05, 0.5, 0.9):
        _assert_same(label_relaxation_loss, z, y, alpha, weight=w, reduction=reduction)
    for threshold in (None, 0.5, 50.0):
        _assert_same(
            confidence_penalty_loss, z, y, 0.3, threshold=threshold, weight=w, reduction=reduction
        )


def test_pytorch_equality_on_a_large_class_count() -> None:
    """Rows wider than any chunk, float32: equal to F.cross_entropy to 1e-6."""
    z, y, _ = _data((5, 3000), seed=8, dtype=torch.float32)
    y[2] = -100
    a = z.clone().requires_grad_()
    b = z.clone().requires_grad_()
    ours = label_smoothing_cross_entropy(a, y, 0.1)
    theirs = torch.nn.functional.cross_entropy(b, y, label_smoothing=0.1)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "fn",
    [
        lambda z, y, **kw: label_smoothing_cross_entropy(z, y, 0.2, **kw),
        lambda z, y, **kw: label_smoothing_cross_entropy(
            z, y, 0.2, prior=torch.full((5,), 0.2), **kw
        ),
        lambda z, y, **kw: label_relaxation_loss(z, y, 0.2, **kw),
        lambda z, y, **kw: confidence_penalty_loss(z, y, 0.2, **kw),
    ],
)
@pytest.mark.parametrize("shape", [(6, 5), (3, 5, 4)])
def test_inplace_grad_writes_the_gradient_into_the_logits(fn: Loss, shape: tuple[int, ...]) -> None:
    z, y, _ = _data(shape, seed=9)
    reference = z.clone().requires_grad_()
    expected = fn(reference, y)
    (truth,) = torch.autograd.grad(expected, reference)
    x = z.clone().requires_grad_()
    buffer = x.detach()
    loss = fn(x, y, inplace_grad=True)
    torch.testing.assert_close(loss, expected)
    (got,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(got, truth)
    torch.testing.assert_close(buffer, truth)  # the logits' storage now holds the gradient


def test_inplace_grad_is_refused_where_autograd_still_needs_the_logits() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    logits = x.exp()  # exp's backward needs its output: overwriting it must not go unnoticed
    loss = label_smoothing_cross_entropy(logits, torch.tensor([0, 1, 2, 3]), inplace_grad=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("inplace", [False, True])
def test_half_precision_gradient_in_input_dtype(
    dtype: torch.dtype, inplace: bool, chunking: str
) -> None:
    z, y, _ = _data((33, 12), seed=10)
    y[::5] = -100
    x = z.to(dtype).requires_grad_()
    loss = label_smoothing_cross_entropy(x, y, 0.1, inplace_grad=inplace)
    (grad,) = torch.autograd.grad(loss, x)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    ref = z.to(dtype).double().requires_grad_()
    truth = label_smoothing_cross_entropy(ref, y, 0.1, fused=False)
    (true_grad,) = torch.autograd.grad(truth, ref)
    torch.testing.assert_close(loss.double(), truth, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.double(), true_grad, rtol=2e-2, atol=1e-4)


def test_non_contiguous_input() -> None:
    z, y, _ = _data((8, 6), seed=11)
    zt = z.t().contiguous().t()  # same values, column-major
    assert not zt.is_contiguous()
    _assert_same(label_smoothing_cross_entropy, zt, y, 0.2)
    _assert_same(confidence_penalty_loss, zt, y, 0.2)


def test_backward_scales_by_grad_output_and_retains_graph() -> None:
    z, y, _ = _data((6, 5), seed=12)
    for reduction in ("mean", "none"):
        a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
        la = label_smoothing_cross_entropy(a, y, 0.3, reduction=reduction)
        lb = label_smoothing_cross_entropy(b, y, 0.3, reduction=reduction, fused=False)
        scale = torch.linspace(0.5, 2.0, la.numel(), dtype=torch.float64).view(la.shape)
        for _ in range(2):  # twice through the retained graph: the saved gradient is unchanged
            (ga,) = torch.autograd.grad(la, a, scale, retain_graph=True)
            (gb,) = torch.autograd.grad(lb, b, scale, retain_graph=True)
            torch.testing.assert_close(ga, gb)


def test_double_backward_raises_a_clear_error() -> None:
    z, y, _ = _data((4, 3), seed=13)
    x = z.requires_grad_()
    loss = label_smoothing_cross_entropy(x, y)
    with pytest.raises(RuntimeError, match=r"do not support double backward.*fused=False"):
        torch.autograd.grad(loss, x, create_graph=True)
    # The composition supports it.
    (grad,) = torch.autograd.grad(
        label_smoothing_cross_entropy(x, y, fused=False), x, create_graph=True
    )
    grad.pow(2).sum().backward()


def test_prior_requiring_grad_runs_the_composition() -> None:
    z, y, g = _data((5, 4), seed=14)
    prior = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), 1).requires_grad_()
    loss = label_smoothing_cross_entropy(z, y, 0.3, prior=prior)
    (grad,) = torch.autograd.grad(loss, prior)
    assert grad.abs().sum() > 0


def test_switch_errors() -> None:
    z, y, _ = _data((4, 3), seed=15)
    with pytest.raises(TypeError, match=r"^`fused` must be a bool, got 1$"):
        label_smoothing_cross_entropy(z, y, fused=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^`inplace_grad` must be a bool, got 'yes'$"):
        label_relaxation_loss(z, y, inplace_grad="yes")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"^`inplace_grad` must be False when fused=False, got True$"
    ):
        confidence_penalty_loss(z, y, fused=False, inplace_grad=True)


def test_torch_compile_runs_and_matches() -> None:
    """Under torch.compile the composition is traced (the compiler fuses it itself).

    The ``aot_eager`` backend keeps this test fast; it traces forward and backward graphs the same
    way as inductor does before code generation.
    """
    z, y, _ = _data((6, 5), seed=16, dtype=torch.float32)

    def step(x: torch.Tensor) -> torch.Tensor:
        return label_smoothing_cross_entropy(x, y, 0.2) + confidence_penalty_loss(x, y, 0.1)

    compiled = torch.compile(step, backend="aot_eager")
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    la, lb = compiled(a), step(b)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("inplace", [False, True])
def test_underflowing_true_class_probability_is_exact(inplace: bool) -> None:
    """p_y = exp(-5000) underflows: lse comes from logsumexp (or max z - log max p in place)."""
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3], [1.0, 2.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    truth = label_smoothing_cross_entropy(z, y, 0.1, reduction="none", fused=False)
    x = z.clone().requires_grad_()
    ours = label_smoothing_cross_entropy(x, y, 0.1, reduction="none", inplace_grad=inplace)
    torch.testing.assert_close(ours, truth, rtol=1e-12, atol=1e-12)
