"""The z-loss (``lse_square_scale``) and tanh softcap (``softcap``) of ``smoothlab.cross_entropy``
and of the ``smoothlab.nn`` modules.

The specification is a naive float64 loop (:func:`_twin`) with its own hand-derived gradient:
for capped logits ``u = c tanh(z / c)``, target mass ``q`` (class weights, smoothing and prior
folded in) and ``lse = log sum_j exp(u_j)``, a row's loss is ``-sum_j q_j log p_j + s lse^2`` and
its gradient ``(sum_k q_k p_j - q_j + 2 s lse p_j) (1 - (u_j / c)^2)``. The modules must give
their functions' numbers and validate the options at construction with the same messages.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_logit_options import ERRORS  # the functions' messages, which the modules repeat

from smoothlab import cross_entropy
from smoothlab.losses import confidence_penalty_loss, label_relaxation_loss
from smoothlab.losses import label_smoothing_cross_entropy as ls_ce
from smoothlab.nn import (
    ConfidencePenaltyLoss,
    CrossEntropyLoss,
    LabelRelaxationLoss,
    LabelSmoothingCrossEntropyLoss,
)

Rows = list[list[float]]
OPTIONS = [
    pytest.param(0.05, None, id="z-loss"),
    pytest.param(0.0, 2.5, id="softcap"),
    pytest.param(0.03, 4.0, id="both"),
]


def _row_mass(y: int | list[float], w: list[float], r: float, pi: list[float]) -> list[float]:
    """Target mass ``q_j``: PyTorch's weighting of ``(1 - r) e_y + r pi`` (or of ``t``)."""
    if isinstance(y, int):
        return [w[j] * r * pi[j] + (w[y] * (1 - r) if j == y else 0.0) for j in range(len(w))]
    return [w[j] * ((1 - r) * y[j] + r * pi[j]) for j in range(len(w))]


def _twin(
    z: Rows,
    target: list[int] | Rows,
    *,
    r: float,
    s: float,
    c: float | None,
    weight: list[float] | None,
    prior: list[float] | None,
    reduction: str,
    upstream: list[float],
) -> tuple[float | list[float], Rows]:
    """Loss and gradient in float64 Python loops (``upstream``: the ``none`` reduction's
    incoming gradient per row; ignored rows are ``-100``)."""
    k = len(z[0])
    w = weight or [1.0] * k
    pi = prior or [1.0 / k] * k
    losses, grads, denominator = [], [], 0.0
    for row, y in zip(z, target, strict=True):
        if y == -100:
            losses.append(0.0)
            grads.append([0.0] * k)
            continue
        u = [v if c is None else c * math.tanh(v / c) for v in row]
        top = max(u)
        lse = top + math.log(sum(math.exp(v - top) for v in u))
        p = [math.exp(v - lse) for v in u]
        q = _row_mass(y, w, r, pi)
        losses.append(-sum(qj * (uj - lse) for qj, uj in zip(q, u, strict=True)) + s * lse * lse)
        slope = [1.0 if c is None else 1.0 - (v / c) ** 2 for v in u]
        total = sum(q)
        grads.append([(total * p[j] - q[j] + 2 * s * lse * p[j]) * slope[j] for j in range(k)])
        denominator += w[y] if isinstance(y, int) else 1.0
    if reduction == "none":
        return losses, [[upstream[n] * v for v in g] for n, g in enumerate(grads)]
    scale = 1.0 / denominator if reduction == "mean" else 1.0
    return sum(losses) * scale, [[scale * v for v in g] for g in grads]


def _data(soft: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    if soft:
        target = torch.softmax(torch.randn(6, 5, generator=g, dtype=torch.float64), 1)
    else:
        target = torch.randint(0, 5, (6,), generator=g)
        target[2] = -100
    return z, target, torch.rand(5, generator=g, dtype=torch.float64) + 0.5


@pytest.mark.parametrize(("s", "c"), OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", ["index", "weight", "prior", "soft"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cross_entropy_equals_the_naive_twin(
    s: float, c: float | None, reduction: str, case: str, dtype: torch.dtype
) -> None:
    z, target, weight = _data(case == "soft")
    w = weight if case == "weight" else None
    prior = torch.softmax(weight, 0) if case == "prior" else None
    upstream = torch.linspace(-1.0, 2.0, 6, dtype=torch.float64)
    x = z.to(dtype).requires_grad_()
    got = cross_entropy(
        x, target.to(dtype) if case == "soft" else target, w, reduction=reduction,
        label_smoothing=-0.2, prior=prior, lse_square_scale=s, softcap=c,
    )  # fmt: skip
    (grad,) = torch.autograd.grad(got, x, upstream.to(dtype) if reduction == "none" else None)
    want, want_grad = _twin(
        z.tolist(), target.tolist(), r=-0.2, s=s, c=c, reduction=reduction,
        weight=None if w is None else w.tolist(), prior=None if prior is None else prior.tolist(),
        upstream=upstream.tolist(),
    )  # fmt: skip
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-6}
    torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), **tol)
    torch.testing.assert_close(grad.double(), torch.tensor(want_grad, dtype=torch.float64), **tol)


def test_gradcheck_in_float64() -> None:
    for soft in (False, True):
        z, target, weight = _data(soft, seed=1)
        x = z.requires_grad_()
        assert torch.autograd.gradcheck(
            lambda t, y=target, w=weight: cross_entropy(
                t, y, w, label_smoothing=0.1, lse_square_scale=0.05, softcap=3.0
            ),
            (x,),
        )
    module = CrossEntropyLoss(label_smoothing=-0.3, lse_square_scale=0.1, softcap=2.0)
    assert torch.autograd.gradcheck(lambda t: module(t, target), (x,))


@settings(max_examples=20, deadline=None)
@given(
    s=st.floats(0.0, 1.0),
    c=st.floats(0.5, 50.0),
    r=st.floats(-1.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_z_loss_adds_its_weighted_mean(s: float, c: float, r: float, seed: int) -> None:
    """With weights, ``mean`` adds ``s sum_n lse_n^2 / sum_n w_{y_n}`` over kept positions."""
    z, target, weight = _data(False, seed)
    base = cross_entropy(z, target, weight, label_smoothing=r, softcap=c)
    with_z = cross_entropy(z, target, weight, label_smoothing=r, softcap=c, lse_square_scale=s)
    kept = target != -100
    lse = torch.logsumexp(c * torch.tanh(z[kept] / c), 1)
    extra = s * lse.square().sum() / weight[target[kept]].sum()
    torch.testing.assert_close(with_z - base, extra, rtol=1e-9, atol=1e-9)


Make = Callable[..., torch.nn.Module]
MODULES: dict[str, tuple[Make, Callable[..., torch.Tensor], dict[str, object]]] = {
    "cross_entropy": (CrossEntropyLoss, cross_entropy, {"label_smoothing": 0.2}),
    "smoothing": (LabelSmoothingCrossEntropyLoss, ls_ce, {"smoothing": -0.2}),
    "relaxation": (LabelRelaxationLoss, label_relaxation_loss, {"alpha": 0.2}),
    "penalty": (ConfidencePenaltyLoss, confidence_penalty_loss, {"beta": 0.3, "threshold": 0.5}),
}


@pytest.mark.parametrize(("s", "c"), OPTIONS)
@pytest.mark.parametrize("name", list(MODULES))
def test_modules_equal_their_functions(name: str, s: float, c: float | None) -> None:
    make, fn, hyper = MODULES[name]
    z, target, weight = _data(False, seed=2)
    module = make(weight=weight.float(), reduction="sum", lse_square_scale=s, softcap=c, **hyper)
    assert (module.lse_square_scale, module.softcap) == (s, c)
    x = z.float().requires_grad_()
    got = module(x, target)
    (grad,) = torch.autograd.grad(got, x)
    y = z.float().requires_grad_()
    want = fn(y, target, weight=weight.float(), reduction="sum", lse_square_scale=s, softcap=c,
              **hyper)  # fmt: skip
    (want_grad,) = torch.autograd.grad(want, y)
    assert torch.equal(got, want)
    assert torch.equal(grad, want_grad)
    plain = fn(z.float(), target, weight=weight.float(), reduction="sum", **hyper)
    assert not torch.allclose(got, plain)  # the options did reach the loss


def test_options_are_keyword_only_with_the_functions_defaults() -> None:
    for make, fn, _ in MODULES.values():
        for call in (make.__init__, fn):
            params = inspect.signature(call).parameters
            for name, default in (("lse_square_scale", 0.0), ("softcap", None)):
                assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
                assert params[name].default == default


def test_repr_names_the_options_only_when_set() -> None:
    assert "softcap" not in repr(LabelRelaxationLoss())
    assert repr(ConfidencePenaltyLoss(lse_square_scale=0.5, softcap=2)).endswith(
        "reduction='mean', lse_square_scale=0.5, softcap=2.0)"
    )


@pytest.mark.parametrize(("options", "kind", "message"), ERRORS)
def test_error_messages(options: dict[str, object], kind: type[Exception], message: str) -> None:
    z, target, _ = _data(False, seed=3)
    calls: list[Callable[[], object]] = [lambda: cross_entropy(z, target, **options)]
    calls += [lambda make=make: make(**options) for make, _, _ in MODULES.values()]
    for call in calls:
        with pytest.raises(kind) as caught:
            call()
        assert str(caught.value) == message
