"""The compiled row kernels (``smoothlab/_native/losses.c``) against the PyTorch kernels.

Every case runs twice: with the native kernels (the default on float32 ``(N, C)`` logits when a
C compiler exists) and inside ``smoothlab._native.disabled()``, which runs the PyTorch fused
kernels that ``tests/test_fast_losses.py`` checks against the composition. Class counts cross
both kernel shapes (``C <= 64``: 64-row blocks transposed in 8 x 8 tiles, with masked tile loads
below 8 classes, an overlapping last tile when 8 does not divide ``C``, and partial last blocks;
wide rows, with sums over blocks of 1024 classes) and row counts cross the block size.
"""

from __future__ import annotations

import ctypes
import itertools
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from smoothlab import _native
from smoothlab.losses import (
    _fused,
    _native_rows,
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
    linear_confidence_penalty_loss,
)

pytestmark = pytest.mark.skipif(
    _native_rows.kernels() is None, reason=f"native kernels unavailable: {_native.status()}"
)

Loss = Callable[[torch.Tensor], torch.Tensor]


def _prior(c: int) -> torch.Tensor:
    return torch.softmax(torch.randn(c, generator=torch.Generator().manual_seed(c)), 0)


def _weight(c: int) -> torch.Tensor:
    return torch.rand(c, generator=torch.Generator().manual_seed(c + 1)) + 0.1


def _rows_of_probs(n: int, c: int, seed: int) -> torch.Tensor:
    """Per-example distributions with exact zeros (so ``q_j z_j`` with ``z_j = -inf`` is 0)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.softmax(2 * torch.randn(n, c, generator=g), 1)
    if c > 2:
        q[:, 1] = 0.0
        q = q / q.sum(1, keepdim=True)
    return q


def _cases(c: int, y: torch.Tensor) -> dict[str, Loss]:
    w, pi = _weight(c), _prior(c)
    n = int(y.shape[0])
    teacher, soft = _rows_of_probs(n, c, 1), _rows_of_probs(n, c, 2)
    ls, lr, cp = label_smoothing_cross_entropy, label_relaxation_loss, confidence_penalty_loss
    cases: dict[str, Loss] = {
        "ls": lambda z: ls(z, y, smoothing=0.1),
        "ls-none": lambda z: ls(z, y, smoothing=0.2, reduction="none"),
        "nls-weight": lambda z: ls(z, y, smoothing=-0.5, weight=w),
        "ls-weight-example": lambda z: ls(z, y, smoothing=0.3, weight=w, weighting="example"),
        "ls-prior-sum": lambda z: ls(z, y, smoothing=0.2, prior=pi, reduction="sum"),
        "ls-exclusive": lambda z: ls(z, y, smoothing=0.3, prior=pi, exclusive=True),
        "ls-teacher": lambda z: ls(z, y, smoothing=0.4, prior=teacher),
        "ls-teacher-weight-none": lambda z: ls(
            z, y, smoothing=0.4, prior=teacher, weight=w, reduction="none"
        ),
        "soft": lambda z: ls(z, soft, smoothing=0.0),
        "soft-ls-weight-sum": lambda z: ls(z, soft, smoothing=0.2, weight=w, reduction="sum"),
        "soft-prior": lambda z: ls(z, soft, smoothing=0.3, prior=pi),
        "soft-teacher-none": lambda z: ls(z, soft, smoothing=0.3, prior=teacher, reduction="none"),
        "ce": lambda z: ls(z, y, smoothing=0.0),
        "lr": lambda z: lr(z, y, alpha=0.1),
        "lr-weight-none": lambda z: lr(z, y, alpha=0.4, weight=w, reduction="none"),
        "cp": lambda z: cp(z, y, beta=0.1),
        "cp-hinge-weight": lambda z: cp(z, y, beta=0.5, threshold=1.0, weight=w),
        "cp-none": lambda z: cp(z, y, beta=2.0, reduction="none"),
        "cp-soft": lambda z: cp(z, soft, beta=0.3),
        "cp-soft-hinge-weight-none": lambda z: cp(
            z, soft, beta=0.5, threshold=1.0, weight=w, reduction="none"
        ),
    }
    if c == 1:  # exclusive smoothing needs a prior below 1 on the true class
        del cases["ls-exclusive"]
    if c > 2:  # exclusive smoothing with a per-example prior (every pi_y < 1 here)
        cases["ls-teacher-exclusive"] = lambda z: ls(
            z, y, smoothing=0.3, prior=teacher, exclusive=True
        )
    return cases


def _run(fn: Loss, z: torch.Tensor, *, native: bool, inplace: bool = False):  # type: ignore[no-untyped-def]
    x = z.detach().clone().requires_grad_()
    if native:
        loss = fn(x)
    else:
        with _native.disabled():
            loss = fn(x)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad


def _close(
    got: torch.Tensor, want: torch.Tensor, msg: str = "", rtol: float = 2e-5, floor: float = 0.0
) -> None:
    """Equal to float32 rounding of the largest entry (at least ``floor``): both kernels round
    differently, and losses and the penalty's gradient cancel terms of the logits' size."""
    scale = float(want.abs().nan_to_num(posinf=0.0, neginf=0.0).max()) if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(scale, floor, 1e-30), msg=msg)


def _logits(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = 4 * torch.randn(n, c, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    if n > 3:
        y[3] = -100  # ignore_index
    if n > 5 and c > 2:
        z[5, (int(y[5]) + 1) % c] = -math.inf  # an impossible class (not the target)
    return z, y


@pytest.mark.parametrize(
    ("n", "c"),
    [
        (1, 1),
        (3, 2),
        (130, 2),
        (70, 3),
        (128, 7),
        (129, 8),
        (64, 10),
        (200, 10),
        (192, 17),
        (65, 32),
        (130, 33),
        (64, 64),
        (70, 65),
        (9, 2500),
    ],
)
def test_native_equals_torch_kernels(n: int, c: int) -> None:
    z, y = _logits(n, c, seed=n * 1000 + c)
    calls = []
    run = _native_rows.NativeRows.run

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return run(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_native_rows.NativeRows, "run", counted)
        for name, fn in _cases(c, y).items():
            calls.clear()
            loss, grad = _run(fn, z, native=True)
            assert calls, f"{name}: the native kernel did not run"
            ref_loss, ref_grad = _run(fn, z, native=False)
            _close(loss, ref_loss, name, floor=1.0)
            _close(grad, ref_grad, name)


@pytest.mark.parametrize("c", [10, 700])
@pytest.mark.parametrize("kind", ["ls", "lr", "cp"])
def test_in_place_and_forward_only(c: int, kind: str) -> None:
    z, y = _logits(100, c, seed=c)
    fns = {"ls": label_smoothing_cross_entropy, "lr": label_relaxation_loss,
           "cp": confidence_penalty_loss}  # fmt: skip
    fn = fns[kind]
    ref_loss, ref_grad = _run(lambda x: fn(x, y), z, native=False)
    x = z.clone().requires_grad_()
    loss = fn(x.clone(), y, inplace_grad=True)  # the clone's storage becomes the gradient
    (grad,) = torch.autograd.grad(loss, x)
    _close(loss.detach(), ref_loss, floor=1.0)
    _close(grad, ref_grad)
    with torch.no_grad():
        _close(fn(z, y), ref_loss, floor=1.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_take_float32_copies(dtype: torch.dtype) -> None:
    z, y = _logits(150, 40, seed=7)
    z = z.to(dtype)
    for fn in _cases(40, y).values():
        loss, grad = _run(fn, z, native=True)
        ref_loss, ref_grad = _run(fn, z, native=False)
        assert grad.dtype == dtype
        _close(loss, ref_loss, rtol=1e-4, floor=1.0)
        _close(grad.float(), ref_grad.float(), rtol=1e-2)


@pytest.mark.parametrize("native", [True, False])
def test_half_probability_targets_with_a_per_example_prior(native: bool) -> None:
    """bf16 targets mixed with a float32 teacher prior row by row (once a dtype error)."""
    g = torch.Generator().manual_seed(5)
    z = torch.randn(6, 7, generator=g).bfloat16()
    t = torch.softmax(torch.randn(6, 7, generator=g), 1).bfloat16()
    prior = torch.softmax(torch.randn(6, 7, generator=g), 1)

    def fn(x: torch.Tensor, fused: bool = True) -> torch.Tensor:
        return label_smoothing_cross_entropy(x, t, 0.3, prior=prior, fused=fused, reduction="none")

    loss, grad = _run(fn, z, native=native)
    ref_loss, ref_grad = _run(lambda x: fn(x, fused=False), z, native=native)
    _close(loss, ref_loss, floor=1.0)
    _close(grad.float(), ref_grad.float(), rtol=1e-2)


@pytest.mark.parametrize("c", [10, 100])
def test_nan_stays_in_its_row(c: int) -> None:
    z, y = _logits(80, c, seed=3)
    z[5] = 0.0  # no infinite logits here: only the NaN row may be non-finite
    z[7, 0] = math.nan
    for fn in _cases(c, y).values():
        loss, grad = _run(lambda x: fn(x), z, native=True)  # noqa: B023 - called at once
        assert torch.isnan(grad[7]).all()
        others = torch.ones(80, dtype=torch.bool)
        others[7] = False
        assert torch.isfinite(grad[others]).all()
        if loss.dim() == 1:
            assert torch.isnan(loss[7]) and torch.isfinite(loss[others]).all()


def test_threads_split_rows_without_changing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native_rows, "GRAIN_ELEMENTS", 1 << 14)  # split small problems too
    z, y = _logits(4096, 300, seed=11)
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out.append(
                _run(lambda x: confidence_penalty_loss(x, y, reduction="none"), z, native=True)
            )
        assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    finally:
        torch.set_num_threads(before)


def test_prior_rows_follow_chunks_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-example priors and probability targets are read in place by rows split over threads;
    a per-example prior on probability targets is mixed into them chunk by chunk. Every piece
    must read its own rows."""
    monkeypatch.setattr(_fused, "GRAIN_ELEMENTS", 1 << 12)  # chunks of about 220 rows
    monkeypatch.setattr(_native_rows, "GRAIN_ELEMENTS", 1 << 10)  # about 27 rows per thread
    z, y = _logits(1000, 37, seed=12)
    before = torch.get_num_threads()
    cases = _cases(37, y)
    try:
        torch.set_num_threads(2)
        for name in (
            "ls-teacher",
            "ls-teacher-weight-none",
            "soft-ls-weight-sum",
            "soft-teacher-none",
            "cp-soft-hinge-weight-none",
        ):
            loss, grad = _run(cases[name], z, native=True)
            ref_loss, ref_grad = _run(cases[name], z, native=False)
            _close(loss, ref_loss, name, floor=1.0)
            _close(grad, ref_grad, name)
    finally:
        torch.set_num_threads(before)


def test_linear_head_native_equals_torch_kernels() -> None:
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(300, 16, generator=g), torch.randn(50, 16, generator=g)
    y = torch.randint(0, 50, (300,), generator=g)
    grads = []
    for native in (True, False):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        if native:
            loss = linear_confidence_penalty_loss(hh, ww, y, beta=0.3)
        else:
            with _native.disabled():
                loss = linear_confidence_penalty_loss(hh, ww, y, beta=0.3)
        loss.backward()
        grads.append((loss.detach(), hh.grad, ww.grad))
    for a, b in zip(*grads, strict=True):
        _close(a, b)


# ------------------------------------------------------------------- the kernel's exp and log
def _elementwise(name: str, x: torch.Tensor) -> torch.Tensor:
    lib = _native_rows.kernels()
    assert lib is not None
    fn = getattr(lib, name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    x = x.to(torch.float32).contiguous()
    out = torch.empty_like(x)
    fn(x.data_ptr(), out.data_ptr(), x.numel())
    return out


def _ulps(got: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """|got - exact| in units of the float32 spacing at ``exact``."""
    spacing = torch.nextafter(exact.float().abs(), torch.tensor(math.inf)) - exact.float().abs()
    return (got.double() - exact).abs() / spacing.double()


def test_exp_is_within_two_ulps_and_handles_specials() -> None:
    x = torch.linspace(-87.3, 88.7, 2_000_001)
    assert float(_ulps(_elementwise("sl_exp_n", x), torch.exp(x.double())).max()) <= 2.0
    specials = torch.tensor([-math.inf, -200.0, -103.0, 0.0, math.nan])
    out = _elementwise("sl_exp_n", specials)
    assert out[0] == 0 and out[1] == 0 and out[3] == 1 and torch.isnan(out[4])
    assert 0 < float(out[2]) < 1e-44  # subnormal results are not flushed


def test_log_is_within_three_ulps_and_handles_specials() -> None:
    x = torch.logspace(-44, 38, 2_000_001, dtype=torch.float64).float()  # subnormals included
    x = x[x > 0]
    exact = torch.log(x.double())
    err = (_elementwise("sl_log_n", x).double() - exact).abs()
    spacing = torch.nextafter(exact.float().abs(), torch.tensor(math.inf)) - exact.float().abs()
    assert float((err / spacing.double().clamp(min=2.0**-149)).max()) <= 3.0
    out = _elementwise("sl_log_n", torch.tensor([0.0, -1.0, math.inf, math.nan, 1.0]))
    assert out[0] == -math.inf and torch.isnan(out[1]) and out[2] == math.inf
    assert torch.isnan(out[3]) and out[4] == 0


# -------------------------------------------------------------------- building and switching
def _python(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
        check=True, timeout=300,
    )  # fmt: skip
    return done.stdout.strip()


STATUS = "from smoothlab import _native; print(_native.status()['losses'])"


def test_build_goes_to_the_cache_dir_and_is_reused(tmp_path: Path) -> None:
    first = _python(STATUS, SMOOTHLAB_CACHE_DIR=str(tmp_path))
    assert first.startswith(f"loaded {tmp_path / 'native' / 'losses-'}")
    sources = {p.stem for p in Path(_native.__file__).parent.glob("*.c")}
    built = sorted((tmp_path / "native").iterdir())  # status() builds every library
    assert [p.name.split("-")[0] for p in built] == sorted(sources)  # no temporary files left
    built = [p for p in built if p.name.startswith("losses-") and p.suffix == ".so"]
    stamp = built[0].stat().st_mtime_ns
    assert _python(STATUS, SMOOTHLAB_CACHE_DIR=str(tmp_path)) == first
    assert built[0].stat().st_mtime_ns == stamp


def test_switched_off_by_the_environment(tmp_path: Path) -> None:
    out = _python(STATUS, SMOOTHLAB_NATIVE="0", SMOOTHLAB_CACHE_DIR=str(tmp_path))
    assert out == "disabled (SMOOTHLAB_NATIVE=0 or smoothlab._native.disabled())"
    assert not (tmp_path / "native").exists()


def test_a_failed_build_falls_back_to_torch(tmp_path: Path) -> None:
    code = (
        STATUS + "\nimport torch, smoothlab\n"
        "print(float(smoothlab.label_smoothing_cross_entropy(torch.zeros(2, 4), "
        "torch.tensor([0, 1]), smoothing=0.0)))"
    )
    out = _python(code, CC="false", SMOOTHLAB_CACHE_DIR=str(tmp_path)).splitlines()
    assert out[0].startswith("unavailable: building losses.c failed")
    assert float(out[1]) == pytest.approx(math.log(4))


def test_disabled_is_scoped_and_nests() -> None:
    assert _native.library("losses") is not None
    with _native.disabled():
        with _native.disabled():
            assert _native.library("losses") is None
        assert _native.library("losses") is None
    assert _native.library("losses") is not None


@pytest.mark.parametrize(("total", "grain", "threads"), [(10, 100, 2), (1000, 10, 2), (7, 1, 3)])
def test_parallel_covers_every_item_once(total: int, grain: int, threads: int) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seen: list[tuple[int, int, int]] = []
        _native.parallel(lambda a, b, k: seen.append((a, b, k)), total, grain=grain)
    finally:
        torch.set_num_threads(before)
    seen.sort()
    assert [k for _, _, k in seen] == list(range(len(seen)))
    assert seen[0][0] == 0 and seen[-1][1] == total
    assert all(b == c for (_, b, _), (c, _, _) in itertools.pairwise(seen))
    assert len(seen) == max(1, min(threads, total // grain))
