"""Fused linear heads against the naive linear layer + loss (float64, values and gradients)."""

from __future__ import annotations

import re

import pytest
import torch

from smoothlab.losses import (
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
    linear,
    linear_confidence_penalty_loss,
    linear_label_relaxation_loss,
    linear_label_smoothing_cross_entropy,
)

PAIRS = [
    (
        lambda h, w, y, **kw: linear_label_smoothing_cross_entropy(h, w, y, smoothing=0.2, **kw),
        lambda z, y, **kw: label_smoothing_cross_entropy(z, y, 0.2, **kw),
    ),
    (
        lambda h, w, y, **kw: linear_label_smoothing_cross_entropy(h, w, y, smoothing=-0.5, **kw),
        lambda z, y, **kw: label_smoothing_cross_entropy(z, y, -0.5, **kw),
    ),
    (
        lambda h, w, y, **kw: linear_label_relaxation_loss(h, w, y, alpha=0.3, **kw),
        lambda z, y, **kw: label_relaxation_loss(z, y, 0.3, **kw),
    ),
    (
        lambda h, w, y, **kw: linear_confidence_penalty_loss(h, w, y, beta=0.4, **kw),
        lambda z, y, **kw: confidence_penalty_loss(z, y, 0.4, **kw),
    ),
    (
        lambda h, w, y, **kw: linear_confidence_penalty_loss(
            h, w, y, beta=0.4, threshold=1.5, **kw
        ),
        lambda z, y, **kw: confidence_penalty_loss(z, y, 0.4, threshold=1.5, **kw),
    ),
]


@pytest.fixture(params=["one chunk", "many chunks"])
def chunking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "many chunks":
        monkeypatch.setattr(linear, "LINEAR_CHUNK_BYTES", 3 * 13 * 8)  # three rows per chunk
    return str(request.param)


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore", [False, True])
def test_linear_head_equals_naive(
    pair, use_bias: bool, reduction: str, ignore: bool, chunking: str
) -> None:  # type: ignore[no-untyped-def]
    fused, loss = pair
    g = torch.Generator().manual_seed(0)
    h = torch.randn(10, 6, generator=g, dtype=torch.float64)
    w = torch.randn(13, 6, generator=g, dtype=torch.float64)
    b = torch.randn(13, generator=g, dtype=torch.float64) if use_bias else None
    y = torch.randint(0, 13, (10,), generator=g)
    if ignore:
        y[::3] = -100
    inputs = [t.clone().requires_grad_() for t in (h, w)] + (
        [b.clone().requires_grad_()] if b is not None else []
    )
    ours = fused(inputs[0], inputs[1], y, bias=inputs[2] if use_bias else None, reduction=reduction)
    naive_inputs = [t.clone().requires_grad_() for t in inputs]
    logits = naive_inputs[0] @ naive_inputs[1].T
    if use_bias:
        logits = logits + naive_inputs[2]
    truth = loss(logits, y, reduction=reduction, fused=False)
    torch.testing.assert_close(ours, truth, rtol=1e-12, atol=1e-12)
    for a, c in zip(
        torch.autograd.grad(ours * 1.7, inputs),
        torch.autograd.grad(truth * 1.7, naive_inputs),
        strict=True,
    ):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)


def test_batched_hidden_half_precision_and_frozen_weight() -> None:
    g = torch.Generator().manual_seed(1)
    h = torch.randn(2, 5, 4, generator=g).to(torch.bfloat16).requires_grad_()
    w = torch.randn(7, 4, generator=g).to(torch.bfloat16)  # frozen: no gradient accumulated
    y = torch.randint(0, 7, (2, 5), generator=g)
    ours = linear_label_smoothing_cross_entropy(h, w, y)
    assert ours.dtype == torch.float32
    (grad,) = torch.autograd.grad(ours, h)
    assert grad.dtype == torch.bfloat16 and grad.shape == h.shape
    hf = h.detach().float().requires_grad_()
    truth = label_smoothing_cross_entropy((hf @ w.float().T).reshape(10, 7), y.reshape(-1), 0.1)
    (true_grad,) = torch.autograd.grad(truth, hf)
    torch.testing.assert_close(ours, truth, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.float(), true_grad, rtol=2e-2, atol=2e-3)


def test_double_backward_raises() -> None:
    g = torch.Generator().manual_seed(3)
    h = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    loss = linear_label_smoothing_cross_entropy(
        h, torch.randn(4, 2, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2])
    )
    with pytest.raises(RuntimeError, match="do not support double backward"):
        torch.autograd.grad(loss, h, create_graph=True)


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("case", ["no rows", "all ignored"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_nothing_to_compute(pair, case: str, reduction: str) -> None:  # type: ignore[no-untyped-def]
    """No rows (or only ignored ones): the naive loss (NaN mean, 0 sum) and zero gradients."""
    fused, loss = pair
    rows = 0 if case == "no rows" else 4
    g = torch.Generator().manual_seed(4)
    h = torch.randn(rows, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.full((rows,), -100)
    ours = fused(h, w, y, bias=b, reduction=reduction)
    truth = loss(h.detach() @ w.detach().T + b.detach(), y, reduction=reduction, fused=False)
    torch.testing.assert_close(ours, truth, equal_nan=True)
    for grad, like in zip(torch.autograd.grad(ours, (h, w, b)), (h, w, b), strict=True):
        assert torch.equal(grad, torch.zeros_like(like))


@pytest.mark.parametrize("pair", PAIRS)
def test_ignored_rows_are_never_computed(pair, chunking: str) -> None:  # type: ignore[no-untyped-def]
    """Ignored rows skip the matrix products: NaN hidden states there (padding that was never
    written) leave the loss and every gradient finite, where the naive head's weight gradient
    would be NaN (``0 * NaN`` in ``G^T h``); the kept rows' numbers are unchanged."""
    fused, _ = pair
    g = torch.Generator().manual_seed(2)
    h = torch.randn(9, 6, generator=g, dtype=torch.float64)
    w = torch.randn(13, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 13, (9,), generator=g)
    y[1::2] = -100
    padded = h.clone()
    padded[1::2] = float("nan")
    padded.requires_grad_()
    kept = h[::2].clone().requires_grad_()
    ours = fused(padded, w, y)
    (dh, dw) = torch.autograd.grad(ours, (padded, w))
    truth = fused(kept, w, y[::2])
    (true_dh, true_dw) = torch.autograd.grad(truth, (kept, w))
    torch.testing.assert_close(ours, truth, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dw, true_dw, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dh[::2], true_dh, rtol=1e-12, atol=1e-12)
    assert torch.equal(dh[1::2], torch.zeros(4, 6, dtype=torch.float64))


H = torch.zeros(3, 2)
W = torch.zeros(4, 2)
Y = torch.tensor([0, 1, 2])


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (
            lambda: linear_label_smoothing_cross_entropy(H, W, Y, reduction="none"),
            ValueError,
            "`reduction` must be 'mean' or 'sum' for a fused linear head, got 'none'",
        ),
        (
            lambda: linear_label_smoothing_cross_entropy(H, torch.zeros(4, 3), Y),
            ValueError,
            "`weight` must be of shape (V, 2) with V >= 1, got a torch.float32 tensor of shape (4, 3)",
        ),
        (
            lambda: linear_label_smoothing_cross_entropy(H, W.double(), Y),
            TypeError,
            "`weight` must be of the hidden state's dtype torch.float32, got a torch.float64 tensor of shape (4, 2)",
        ),
        (
            lambda: linear_label_smoothing_cross_entropy(H, W, Y, bias=torch.zeros(3)),
            ValueError,
            "`bias` must be None or a tensor of shape (4,), got a torch.float32 tensor of shape (3,)",
        ),
        (
            lambda: linear_label_smoothing_cross_entropy(H, W, torch.tensor([0, 1])),
            ValueError,
            "`target` must be class indices of shape (3,), got a torch.int64 tensor of shape (2,)",
        ),
        (
            lambda: linear_label_smoothing_cross_entropy(H, W, torch.tensor([0, 1, 4])),
            ValueError,
            "`target` must be class indices in [0, 3] or ignore_index=-100, got 4",
        ),
        (
            lambda: linear_label_smoothing_cross_entropy(H.long(), W, Y),
            TypeError,
            "`hidden` must be a floating-point tensor, got a torch.int64 tensor of shape (3, 2)",
        ),
        (
            lambda: linear_label_smoothing_cross_entropy(H, W, Y, smoothing=2.0),
            ValueError,
            "`smoothing` must be <= 1.0, got 2.0",
        ),
        (
            lambda: linear_label_relaxation_loss(H, W, Y, alpha=1.0),
            ValueError,
            "`alpha` must be < 1.0, got 1.0",
        ),
        (
            lambda: linear_confidence_penalty_loss(H, W, Y, beta=-1.0),
            ValueError,
            "`beta` must be >= 0.0, got -1.0",
        ),
    ],
)
def test_errors(call, kind: type[Exception], message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(kind, match="^" + re.escape(message) + "$"):
        call()
