"""The logits-free linear head (``smoothlab/_triton/cce.py``) equals the composition.

Every case runs on one ``device``: ``"cpu"`` in Triton's interpreter (a subprocess with
``TRITON_INTERPRET=1``, ``test_interpreter_suite``), or ``"cuda"`` (marked ``cuda``; skipped
without a GPU). The interpreter's tiles are shrunk to 16 so that 7 rows x 20 hidden -> 37 classes
take three vocabulary tiles in two slices, two hidden slices and a partial row tile. The
reference is ``label_smoothing_cross_entropy(F.linear(h, W, b), ...)`` (``fused=False``) in
float64 with autograd; a loop twin checks it on the values.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from triton_compile import (
    DEVICES,
    HAS_CUDA,
    INTERPRETED,
    Recorder,
    compile_sm90,
    run_interpreter_suite,
)

from smoothlab import _triton
from smoothlab.losses import label_smoothing_cross_entropy

N, H, V = 7, 20, 37


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The device of a case; on the CPU, tiles of 16 and two vocabulary slices."""
    pytest.importorskip("triton")
    from smoothlab._triton import cce

    if request.param == "cpu":
        for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K"):
            monkeypatch.setattr(cce, name, 16)
        monkeypatch.setattr(cce, "SLICES", 2)
    return str(request.param)


def _inputs(
    device: str, dtype: torch.dtype = torch.float32, seed: int = 0, n: int = N, v: int = V
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, H, generator=g)
    w = torch.randn(v, H, generator=g) / 2
    b = torch.randn(v, generator=g)
    y = torch.randint(0, v, (n,), generator=g)
    prior = torch.softmax(torch.randn(v, generator=g), 0)
    return (*(t.to(device, dtype) for t in (h, w, b)), y.to(device), prior.to(device))


def _ours(h, w, y, bias, **kwargs):  # type: ignore[no-untyped-def]
    """(loss, dh, dW, db) of the kernel, the loss summed for the gradients."""
    from smoothlab._triton.cce import linear_smoothing_cross_entropy

    xs = [
        t.detach().clone().requires_grad_() for t in (h, w, *([bias] if bias is not None else []))
    ]
    loss = linear_smoothing_cross_entropy(
        xs[0], xs[1], y, bias=xs[2] if bias is not None else None, **kwargs
    )
    grads = torch.autograd.grad(loss.sum(), xs)
    return loss.detach(), *grads


def _reference(h, w, y, bias, *, smoothing=0.0, prior=None, **kwargs):  # type: ignore[no-untyped-def]
    """(loss, dh, dW, db) of the composition in float64 on the CPU."""
    xs = [
        t.detach().cpu().double().requires_grad_()
        for t in (h, w, *([bias] if bias is not None else []))
    ]
    z = F.linear(xs[0], xs[1], xs[2] if bias is not None else None)
    pi = None if prior is None else prior.cpu().double()
    loss = label_smoothing_cross_entropy(z, y.cpu(), smoothing, prior=pi, fused=False, **kwargs)
    grads = torch.autograd.grad(loss.sum(), xs)
    return loss.detach(), *grads


def _check(h, w, y, bias, tol: float = 2e-5, **kwargs) -> None:  # type: ignore[no-untyped-def]
    got, want = _ours(h, w, y, bias, **kwargs), _reference(h, w, y, bias, **kwargs)
    assert got[0].dtype == torch.float32
    for ours, ref in zip(got, want, strict=True):
        scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
        torch.testing.assert_close(
            ours.cpu().double(), ref, rtol=tol, atol=tol * scale, equal_nan=True
        )


def _loop_twin(h, w, b, y, r: float, pi) -> list[float]:  # type: ignore[no-untyped-def]
    """Per-row losses by the formula, one class at a time, in Python floats."""
    out = []
    for n in range(h.shape[0]):
        z = [
            sum(float(h[n, k]) * float(w[j, k]) for k in range(h.shape[1])) + float(b[j])
            for j in range(w.shape[0])
        ]
        top = max(z)
        lse = top + math.log(sum(math.exp(zj - top) for zj in z))
        q = [
            r * (float(pi[j]) if pi is not None else 1 / len(z)) + (1 - r) * (j == int(y[n]))
            for j in range(len(z))
        ]
        out.append(sum(qj * (lse - zj) for qj, zj in zip(q, z, strict=True)))
    return out


@pytest.mark.parametrize("prior", [False, True])
def test_loop_twin_agrees(device: str, prior: bool) -> None:
    h, w, b, y, pi = _inputs(device, seed=1)
    loss, *_ = _ours(h, w, y, b, smoothing=0.3, prior=pi if prior else None, reduction="none")
    twin = _loop_twin(h.cpu(), w.cpu(), b.cpu(), y.cpu(), 0.3, pi.cpu() if prior else None)
    torch.testing.assert_close(
        loss.cpu().double(), torch.tensor(twin, dtype=torch.float64), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("rate", [0.0, 0.1, -0.3])
@pytest.mark.parametrize("prior", [False, True])
def test_smoothing_and_priors(device: str, rate: float, prior: bool, reduction: str) -> None:
    h, w, b, y, pi = _inputs(device, seed=2)
    _check(h, w, y, b, smoothing=rate, prior=pi if prior else None, reduction=reduction)


def test_without_bias_and_equal_to_pytorch(device: str) -> None:
    from smoothlab._triton.cce import linear_smoothing_cross_entropy

    h, w, _, y, _ = _inputs(device, seed=3)
    _check(h, w, y, None, smoothing=0.2)
    want = F.cross_entropy(F.linear(h, w), y, label_smoothing=0.2)
    torch.testing.assert_close(
        linear_smoothing_cross_entropy(h, w, y, smoothing=0.2), want, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ignore_index(device: str, reduction: str) -> None:
    h, w, b, y, pi = _inputs(device, seed=4)
    y[1] = y[5] = 3 if reduction == "sum" else -100
    kwargs = {"ignore_index": 3} if reduction == "sum" else {}
    _check(h, w, y, b, smoothing=-0.2, prior=pi, reduction=reduction, **kwargs)


def test_everything_ignored(device: str) -> None:
    from smoothlab._triton.cce import linear_smoothing_cross_entropy

    h, w, b, y, _ = _inputs(device, seed=5)
    y[:] = -100
    _check(h, w, y, b, smoothing=0.1, reduction="sum")
    assert torch.isnan(linear_smoothing_cross_entropy(h, w, y, bias=b, smoothing=0.1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision(device: str, dtype: torch.dtype) -> None:
    """Half inputs: fp32 accumulation, the loss to fp32 rounding of the half values' exact loss;
    gradients within two roundings (dz rounded once for the dots, the result once)."""
    h, w, b, y, pi = _inputs(device, dtype, seed=6)
    got = _ours(h, w, y, b, smoothing=-0.1, prior=pi, reduction="sum")
    want = _reference(h, w, y, b, smoothing=-0.1, prior=pi, reduction="sum")
    assert [t.dtype for t in got[1:]] == [dtype] * 3
    torch.testing.assert_close(got[0].cpu().double(), want[0], rtol=1e-5, atol=1e-5)
    eps = torch.finfo(dtype).eps
    for ours, ref in zip(got[1:], want[1:], strict=True):
        scale = float(ref.abs().max())
        assert float((ours.cpu().double() - ref).abs().max()) <= 4 * eps * scale


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.integers(1, 20),
    classes=st.integers(2, 40),
    rate=st.floats(-1.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_property(device: str, rows: int, classes: int, rate: float, seed: int) -> None:
    h, w, b, y, pi = _inputs(device, seed=seed, n=rows, v=classes)
    _check(h, w, y, b, tol=5e-5, smoothing=rate, prior=pi, reduction="none")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_public_head_runs_it(
    device: str, reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``linear_label_smoothing_cross_entropy`` on a Triton device without z-loss or softcap:
    this kernel (the ignored rows dropped first), ``(..., H)`` hidden states, the composition's
    numbers; with a z-loss it keeps its chunked path."""
    from smoothlab import _native
    from smoothlab._triton import cce
    from smoothlab.losses import linear_label_smoothing_cross_entropy as head

    calls: list[int] = []
    run = cce.linear_smoothing_cross_entropy
    monkeypatch.setattr(
        cce, "linear_smoothing_cross_entropy", lambda *a, **k: calls.append(1) or run(*a, **k)
    )
    h, w, b, y, _ = _inputs(device, seed=8, n=8)
    y[3] = -100
    hs, ys = h.view(2, 4, H), y.view(2, 4)
    xs = [t.detach().clone().requires_grad_() for t in (hs, w, b)]
    with _triton.on_cpu() if device == "cpu" else contextlib.nullcontext():
        loss = head(xs[0], xs[1], ys, bias=xs[2], smoothing=-0.2, reduction=reduction)
        assert calls == [1] and _native.status()["last smoothing"] == "triton"
        head(hs, w, ys, bias=b, smoothing=-0.2, lse_square_scale=1e-2)
        assert calls == [1]
    grads = torch.autograd.grad(loss, xs)
    want = _reference(h, w, y, b, smoothing=-0.2, reduction=reduction)
    torch.testing.assert_close(loss.cpu().double(), want[0], rtol=2e-5, atol=2e-5)
    for got, ref in zip(grads, want[1:], strict=True):
        torch.testing.assert_close(got.reshape(ref.shape).cpu().double(), ref, rtol=2e-5, atol=2e-5)


def test_no_rows(device: str) -> None:
    """Zero rows (every target ignored before the kernel): a NaN mean, a zero sum and zero
    gradients, and no launch of an empty grid."""
    h, w, b, y, _ = _inputs(device, seed=9, n=0)
    _check(h, w, y, b, smoothing=0.1, reduction="sum")
    got = _ours(h, w, y, b, smoothing=0.1)
    assert torch.isnan(got[0]) and not got[2].any() and not got[3].any()


@pytest.mark.cuda
@pytest.mark.skipif(INTERPRETED or not HAS_CUDA, reason="needs a CUDA device")
def test_full_tiles_on_the_gpu() -> None:
    """The real tile sizes: 300 x 256 -> 5000 bfloat16, against float64."""
    pytest.importorskip("triton")
    g = torch.Generator().manual_seed(7)
    h = torch.randn(300, 256, generator=g).to("cuda", torch.bfloat16)
    w = (torch.randn(5000, 256, generator=g) / 16).to("cuda", torch.bfloat16)
    y = torch.randint(0, 5000, (300,), generator=g).cuda()
    got, want = _ours(h, w, y, None, smoothing=0.1), _reference(h, w, y, None, smoothing=0.1)
    torch.testing.assert_close(got[0].cpu().double(), want[0], rtol=1e-5, atol=1e-5)
    eps = torch.finfo(torch.bfloat16).eps
    for ours, ref in zip(got[1:], want[1:], strict=True):
        assert float((ours.cpu().double() - ref).abs().max()) <= 4 * eps * float(ref.abs().max())


ERRORS = [
    (
        {"hidden": torch.zeros(2, 3, 4)},
        "`hidden` must be a 2-D float32, bfloat16 or float16 tensor, got",
    ),
    ({"hidden": torch.zeros(2, 4, dtype=torch.float64)}, "`hidden` must be a 2-D float32"),
    ({"weight": torch.zeros(5, 3)}, r"`weight` must be \(V, 4\) of dtype torch.float32, got"),
    ({"weight": torch.zeros(5, 4).half()}, r"`weight` must be \(V, 4\) of dtype"),
    ({"bias": torch.zeros(4)}, r"`bias` must be \(5,\) of dtype torch.float32, got"),
    (
        {"target": torch.zeros(3, dtype=torch.int64)},
        r"`target` must be \(2,\) int64 class indices, got",
    ),
    ({"target": torch.zeros(2)}, r"`target` must be \(2,\) int64 class indices"),
    ({"prior": torch.ones(4) / 4}, r"`prior` must be a class distribution of shape \(5,\), got"),
    ({"reduction": "avg"}, "`reduction` must be 'mean', 'sum' or 'none', got 'avg'"),
]


@pytest.mark.parametrize(("change", "message"), ERRORS)
def test_errors(change: dict[str, object], message: str) -> None:
    pytest.importorskip("triton")
    from smoothlab._triton.cce import linear_smoothing_cross_entropy

    args: dict[str, object] = {
        "hidden": torch.zeros(2, 4), "weight": torch.zeros(5, 4), "target": torch.zeros(2, dtype=torch.int64),
        "bias": None, "prior": None, "reduction": "mean",
    }  # fmt: skip
    args.update(change)
    with pytest.raises(ValueError, match=message):
        linear_smoothing_cross_entropy(**args)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="compiles for a GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("extras", [False, True])
def test_kernels_compile_for_the_gpu(
    dtype: torch.dtype, extras: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forward and backward kernels at the real tile sizes, with and without bias and prior."""
    pytest.importorskip("triton.backends.nvidia")
    from smoothlab._triton import cce

    kernels = {}
    for name in ("_forward_kernel", "_backward_kernel"):
        kernels[name] = (getattr(cce, name), Recorder())
        monkeypatch.setattr(cce, name, kernels[name][1])
    h, w, b, y, pi = _inputs("cpu", dtype)
    loss = cce.linear_smoothing_cross_entropy(
        h.requires_grad_(),
        w,
        y,
        bias=b if extras else None,
        smoothing=0.1,
        prior=pi if extras else None,
    )
    loss.backward()
    for kernel, recorder in kernels.values():
        assert len(recorder.launches) == 1
        compile_sm90(kernel, *recorder.launches[0])


@pytest.mark.skipif(INTERPRETED, reason="this is the interpreter run")
def test_interpreter_suite() -> None:
    """Run this file's cases on CPU tensors in Triton's interpreter, in a subprocess."""
    run_interpreter_suite(__file__, 30)
