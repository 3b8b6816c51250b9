"""The z-loss (``lse_square_scale``) and the tanh softcap (``softcap``) on every backend.

The specification is a naive float64 loop (:func:`_naive`: cap each logit, take the smoothed
cross-entropy of ``tests/reference.py``, add ``s lse^2`` at non-ignored positions); the
composition (``fused=False``) is checked against it, and the C rows, the PyTorch row kernels
(``smoothlab._native.disabled()``), the fused linear heads and, in Triton's interpreter, the
Triton kernel are checked against the composition.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothlab import _native, smooth_targets
from smoothlab.losses import (
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
    linear_confidence_penalty_loss,
    linear_label_relaxation_loss,
    linear_label_smoothing_cross_entropy,
)

from reference import log_softmax, ls_ce

ROOT = Path(__file__).resolve().parents[1]
Loss = Callable[..., torch.Tensor]
LOSSES: dict[str, tuple[Loss, dict[str, object]]] = {
    "smoothing": (label_smoothing_cross_entropy, {"smoothing": 0.2}),
    "negative smoothing, weights": (label_smoothing_cross_entropy, {"smoothing": -0.3}),
    "relaxation": (label_relaxation_loss, {"alpha": 0.2}),
    "penalty": (confidence_penalty_loss, {"beta": 0.3}),
    "hinged penalty": (confidence_penalty_loss, {"beta": 0.3, "threshold": 1.0}),
}
OPTIONS = [
    pytest.param({"lse_square_scale": 1e-2}, id="z-loss"),
    pytest.param({"softcap": 2.5}, id="softcap"),
    pytest.param({"lse_square_scale": 3e-2, "softcap": 4.0}, id="both"),
]


def _naive(
    z: list[list[float]], y: list[int], r: float, scale: float, cap: float | None
) -> list[float]:
    """Per-row loss: smoothed cross-entropy of the capped logits plus ``scale lse^2``."""
    capped = [[v if cap is None else cap * math.tanh(v / cap) for v in row] for row in z]
    ce = ls_ce(capped, y, r, reduction="none")
    assert isinstance(ce, list)
    out = []
    for row, label, loss in zip(capped, y, ce, strict=True):
        lse = row[0] - log_softmax(row)[0]
        out.append(0.0 if label == -100 else loss + scale * lse * lse)
    return out


def _data(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(n, c, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    y[1] = -100
    return z, y


@pytest.mark.parametrize("options", OPTIONS)
def test_composition_equals_the_naive_loop(options: dict[str, float]) -> None:
    z, y = _data(5, 7, seed=1)
    got = label_smoothing_cross_entropy(
        z.double(), y, 0.2, reduction="none", fused=False, **options
    )
    zs = float(options.get("lse_square_scale", 0.0))
    want = _naive(z.double().tolist(), y.tolist(), 0.2, zs, options.get("softcap"))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)


def _loss_and_grad(
    fn: Loss, z: torch.Tensor, *args: object, **kwargs: object
) -> tuple[torch.Tensor, ...]:
    x = z.clone().requires_grad_()
    loss = fn(x, *args, **kwargs)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach().double(), grad.double()


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("classes", [10, 300])  # the C kernel's narrow and wide rows
def test_every_backend_equals_the_composition(
    name: str, classes: int, options: dict[str, float]
) -> None:
    fn, hyper = LOSSES[name]
    z, y = _data(70, classes, seed=classes)
    weight = torch.rand(classes, generator=torch.Generator().manual_seed(2)) + 0.5
    kwargs = {**hyper, **options, "weight": weight if "weights" in name else None}
    want = _loss_and_grad(fn, z.double(), y, fused=False, **kwargs)
    native = _loss_and_grad(fn, z, y, **kwargs)
    assert _native.status()[f"last {fn.__name__.split('_')[1]}"] == "native" or (
        _native.library("losses") is None
    )
    with _native.disabled():
        kernels = _loss_and_grad(fn, z, y, **kwargs)
    for got in (native, kernels):
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("options", OPTIONS)
def test_in_place_and_spatial_logits(options: dict[str, float]) -> None:
    z, y = _data(12, 40, seed=3)
    want = _loss_and_grad(label_smoothing_cross_entropy, z.double(), y, 0.1, fused=False, **options)
    x = z.clone().requires_grad_()
    loss = label_smoothing_cross_entropy(x * 1.0, y, 0.1, inplace_grad=True, **options)
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(grad.double(), want[1], rtol=1e-5, atol=1e-7)
    spatial = z.view(3, 4, 40).permute(0, 2, 1)  # (N, C, d1): the PyTorch kernels
    got = _loss_and_grad(label_smoothing_cross_entropy, spatial, y.view(3, 4), 0.1, **options)
    ref = _loss_and_grad(
        label_smoothing_cross_entropy, spatial.double(), y.view(3, 4), 0.1, fused=False, **options
    )
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-5, atol=1e-7)


def _options_loss(fn: Loss, y: torch.Tensor, hyper: dict[str, object], fused: bool) -> Loss:
    return lambda t: fn(t, y, **hyper, lse_square_scale=0.05, softcap=3.0, fused=fused)


def test_gradcheck_of_both_paths_in_float64() -> None:
    z, y = _data(4, 6, seed=4)
    x = z.double().requires_grad_()
    for fused in (False, True):
        for fn, hyper in LOSSES.values():
            assert torch.autograd.gradcheck(_options_loss(fn, y, hyper, fused), (x,))
    soft = torch.softmax(torch.randn(4, 6, dtype=torch.float64), 1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: label_smoothing_cross_entropy(x, t, 0.1, lse_square_scale=0.1, fused=False),
        (soft,),
    )


LINEAR = {
    "smoothing": (linear_label_smoothing_cross_entropy, label_smoothing_cross_entropy, {"smoothing": 0.1}),
    "relaxation": (linear_label_relaxation_loss, label_relaxation_loss, {"alpha": 0.1}),
    "penalty": (linear_confidence_penalty_loss, confidence_penalty_loss, {"beta": 0.2}),
}  # fmt: skip


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("head", list(LINEAR))
def test_linear_heads(head: str, native: bool) -> None:
    fused, loss, hyper = LINEAR[head]
    g = torch.Generator().manual_seed(5)
    h, w, b = torch.randn(9, 5, generator=g), torch.randn(70, 5, generator=g), torch.randn(70)
    y = torch.randint(0, 70, (9,), generator=g)
    y[2] = -100
    options = {"lse_square_scale": 2e-2, "softcap": 3.0}
    inputs = [t.clone().requires_grad_() for t in (h, w, b)]
    if native:
        got = fused(*inputs[:2], y, bias=inputs[2], **hyper, **options)
    else:
        with _native.disabled():
            got = fused(*inputs[:2], y, bias=inputs[2], **hyper, **options)
    grads = torch.autograd.grad(got, inputs)
    exact = [t.double().requires_grad_() for t in (h, w, b)]
    want = loss(torch.nn.functional.linear(*exact), y, **hyper, fused=False, **options)
    want_grads = torch.autograd.grad(want, exact)
    torch.testing.assert_close(got.double(), want.detach(), rtol=1e-5, atol=1e-6)
    for a, e in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    scale=st.floats(0.0, 1.0),
    cap=st.floats(0.5, 50.0),
    rate=st.floats(-0.5, 1.0),
    seed=st.integers(0, 2**16),
)
def test_z_loss_adds_exactly_its_term(scale: float, cap: float, rate: float, seed: int) -> None:
    """``loss(s) - loss(0) = s lse(capped)^2`` per row, and a cap bounds every logit."""
    z, y = _data(4, 9, seed=seed)
    z = z.double()
    base = label_smoothing_cross_entropy(z, y, rate, softcap=cap, reduction="none")
    with_z = label_smoothing_cross_entropy(
        z, y, rate, softcap=cap, lse_square_scale=scale, reduction="none"
    )
    capped = cap * torch.tanh(z / cap)
    term = scale * torch.logsumexp(capped, 1).square() * (y != -100)
    torch.testing.assert_close(with_z - base, term, rtol=1e-9, atol=1e-9)
    assert bool((capped.abs() <= cap).all())


ERRORS = [
    ({"lse_square_scale": -0.1}, ValueError, "`lse_square_scale` must be >= 0.0, got -0.1"),
    ({"lse_square_scale": math.nan}, ValueError, "`lse_square_scale` must be a number, not NaN, got nan"),
    ({"lse_square_scale": "1"}, TypeError, "`lse_square_scale` must be a real number, got '1'"),
    ({"softcap": 0.0}, ValueError, "`softcap` must be > 0.0, got 0.0"),
    ({"softcap": -3}, ValueError, "`softcap` must be > 0.0, got -3"),
    ({"softcap": math.inf}, ValueError, "`softcap` must be finite, got inf"),
    ({"softcap": True}, TypeError, "`softcap` must be a real number, got True"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "kind", "message"), ERRORS)
def test_error_messages(options: dict[str, object], kind: type[Exception], message: str) -> None:
    z, y = _data(3, 4, seed=6)
    h, w = torch.randn(3, 2), torch.randn(4, 2)
    calls = [
        lambda: label_smoothing_cross_entropy(z, y, **options),
        lambda: label_relaxation_loss(z, y, fused=False, **options),
        lambda: confidence_penalty_loss(z, y, **options),
        lambda: linear_label_smoothing_cross_entropy(h, w, y, **options),
        lambda: linear_label_relaxation_loss(h, w, y, **options),
        lambda: linear_confidence_penalty_loss(h, w, y, **options),
    ]
    for call in calls:
        with pytest.raises(kind) as caught:
            call()
        assert str(caught.value) == message


def test_status_names_the_backend_of_each_familys_latest_call() -> None:
    z, y = _data(4, 5, seed=7)
    with _native.disabled():
        confidence_penalty_loss(z, y)
    assert _native.status()["last penalty"] == "torch"
    z = z.double()  # float64 logits stay with the PyTorch kernels
    label_smoothing_cross_entropy(z, y)
    assert _native.status()["last smoothing"] == "torch"
    if _native.library("losses") is not None:
        label_relaxation_loss(z.float(), y)
        assert _native.status()["last relaxation"] == "native"


INTERPRETED = """
import torch
from smoothlab import _triton
from smoothlab.losses import label_smoothing_cross_entropy as ls, confidence_penalty_loss as cp
from smoothlab.losses import linear_label_smoothing_cross_entropy as linear
from smoothlab._native import status
g = torch.Generator().manual_seed(8)
z, y = 3 * torch.randn(5, 37, generator=g), torch.randint(0, 37, (5,), generator=g)
y[1] = -100
h, w = torch.randn(5, 4, generator=g), torch.randn(37, 4, generator=g)
opts = {"lse_square_scale": 2e-2, "softcap": 3.0}
worst = 0.0
for fn in (ls, cp):
    ref = z.double().requires_grad_()
    want = fn(ref, y, fused=False, **opts)
    (want_grad,) = torch.autograd.grad(want, ref)
    x = z.clone().requires_grad_()
    with _triton.on_cpu():
        got = fn(x, y, **opts)
        (grad,) = torch.autograd.grad(got, x)
    assert status()["last " + ("smoothing" if fn is ls else "penalty")] == "triton"
    worst = max(worst, abs(float(got) - float(want)), float((grad - want_grad).abs().max()))
hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
with _triton.on_cpu():
    got = linear(hh, ww, y, **opts)
    got_grads = torch.autograd.grad(got, (hh, ww))
exact = [t.double().requires_grad_() for t in (h, w)]
want = ls(exact[0] @ exact[1].T, y, 0.1, fused=False, **opts)
worst = max(worst, abs(float(got) - float(want)))
for a, e in zip(got_grads, torch.autograd.grad(want, exact)):
    worst = max(worst, float((a.double() - e).abs().max()))
print(worst)
"""


def test_triton_kernel_in_the_interpreter() -> None:
    """The public options reach the Triton kernel (fused losses and a linear head's chunks)."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["TRITON_INTERPRET"] = "1"
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", INTERPRETED],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 2e-5


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("prior", ["uniform", "class", "example"])
def test_composition_is_soft_cross_entropy_of_smooth_targets(prior: str, exclusive: bool) -> None:
    """``fused=False`` is the soft-target cross-entropy of ``smooth_targets`` (house rule 2)."""
    z, y = _data(6, 5, seed=9)
    z, y = z.double(), y.clamp(min=0)
    g = torch.Generator().manual_seed(10)
    pi = {
        "uniform": None,
        "class": torch.softmax(torch.randn(5, generator=g, dtype=torch.float64), 0),
        "example": torch.softmax(torch.randn(6, 5, generator=g, dtype=torch.float64), 1),
    }[prior]
    q = smooth_targets(y, 5, -0.3, prior=pi, exclusive=exclusive, dtype=torch.float64)
    want = -(q * torch.log_softmax(z, 1)).sum(1)
    got = label_smoothing_cross_entropy(
        z, y, -0.3, prior=pi, exclusive=exclusive, reduction="none", fused=False
    )
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
