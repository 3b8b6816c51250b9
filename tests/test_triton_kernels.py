"""The Triton row kernel (``smoothlab/_triton``) equals the composition (``fused=False``).

Every case runs on one ``device``: ``"cpu"`` in Triton's interpreter, or ``"cuda"`` (marked
``cuda``; skipped without a GPU). Triton picks its interpreter when it is first imported, so the
interpreter cases run in a subprocess with ``TRITON_INTERPRET=1`` (``test_interpreter_suite``);
this process, and every other test file, never sees the variable. The interpreter is slow: the
shapes are tiny, and ``MAX_BLOCK`` is shrunk so that 37 classes take three column blocks (the
online log-sum-exp across blocks, a partial last block).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from triton_compile import DEVICES, HAS_CUDA, INTERPRETED, rows_device, run_interpreter_suite

from smoothlab import _triton
from smoothlab.losses import (
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
    linear,
    linear_confidence_penalty_loss,
    linear_label_relaxation_loss,
    linear_label_smoothing_cross_entropy,
)
from smoothlab.losses._common import prepare
from smoothlab.losses._jobs import index_job

Loss = Callable[..., torch.Tensor]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The device of a case, with the Triton path switched on and a spy on its launches."""
    yield from rows_device(request.param, monkeypatch)


def _data(
    n: int, c: int, device: str, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(n, c, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    return z.to(device=device, dtype=dtype), y.to(device)


def _fused(fn: Loss, z: torch.Tensor, *args: object, **kwargs: object) -> tuple[torch.Tensor, ...]:
    """(loss, grad) of the fused path on ``z`` (the Triton kernel on the case's device)."""
    x = z.detach().clone().requires_grad_()
    loss = fn(x, *args, **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _reference(
    fn: Loss, z: torch.Tensor, *args: object, **kwargs: object
) -> tuple[torch.Tensor, ...]:
    """(loss, grad) of the composition in float64 on the CPU."""
    cpu = [a.detach().cpu().double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a.cpu() if isinstance(a, torch.Tensor) else a for a in args]  # fmt: skip
    kw = {k: v.cpu().double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    x = z.detach().cpu().double().requires_grad_()
    loss = fn(x, *cpu, fused=False, **kw)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _check(fn: Loss, z: torch.Tensor, *args: object, tol: float = 2e-5, **kwargs: object) -> None:
    """The Triton loss and gradient against the float64 composition (NaN where it is NaN)."""
    loss, grad = _fused(fn, z, *args, **kwargs)
    ref_loss, ref_grad = _reference(fn, z, *args, **kwargs)
    assert loss.dtype == torch.float32
    assert grad.dtype == z.dtype and grad.device == z.device
    torch.testing.assert_close(loss.cpu().double(), ref_loss, rtol=tol, atol=tol, equal_nan=True)
    torch.testing.assert_close(grad.cpu().double(), ref_grad, rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("rate", [0.0, 0.1, -0.3])
def test_uniform_and_negative_smoothing(device: str, rate: float, reduction: str) -> None:
    z, y = _data(6, 37, device)
    _check(label_smoothing_cross_entropy, z, y, rate, reduction=reduction)


def test_equals_pytorch_label_smoothing(device: str) -> None:
    z, y = _data(5, 37, device)
    ours = label_smoothing_cross_entropy(z, y, 0.2)
    torch.testing.assert_close(
        ours, torch.nn.functional.cross_entropy(z, y, label_smoothing=0.2), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("weighting", ["pytorch", "example"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weights_and_ignore_index(device: str, weighting: str, reduction: str) -> None:
    z, y = _data(7, 37, device, seed=1)
    y[2] = y[5] = -100
    weight = torch.rand(37, generator=torch.Generator().manual_seed(2)).to(device) + 0.5
    kwargs = {"weight": weight, "weighting": weighting, "reduction": reduction}
    _check(label_smoothing_cross_entropy, z, y, 0.15, **kwargs)


def test_everything_ignored(device: str) -> None:
    z, y = _data(3, 37, device)
    y[:] = 7
    _check(label_smoothing_cross_entropy, z, y, 0.1, ignore_index=7, reduction="sum")
    loss = label_smoothing_cross_entropy(z, y, 0.1, ignore_index=7)
    assert torch.isnan(loss)  # a mean over nothing, as in PyTorch


@pytest.mark.parametrize("exclusive", [False, True])
def test_class_prior(device: str, exclusive: bool) -> None:
    z, y = _data(6, 37, device, seed=3)
    prior = torch.softmax(torch.randn(37, generator=torch.Generator().manual_seed(4)), 0)
    weight = torch.linspace(0.5, 2.0, 37, device=device)
    kwargs = {"prior": prior.to(device), "exclusive": exclusive, "weight": weight}
    _check(label_smoothing_cross_entropy, z, y, 0.3, **kwargs)


@pytest.mark.parametrize("rate", [0.4, -0.2])
def test_teacher_prior(device: str, rate: float) -> None:
    z, y = _data(6, 37, device, seed=5)
    teacher = torch.softmax(torch.randn(6, 37, generator=torch.Generator().manual_seed(6)), 1)
    _check(label_smoothing_cross_entropy, z, y, rate, prior=teacher.to(device))


@pytest.mark.parametrize("prior", ["uniform", "class", "example"])
def test_probability_targets(device: str, prior: str) -> None:
    z, _ = _data(5, 37, device, seed=7)
    g = torch.Generator().manual_seed(8)
    t = torch.softmax(torch.randn(5, 37, generator=g), 1).to(device)
    pi = {
        "uniform": None,
        "class": torch.softmax(torch.randn(37, generator=g), 0).to(device),
        "example": torch.softmax(torch.randn(5, 37, generator=g), 1).to(device),
    }[prior]
    weight = torch.linspace(0.5, 1.5, 37, device=device)
    _check(label_smoothing_cross_entropy, z, t, 0.2, prior=pi, weight=weight, reduction="sum")


def test_minus_inf_logits(device: str) -> None:
    """Masked classes: -inf logits with no target mass add exactly 0 (loss and gradient)."""
    z, y = _data(6, 37, device, seed=9)
    z[:, 30:] = -torch.inf
    y = y % 30
    prior = torch.cat([torch.full((30,), 1 / 30), torch.zeros(7)]).to(device)
    _check(label_smoothing_cross_entropy, z, y, 0.2, prior=prior)
    _check(label_smoothing_cross_entropy, z, y, 0.0)
    _check(confidence_penalty_loss, z, y, 0.3)
    _check(label_relaxation_loss, z, y, 0.2)
    z[0] = -torch.inf  # a row with no finite logit: NaN, as the composition
    _check(label_smoothing_cross_entropy, z, y, 0.0, reduction="none")


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_relaxation(device: str, reduction: str) -> None:
    z, y = _data(8, 37, device, seed=10)
    z[0, y[0]] += 40.0  # inside the credal set: loss and gradient exactly 0
    y[3] = -100
    weight = torch.linspace(0.5, 2.0, 37, device=device)
    _check(label_relaxation_loss, z, y, 0.3, weight=weight, reduction=reduction)


@pytest.mark.parametrize("threshold", [None, 2.5])
def test_confidence_penalty(device: str, threshold: float | None) -> None:
    z, y = _data(8, 37, device, seed=11)
    z = z / 3  # entropies around the threshold, both sides of the hinge
    y[1] = -100
    weight = torch.linspace(0.5, 2.0, 37, device=device)
    _check(confidence_penalty_loss, z, y, 0.4, threshold=threshold, weight=weight)


def test_confidence_penalty_soft_targets(device: str) -> None:
    z, _ = _data(5, 37, device, seed=12)
    t = torch.softmax(torch.randn(5, 37, generator=torch.Generator().manual_seed(13)), 1)
    weight = torch.linspace(0.5, 1.5, 37, device=device)
    _check(confidence_penalty_loss, z, t.to(device), 0.3, threshold=3.0, weight=weight)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision(device: str, dtype: torch.dtype) -> None:
    """Half logits: fp32 maths (the loss to fp32 rounding), the gradient rounded once."""
    z, y = _data(6, 37, device, seed=14, dtype=dtype)
    z[0, y[0]] += 12.0  # p_y = 1 - 1e-5: p_y - 1 would round to 0 in half precision
    loss, grad = _fused(label_smoothing_cross_entropy, z, y, -0.2, reduction="sum")
    ref_loss, ref_grad = _reference(label_smoothing_cross_entropy, z, y, -0.2, reduction="sum")
    assert grad.dtype == dtype
    torch.testing.assert_close(loss.double().cpu(), ref_loss, rtol=1e-5, atol=1e-5)
    # the true-class entry p_y - 1 + r / C is computed in fp32: one rounding from the truth
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(grad.cpu().double(), ref_grad, rtol=eps, atol=1e-7)
    assert abs(float(grad[0, y[0]]) - float(ref_grad[0, y[0]])) <= eps * abs(
        float(ref_grad[0, y[0]])
    )


def test_wide_rows_full_blocks(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """9000 bf16 classes in blocks of the real width (4096): two full blocks and a partial one."""
    from smoothlab._triton import rows

    monkeypatch.setattr(rows, "MAX_BLOCK", 4096)
    z, y = _data(3, 9000, device, seed=23, dtype=torch.bfloat16)
    loss, grad = _fused(label_smoothing_cross_entropy, z, y, -0.1, reduction="sum")
    ref_loss, ref_grad = _reference(label_smoothing_cross_entropy, z, y, -0.1, reduction="sum")
    torch.testing.assert_close(loss.double().cpu(), ref_loss, rtol=1e-5, atol=1e-5)
    eps = torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(grad.cpu().double(), ref_grad, rtol=eps, atol=1e-9)


def test_inplace_grad_and_strides(device: str) -> None:
    z, y = _data(6, 37, device, seed=15)
    ref_loss, ref_grad = _reference(label_smoothing_cross_entropy, z, y, 0.1)
    x = z.clone().requires_grad_()
    buffer = x.detach()
    loss = label_smoothing_cross_entropy(x, y, 0.1, inplace_grad=True)
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(grad.cpu().double(), ref_grad, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(buffer, grad)  # the logits' storage now holds the gradient
    torch.testing.assert_close(loss.double().cpu(), ref_loss, rtol=2e-5, atol=2e-5)
    _check(label_smoothing_cross_entropy, z.t().contiguous().t(), y, 0.1)  # column-major
    wide = torch.cat([z, z], 1).requires_grad_()
    loss = label_smoothing_cross_entropy(wide[:, ::2], y, 0.1)  # a column stride of 2
    (grad,) = torch.autograd.grad(loss, wide)
    ref_loss, ref_grad = _reference(label_smoothing_cross_entropy, wide[:, ::2], y, 0.1)
    torch.testing.assert_close(loss.double().cpu(), ref_loss, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(grad[:, ::2].cpu().double(), ref_grad, rtol=2e-5, atol=2e-5)
    assert not grad[:, 1::2].any()


def test_spatial_logits(device: str) -> None:
    """``(N, C, d1, d2)`` logits: one program per position, class stride d1 d2."""
    g = torch.Generator().manual_seed(24)
    z = (3 * torch.randn(3, 37, 2, 2, generator=g)).to(device)
    y = torch.randint(0, 37, (3, 2, 2), generator=g).to(device)
    y[0, 1, 0] = -100
    teacher = torch.softmax(torch.randn(3, 37, 2, 2, generator=g), 1).to(device)
    weight = torch.linspace(0.5, 2.0, 37, device=device)
    _check(label_smoothing_cross_entropy, z, y, -0.2, weight=weight, reduction="none")
    _check(label_smoothing_cross_entropy, z, y, 0.3, prior=teacher)
    _check(label_smoothing_cross_entropy, z, teacher, 0.1, weight=weight, reduction="sum")
    _check(label_relaxation_loss, z, y, 0.3)
    _check(confidence_penalty_loss, z, teacher, 0.2, threshold=3.0)
    _check(
        label_smoothing_cross_entropy,
        z.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2),
        y,
        0.1,
    )


def test_few_classes_unbatched_and_forward_only(device: str) -> None:
    z, y = _data(9, 5, device, seed=16)  # few classes: the gradient buffer is class-major
    _check(confidence_penalty_loss, z, y, 0.2, reduction="none")
    _check(label_smoothing_cross_entropy, z[0], y[0], 0.1)
    with torch.no_grad():
        loss = label_smoothing_cross_entropy(z, y, 0.1, reduction="none")
    torch.testing.assert_close(
        loss.double().cpu(),
        _reference(label_smoothing_cross_entropy, z, y, 0.1, reduction="none")[0],
    )


HEADS = {
    # a z-loss keeps the smoothing head on its chunks; without one it runs the logits-free
    # kernel (tests/test_triton_cce.py)
    "smoothing": (
        lambda h, w, y, b: linear_label_smoothing_cross_entropy(
            h, w, y, bias=b, smoothing=-0.2, lse_square_scale=1e-2
        ),
        lambda z, y: label_smoothing_cross_entropy(z, y, -0.2, fused=False, lse_square_scale=1e-2),
    ),
    "relaxation": (
        lambda h, w, y, b: linear_label_relaxation_loss(h, w, y, bias=b, alpha=0.2),
        lambda z, y: label_relaxation_loss(z, y, 0.2, fused=False),
    ),
    "penalty": (
        lambda h, w, y, b: linear_confidence_penalty_loss(h, w, y, bias=b, threshold=3.0),
        lambda z, y: confidence_penalty_loss(z, y, threshold=3.0, fused=False),
    ),
}


@pytest.mark.parametrize("head", list(HEADS))
def test_linear_heads(device: str, head: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks of a fused linear head (3 rows each here) run the kernel; dh, dW, db exact."""
    monkeypatch.setattr(linear, "LINEAR_CHUNK_BYTES", 3 * 37 * 4)
    g = torch.Generator().manual_seed(20)
    h, w, b = (torch.randn(*shape, generator=g) for shape in ((8, 6), (37, 6), (37,)))
    y = torch.randint(0, 37, (8,), generator=g)
    y[4] = -100
    fused, composition = HEADS[head]
    inputs = [t.to(device).requires_grad_() for t in (h, w, b)]
    loss = fused(inputs[0], inputs[1], y.to(device), inputs[2])
    grads = torch.autograd.grad(loss, inputs)
    exact = [t.double().requires_grad_() for t in (h, w, b)]
    ref = composition(torch.nn.functional.linear(*exact), y)
    ref_grads = torch.autograd.grad(ref, exact)
    torch.testing.assert_close(loss.double().cpu(), ref.detach(), rtol=2e-5, atol=2e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.double().cpu(), want, rtol=2e-5, atol=2e-5)


def test_row_offsets(device: str) -> None:
    """Rows ``start:`` of a batch (a linear head's chunk) read their own per-row coefficients."""
    from smoothlab._triton import rows

    z, y = _data(6, 37, device, seed=21)
    y[1] = -100
    teacher = torch.softmax(torch.randn(6, 37, generator=torch.Generator().manual_seed(22)), 1)
    weight = torch.linspace(0.5, 2.0, 37, device=device)
    batch = prepare(z, y, weight=weight, upcast=False)
    job = index_job(batch, 0.2, teacher.to(device), False, "example")
    assert job.index is not None and job.valid is not None
    whole, g = torch.empty_like(z), torch.empty_like(z)
    want = rows.run_rows(job.native, z, whole, job.index, job.valid, 1.0)
    got = [
        rows.run_rows(
            job.native, z[lo:hi], g[lo:hi], job.index[lo:hi], job.valid[lo:hi], 1.0, start=lo
        )
        for lo, hi in ((0, 4), (4, 6))
    ]
    torch.testing.assert_close(torch.cat(got), want, rtol=0, atol=0)
    torch.testing.assert_close(g, whole, rtol=0, atol=0)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.integers(1, 4),
    classes=st.integers(2, 40),
    rate=st.floats(-1.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_smoothing_property(device: str, rows: int, classes: int, rate: float, seed: int) -> None:
    z, y = _data(rows, classes, device, seed=seed)
    _check(label_smoothing_cross_entropy, z, y, rate, tol=5e-5)


@pytest.mark.parametrize("option", ["z-loss", "softcap", "both"])
def test_z_loss_and_softcap(device: str, option: str) -> None:
    """Kernel options beyond the CPU kernels, against their composition in float64."""
    from smoothlab._triton import rows

    z, y = _data(6, 37, device, seed=17)
    zs = 1e-2 if option != "softcap" else 0.0
    cap = 4.0 if option != "z-loss" else None
    job = index_job(prepare(z, y, upcast=False), 0.1, None, False, "pytorch")
    g = torch.empty_like(z)
    loss = rows.run_rows(job.native, z, g, job.index, None, 1.0, lse_square_scale=zs, softcap=cap)
    x = z.detach().cpu().double().requires_grad_()
    capped = x if cap is None else cap * torch.tanh(x / cap)
    ref = label_smoothing_cross_entropy(capped, y.cpu(), 0.1, reduction="none", fused=False)
    ref = ref + zs * torch.logsumexp(capped, 1) ** 2
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(loss.cpu().double(), ref.detach(), rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(g.cpu().double(), ref_grad, rtol=2e-5, atol=2e-5)


@pytest.mark.cuda
@pytest.mark.skipif(INTERPRETED or not HAS_CUDA, reason="needs a CUDA device")
def test_vocabulary_scale_bf16() -> None:
    """The real kernel with its full block width: 64 x 50257 bf16, against float64."""
    pytest.importorskip("triton")
    z, y = _data(64, 50257, "cuda", seed=18, dtype=torch.bfloat16)
    assert _triton.takes(z)
    for rate in (0.1, -0.1):
        loss, grad = _fused(label_smoothing_cross_entropy, z, y, rate)
        ref_loss, ref_grad = _reference(label_smoothing_cross_entropy, z, y, rate)
        torch.testing.assert_close(loss.double().cpu(), ref_loss, rtol=1e-5, atol=1e-5)
        eps = torch.finfo(torch.bfloat16).eps
        torch.testing.assert_close(grad.cpu().double(), ref_grad, rtol=eps, atol=1e-9)


@pytest.mark.skipif(INTERPRETED, reason="this is the interpreter run")
def test_interpreter_suite() -> None:
    """Run this file's cases on CPU tensors in Triton's interpreter, in a subprocess."""
    run_interpreter_suite(__file__, 44)


def test_status_and_backend_say_which_kernels_run() -> None:
    """``_native.status()`` reports Triton; ``Job.backend`` names the kernels of a call."""
    pytest.importorskip("triton")
    from smoothlab import _native

    z, y = _data(3, 37, "cpu")
    job = index_job(prepare(z, y, upcast=False), 0.1, None, False, "pytorch")
    assert job.backend(z) in ("native", "torch")
    with _triton.on_cpu():
        assert job.backend(z) == "triton"
        assert job.backend(z.double()) != "triton"  # float64 stays with PyTorch
    line = _native.status()["triton"]
    if HAS_CUDA:
        assert line.startswith("available (triton ")
    else:
        assert line.startswith("unavailable: no CUDA device (triton ")
