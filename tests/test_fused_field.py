"""The fused C row kernels of focal loss, FLSD, GCE, SCE and the logit regularisers (the kinds of
``smoothlab/_native/losses_kinds.h``) against their composition (``fused=False``, in float32 and
float64) and against the naive float64 loops of ``test_losses_family.py`` and
``test_losses_robust.py``.

Class counts cross both kernel shapes (``C <= 64``: blocks of 64 rows transposed; wider rows,
with sums over blocks of 1024 classes) and row counts cross the block of 64 rows. Every case has
an ignored position (row 3), and the losses of ``log p_y`` alone an impossible class (a
``-inf`` logit that is not the target) in row 5; the logit regularisers take finite logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_losses_family import naive as naive_family
from test_losses_robust import naive_gce, naive_sce

from smoothlab import _native
from smoothlab.losses import _native_rows
from smoothlab.losses.focal import focal_loss, sample_dependent_focal_loss
from smoothlab.losses.regularized import (
    logit_norm_loss,
    logit_penalty_loss,
    margin_label_smoothing_loss,
    max_suppression_loss,
)
from smoothlab.losses.robust import generalized_cross_entropy, symmetric_cross_entropy

pytestmark = pytest.mark.skipif(
    _native_rows.kernels() is None, reason=f"native kernels unavailable: {_native.status()}"
)

Twin = Callable[[list[float], int], float]


def _one(twin: Callable[..., list[float]], *args: float) -> Twin:
    """A per-row twin from a batch twin of ``test_losses_robust``."""
    return lambda z, y: twin(torch.tensor([z], dtype=torch.float64), [y], *args)[0]


class Kind(NamedTuple):
    fn: Callable[..., torch.Tensor]
    options: dict[str, Any]
    family: str  # its name in _native.status()
    twin: Twin
    finite: bool = False  # the loss takes finite logits only


KINDS = {
    "focal": Kind(
        focal_loss,
        {"gamma": 1.5},
        "focal",
        lambda z, y: naive_family("focal", z, y, gamma=1.5),
    ),
    "focal-gamma0": Kind(
        focal_loss, {"gamma": 0.0}, "focal", lambda z, y: naive_family("focal", z, y, gamma=0.0)
    ),
    "flsd": Kind(sample_dependent_focal_loss, {}, "focal", lambda z, y: naive_family("flsd", z, y)),
    "gce": Kind(
        generalized_cross_entropy,
        {"q": 0.7},
        "generalized cross-entropy",
        _one(naive_gce, 0.7),
    ),
    "gce-small-q": Kind(
        generalized_cross_entropy,
        {"q": 0.05},
        "generalized cross-entropy",
        _one(naive_gce, 0.05),
    ),
    "sce": Kind(
        symmetric_cross_entropy,
        {"alpha": 0.3, "beta": 0.7, "log_zero": -6.0},
        "symmetric cross-entropy",
        _one(naive_sce, 0.3, 0.7, -6.0),
    ),
    "logit-penalty": Kind(
        logit_penalty_loss,
        {"beta": 0.05},
        "logit penalty",
        lambda z, y: naive_family("penalty", z, y, beta=0.05),
        finite=True,
    ),
    "maxsup": Kind(
        max_suppression_loss,
        {"alpha": 0.3},
        "max suppression",
        lambda z, y: naive_family("maxsup", z, y, alpha=0.3),
        finite=True,
    ),
    "mbls": Kind(
        margin_label_smoothing_loss,
        {"margin": 1.5, "alpha": 0.2},
        "margin label smoothing",
        lambda z, y: naive_family("mbls", z, y, alpha=0.2, margin=1.5),
        finite=True,
    ),
    "logit-norm": Kind(
        logit_norm_loss,
        {"temperature": 0.3},
        "logit norm",
        lambda z, y: naive_family("logit_norm", z, y, temperature=0.3),
        finite=True,
    ),
}


def _logits(n: int, c: int, seed: int, finite: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(n, c, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    if n > 3:
        y[3] = -100
    if n > 5 and c > 2 and not finite:
        z[5, (int(y[5]) + 1) % c] = -math.inf
    return z, y


def _weight(c: int) -> torch.Tensor:
    return torch.rand(c, generator=torch.Generator().manual_seed(c)) + 0.25


def _run(kind: Kind, z: torch.Tensor, y: torch.Tensor, **kw: Any) -> tuple[torch.Tensor, ...]:
    """(loss, gradient of loss.sum()) of ``kind`` on a copy of ``z``."""
    x = z.detach().clone().requires_grad_()
    loss = kind.fn(x, y, **kind.options, **kw)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _close(got: torch.Tensor, want: torch.Tensor, msg: str = "", rtol: float = 2e-5) -> None:
    """Equal to float32 rounding of the largest entry (at least 1): the kernels and the
    composition round differently."""
    finite = want.double().nan_to_num(posinf=0.0, neginf=0.0).abs()
    scale = max(float(finite.max()) if want.numel() else 0.0, 1.0)
    torch.testing.assert_close(
        got.double(), want.double(), rtol=rtol, atol=rtol * scale, msg=msg, equal_nan=True
    )


SHAPES = [(1, 1), (3, 2), (70, 10), (129, 33), (65, 64), (9, 65), (5, 1500)]


@pytest.mark.parametrize(("n", "c"), SHAPES)
@pytest.mark.parametrize("name", sorted(KINDS))
def test_native_equals_the_composition_and_the_twin(name: str, n: int, c: int) -> None:
    kind = KINDS[name]
    z, y = _logits(n, c, seed=n * 1000 + c, finite=kind.finite)
    w = _weight(c)
    for options in ({"reduction": "none"}, {"reduction": "sum", "weight": w}, {"weight": w}, {}):
        msg = f"{name} {options.get('reduction', 'mean')} weight={'weight' in options}"
        loss, grad = _run(kind, z, y, **options)
        assert _native.status()[f"last {kind.family}"] == "native", msg
        ref_loss, ref_grad = _run(kind, z, y, fused=False, **options)
        _close(loss, ref_loss, msg)
        _close(grad, ref_grad, msg)
        exact = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in options.items()}
        ref64, grad64 = _run(kind, z.double(), y, fused=False, **exact)
        _close(loss, ref64, msg)
        _close(grad, grad64, msg)
    rows = zip(z.tolist(), y.tolist(), strict=True)
    per_row = [0.0 if t < 0 else kind.twin(row, t) for row, t in rows]
    _close(kind.fn(z, y, **kind.options, reduction="none"), torch.tensor(per_row))


@pytest.mark.parametrize("c", [10, 700])
@pytest.mark.parametrize("name", sorted(KINDS))
def test_in_place_and_forward_only(name: str, c: int) -> None:
    kind = KINDS[name]
    z, y = _logits(100, c, seed=c, finite=kind.finite)
    ref_loss, ref_grad = _run(kind, z, y, fused=False)
    x = z.clone().requires_grad_()
    storage = x.detach().clone()
    loss = kind.fn(storage.requires_grad_(), y, **kind.options, inplace_grad=True)
    (grad,) = torch.autograd.grad(loss, storage)
    _close(loss.detach(), ref_loss)
    _close(grad, ref_grad)
    assert grad.data_ptr() == storage.data_ptr()  # the logits' storage holds the gradient
    with torch.no_grad():
        _close(kind.fn(z, y, **kind.options), ref_loss)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(KINDS))
def test_half_precision_logits_take_float32_copies(name: str, dtype: torch.dtype) -> None:
    kind = KINDS[name]
    z, y = _logits(150, 40, seed=7, finite=kind.finite)
    z = z.to(dtype)
    loss, grad = _run(kind, z, y, weight=_weight(40))
    assert _native.status()[f"last {kind.family}"] == "native"
    ref_loss, ref_grad = _run(kind, z.float(), y, weight=_weight(40), fused=False)
    assert grad.dtype == dtype and loss.dtype == torch.float32
    _close(loss, ref_loss)
    _close(grad.float(), ref_grad, rtol=1e-2)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_other_inputs_run_the_composition(name: str) -> None:
    """float64, spatial positions (CPU) and ``fused=False`` run the composition, and the
    status says so; gradcheck passes through that path."""
    kind = KINDS[name]
    z, y = _logits(4, 5, seed=1, finite=True)
    kind.fn(z, y, **kind.options)
    assert _native.status()[f"last {kind.family}"] == "native"
    x = z.double().requires_grad_()
    w = _weight(5).double()
    assert torch.autograd.gradcheck(lambda v: kind.fn(v, y, **kind.options, weight=w), x)
    assert _native.status()[f"last {kind.family}"] == "torch"
    spatial = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([[0, 4, -100], [1, 2, 3]])
    kind.fn(z, y, **kind.options)
    got = kind.fn(spatial, target, **kind.options, reduction="none")
    assert _native.status()[f"last {kind.family}"] == "torch"
    torch.testing.assert_close(
        got, kind.fn(spatial, target, **kind.options, reduction="none", fused=False)
    )
    # where the composition runs, inplace_grad writes nothing, and a weight that needs a
    # gradient (which the kernels do not compute) gets one
    logits = z.double().requires_grad_()
    before = logits.detach().clone()
    kind.fn(logits, y, **kind.options, inplace_grad=True).backward()
    assert torch.equal(logits.detach(), before)
    grads = []
    for fused in (True, False):
        trained = _weight(5).requires_grad_()
        kind.fn(z, y, **kind.options, weight=trained, fused=fused).backward()
        grads.append(trained.grad)
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0] is not None and bool(grads[0].abs().sum() > 0)


@pytest.mark.parametrize("c", [10, 100])
@pytest.mark.parametrize("name", sorted(KINDS))
def test_nan_stays_in_its_row(name: str, c: int) -> None:
    kind = KINDS[name]
    z, y = _logits(80, c, seed=3, finite=True)
    z[7, 0] = math.nan
    loss, grad = _run(kind, z, y, reduction="none")
    others = torch.ones(80, dtype=torch.bool)
    others[7] = False
    assert torch.isnan(grad[7]).all() and torch.isnan(loss[7])
    assert torch.isfinite(grad[others]).all() and torch.isfinite(loss[others]).all()


def test_threads_split_rows_without_changing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native_rows, "GRAIN_ELEMENTS", 1 << 12)
    before = torch.get_num_threads()
    try:
        for c in (10, 300):
            z, y = _logits(1000, c, seed=11, finite=True)
            for kind in KINDS.values():
                out = []
                for threads in (1, 2):
                    torch.set_num_threads(threads)
                    out.append(_run(kind, z, y, reduction="none"))
                assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    finally:
        torch.set_num_threads(before)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 70),
    classes=st.integers(1, 90),
    name=st.sampled_from(sorted(KINDS)),
    spread=st.floats(0.1, 8.0),
    seed=st.integers(0, 2**16),
)
def test_property_native_equals_float64(
    rows: int, classes: int, name: str, spread: float, seed: int
) -> None:
    kind = KINDS[name]
    g = torch.Generator().manual_seed(seed)
    z = spread * torch.randn(rows, classes, generator=g)
    y = torch.randint(0, classes, (rows,), generator=g)
    loss, grad = _run(kind, z, y, reduction="none")
    ref_loss, ref_grad = _run(kind, z.double(), y, reduction="none", fused=False)
    _close(loss, ref_loss, rtol=5e-5)
    _close(grad, ref_grad, rtol=5e-5)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_switch_errors(name: str) -> None:
    kind = KINDS[name]
    z, y = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(TypeError, match=r"^`fused` must be a bool, got 1$"):
        kind.fn(z, y, **kind.options, fused=1)
    with pytest.raises(
        ValueError, match=r"^`inplace_grad` must be False when fused=False, got True$"
    ):
        kind.fn(z, y, **kind.options, fused=False, inplace_grad=True)


@pytest.mark.parametrize("c", [10, 300])
def test_tied_maxima_and_gaps_at_the_margin(c: int) -> None:
    """Integer logits: tied maxima share the max's gradient evenly (as ``torch.amax``'s), and
    gaps exactly at MbLS's margin are not penalised (``relu'(0) = 0``)."""
    z = torch.randint(-2, 3, (70, c), generator=torch.Generator().manual_seed(c)).float()
    z[0] = 0.0  # a zero row: every class ties, and LogitNorm's norm is 0
    y = torch.randint(0, c, (70,), generator=torch.Generator().manual_seed(1))
    for kind, options in (
        (max_suppression_loss, {"alpha": 0.3}),
        (margin_label_smoothing_loss, {"alpha": 0.2, "margin": 1.0}),
        (logit_norm_loss, {"temperature": 0.5}),
    ):
        x = z.clone().requires_grad_()
        (grad,) = torch.autograd.grad(kind(x, y, **options), x)
        x64 = z.double().requires_grad_()
        (ref,) = torch.autograd.grad(kind(x64, y, **options, fused=False), x64)
        _close(grad, ref)


def test_chunks_of_converted_rows_read_their_own_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 logits are converted in chunks of about 100 rows, split over two threads: every
    piece must read its own rows' weights and labels."""
    from smoothlab.losses import _fused

    monkeypatch.setattr(_fused, "GRAIN_ELEMENTS", 1 << 12)
    monkeypatch.setattr(_native_rows, "GRAIN_ELEMENTS", 1 << 10)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        z, y = _logits(500, 37, seed=13, finite=True)
        z = z.bfloat16()
        for name, kind in KINDS.items():
            loss, grad = _run(kind, z, y, weight=_weight(37), reduction="none")
            ref_loss, ref_grad = _run(
                kind, z.float(), y, weight=_weight(37), reduction="none", fused=False
            )
            _close(loss, ref_loss, name)
            _close(grad.float(), ref_grad, name, rtol=1e-2)
    finally:
        torch.set_num_threads(before)
