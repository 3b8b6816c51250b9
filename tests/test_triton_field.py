"""The Triton kernels of focal loss, FLSD, GCE, SCE (the row kernel of ``smoothlab._triton.rows``)
and the logit regularisers (``smoothlab._triton.rows_family``) equal their composition.

As ``test_triton_kernels.py``: every case runs on ``"cpu"`` in Triton's interpreter (a
subprocess with ``TRITON_INTERPRET=1``, ``test_interpreter_suite``) or on ``"cuda"`` (skipped
without a GPU), at tiny shapes with ``MAX_BLOCK`` shrunk to 16 so that 37 classes take three
column blocks; each launch is also compiled for sm_90 without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from test_triton_kernels import _check, _data, _fused, _reference
from triton_compile import (
    DEVICES,
    INTERPRETED,
    Recorder,
    compile_sm90,
    rows_device,
    run_interpreter_suite,
)

from smoothlab import _native, _triton
from smoothlab.losses.focal import focal_loss, sample_dependent_focal_loss
from smoothlab.losses.regularized import (
    logit_norm_loss,
    logit_penalty_loss,
    margin_label_smoothing_loss,
    max_suppression_loss,
)
from smoothlab.losses.robust import generalized_cross_entropy, symmetric_cross_entropy

KINDS: dict[str, tuple[Callable[..., torch.Tensor], dict[str, Any]]] = {
    "focal": (focal_loss, {"gamma": 2.0}),
    "flsd": (sample_dependent_focal_loss, {}),
    "gce": (generalized_cross_entropy, {"q": 0.4}),
    "sce": (symmetric_cross_entropy, {"alpha": 0.3, "beta": 0.7}),
    "logit-penalty": (logit_penalty_loss, {"beta": 0.05}),
    "maxsup": (max_suppression_loss, {"alpha": 0.3}),
    "mbls": (margin_label_smoothing_loss, {"margin": 2.0, "alpha": 0.2}),
    "logit-norm": (logit_norm_loss, {"temperature": 0.2}),
}
#: Which kernel serves each kind.
KERNELS = {name: "_rows_kernel" for name in ("focal", "flsd", "gce", "sce")}


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The device of a case, with the Triton path switched on and a spy on its launches."""
    yield from rows_device(request.param, monkeypatch)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_weights_ignore_index_and_reductions(device: str, name: str) -> None:
    fn, options = KINDS[name]
    z, y = _data(7, 37, device, seed=1)
    z[0, y[0]] += 9.0  # a confident row (p_y near 1)
    y[2] = y[5] = -100
    weight = torch.linspace(0.5, 2.0, 37, device=device)
    for reduction in ("mean", "sum", "none"):
        _check(fn, z, y, weight=weight, reduction=reduction, **options)
    _check(fn, z, y, **options)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_spatial_logits_and_the_status(device: str, name: str) -> None:
    """``(N, C, d1, d2)`` logits, one program per position; the status names Triton."""
    fn, options = KINDS[name]
    g = torch.Generator().manual_seed(24)
    z = (3 * torch.randn(3, 37, 2, 2, generator=g)).to(device)
    y = torch.randint(0, 37, (3, 2, 2), generator=g).to(device)
    y[0, 1, 0] = -100
    _check(fn, z, y, reduction="none", **options)
    assert "triton" in _native.status().values()


def test_ties_and_margin_border(device: str) -> None:
    """Integer logits: tied maxima (MaxSup, MbLS), gaps exactly at the margin, a zero row."""
    g = torch.Generator().manual_seed(3)
    z = torch.randint(-2, 3, (6, 37), generator=g).float()
    z[0] = 0.0
    y = torch.randint(0, 37, (6,), generator=g)
    z, y = z.to(device), y.to(device)
    _check(max_suppression_loss, z, y, alpha=0.3)
    _check(margin_label_smoothing_loss, z, y, margin=1.0, alpha=0.2)
    _check(logit_norm_loss, z, y, temperature=0.5)


@pytest.mark.parametrize("name", ["focal", "gce", "maxsup", "logit-norm"])
def test_bf16_inplace_and_forward_only(device: str, name: str) -> None:
    fn, options = KINDS[name]
    z, y = _data(5, 37, device, seed=14, dtype=torch.bfloat16)
    loss, grad = _fused(fn, z, y, reduction="sum", **options)
    ref_loss, ref_grad = _reference(fn, z, y, reduction="sum", **options)
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss.double().cpu(), ref_loss, rtol=1e-5, atol=1e-5)
    eps = torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(grad.double().cpu(), ref_grad, rtol=eps, atol=1e-6)
    x = z.float().requires_grad_()
    storage = x.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(fn(storage, y, inplace_grad=True, **options), storage)
    assert grad.data_ptr() == storage.data_ptr()
    ref_loss, ref_grad = _reference(fn, x, y, **options)
    torch.testing.assert_close(grad.double().cpu(), ref_grad, rtol=2e-5, atol=2e-5)
    with torch.no_grad():
        loss = fn(x, y, **options)
    torch.testing.assert_close(loss.double().cpu(), ref_loss, rtol=2e-5, atol=2e-5)


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="compiles for a GPU")
@pytest.mark.parametrize("name", sorted(KINDS))
def test_kernels_compile_for_the_gpu(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kind's launch (at the real block width) compiles to PTX and a cubin for sm_90."""
    pytest.importorskip("triton.backends.nvidia")
    from smoothlab._triton import rows, rows_family

    module = rows if name in KERNELS else rows_family
    attribute = KERNELS.get(name, "_logit_kernel")
    kernel, recorder = getattr(module, attribute), Recorder()
    monkeypatch.setattr(module, attribute, recorder)
    fn, options = KINDS[name]
    z, y = _data(4, 5000, "cpu")
    y[1] = -100
    with _triton.on_cpu():
        fn(z.requires_grad_(), y, weight=torch.rand(5000) + 0.5, **options).backward()
    assert len(recorder.launches) == 1
    compile_sm90(kernel, *recorder.launches[0])


@pytest.mark.skipif(INTERPRETED, reason="this is the interpreter run")
def test_interpreter_suite() -> None:
    """Run this file's cases on CPU tensors in Triton's interpreter, in a subprocess."""
    run_interpreter_suite(__file__, 21)
