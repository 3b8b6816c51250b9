"""IVON's Triton kernels (``smoothlab/_triton/ivon.py``) against the PyTorch path, the C noise
and, bit for bit, the kernels that stored the noise (``ivon_stored_noise.py``).

Every case runs on one ``device``: ``"cpu"`` in Triton's interpreter (a subprocess with
``TRITON_INTERPRET=1``, ``test_interpreter_suite``), or ``"cuda"`` (marked ``cuda``; skipped
without a GPU). The shapes are tiny but cross a program boundary (1100 elements: two programs of
1024, a partial 256-element noise chunk). The sm_90 compilation of the three kernels needs no GPU.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn
from triton_compile import (
    DEVICES,
    INTERPRETED,
    Recorder,
    compile_sm90,
    run_interpreter_suite,
)

from smoothlab import _native, _triton
from smoothlab.optim import IVON, _ivon_native, _ivon_triton

KERNELS = ("sample_", "record_", "update_", "step_")


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The device of a case, with the Triton path switched on and its launches counted."""
    pytest.importorskip("triton")
    from smoothlab._triton import ivon

    launches: dict[str, int] = dict.fromkeys(KERNELS, 0)
    for name in KERNELS:
        monkeypatch.setattr(ivon, name, _counted(getattr(ivon, name), name, launches))
    request.node.launches = launches
    if request.param == "cpu":
        with _triton.on_cpu():
            yield "cpu"
    else:
        yield "cuda"
    assert launches["sample_"] and launches["update_"] + launches["step_"], launches


def _counted(launch: Callable[..., None], name: str, counts: dict[str, int]) -> Callable[..., None]:
    def spy(*args: object, **kwargs: object) -> None:
        counts[name] += 1
        launch(*args, **kwargs)

    return spy


class _Model(nn.Module):
    """Two float32 tensors (1100 and 3 x 5), a frozen one between them, a bfloat16 vector."""

    def __init__(self, device: str) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.big = nn.Parameter(torch.randn(1100, generator=g).to(device))
        self.frozen = nn.Parameter(torch.randn(4, generator=g).to(device), requires_grad=False)
        self.mat = nn.Parameter(torch.randn(3, 5, generator=g).to(device))
        self.low = nn.Parameter(torch.randn(7, generator=g).to(device, torch.bfloat16))

    def loss(self, sample: int) -> torch.Tensor:
        """A quadratic with curvature 1..3; ``mat`` has no gradient in odd samples."""
        scale = torch.linspace(1.0, 3.0, 1100, device=self.big.device)
        value = (scale * self.big**2).sum() / 2 + (self.low.float() ** 2).sum()
        return value + (self.mat**4).sum() if sample % 2 == 0 else value


def _train(
    model: _Model,
    opt: IVON,
    steps: int,
    noises: list[list[torch.Tensor]] | None = None,
    thetas: list[torch.Tensor] | None = None,
) -> None:
    """``steps`` steps; the noise of every (Triton) sample is appended to ``noises``, and the
    sampled parameters to ``thetas``, if given."""
    for _ in range(steps):
        for sample in range(opt.mc_samples):
            with opt.sampled_params(train=True):
                opt.zero_grad()
                model.loss(sample).backward()
                if thetas is not None:
                    thetas.extend(p.data.clone() for p in _trainable(model))
            if noises is not None:
                noises.append([_noise(p) for p in _trainable(model)])
        opt.step()


def _noise(p: torch.Tensor) -> torch.Tensor:
    """The noise of ``p``'s last Triton sample, regenerated from its key and stream."""
    from ivon_stored_noise import normals

    key, stream = _ivon_triton._DRAWN[p]
    return normals(p.numel(), key, stream).view(p.shape)


def _trainable(model: _Model) -> list[nn.Parameter]:
    """The trained parameters in the optimizer's order (the order it draws their noise in)."""
    return [model.big, model.low, model.mat]


def _ivon(model: _Model, mc: int = 1, seed: int = 3) -> IVON:
    gen = torch.Generator(model.big.device).manual_seed(seed)
    groups = [
        {"params": [model.big, model.frozen, model.low]},
        {"params": [model.mat], "clip_radius": 0.05, "weight_decay": 0.0, "beta2": 0.9},
    ]
    return IVON(groups, lr=0.1, ess=50.0, mc_samples=mc, generator=gen)


def _inject(opt: IVON, noises: list[list[torch.Tensor]]) -> None:
    """Make ``opt`` sample with the given noise, parameter by parameter (PyTorch path)."""
    flat = iter([n for sample in noises for n in sample])
    opt._fill_noise = lambda buffer, generator: buffer.copy_(next(flat))  # type: ignore[method-assign]


@pytest.mark.parametrize("mc", [1, 2])
def test_steps_equal_the_pytorch_path_given_the_same_noise(
    device: str, mc: int, request: pytest.FixtureRequest
) -> None:
    """Sample, record and update against the PyTorch ops fed the Triton run's noise: two groups,
    a clipped one, a bfloat16 parameter, a frozen one, a gradient missing from some samples."""
    model, noises = _Model(device), []  # type: ignore[var-annotated]
    opt = _ivon(model, mc)
    twin = copy.deepcopy(model)
    _train(model, opt, 3, noises)
    reference = _ivon(twin, mc)
    _inject(reference, noises)
    launched = dict(request.node.launches)
    with _native.disabled(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(_ivon_triton, "_kernels", lambda device: None)  # the PyTorch ops
        _train(twin, reference, 3)
    assert request.node.launches == launched  # the reference ran no Triton kernel
    for p, q in zip(_trainable(model), _trainable(twin), strict=True):
        for name in ("hess", "momentum", *(["mean"] if p.dtype == torch.bfloat16 else [])):
            torch.testing.assert_close(opt.state[p][name], reference.state[q][name],
                                       rtol=1e-5, atol=1e-6)  # fmt: skip
        torch.testing.assert_close(p.data, q.data, rtol=1e-5, atol=1e-6)
        assert opt.state[p]["step"] == reference.state[q]["step"] == 3


def test_noise_is_the_native_layout_and_the_sample_its_formula(device: str) -> None:
    """The Philox words of the C kernel (the normals to float rounding), per stream; theta is
    m + eps / sqrt(ess (h + wd)), rounded once to the parameter's dtype."""
    model = _Model(device)
    opt = _ivon(model)
    twin = torch.Generator(device)
    twin.set_state(opt.generator.get_state())
    words = torch.randint(0, 2**32, (2,), dtype=torch.int64, generator=twin, device=device)
    key = (int(words[0]), int(words[1]))
    with opt.sampled_params():
        thetas = [p.data.clone() for p in _trainable(model)]
    # the stream is the position in the optimizer, the frozen parameter included
    streams = [(0, 1e-4), (2, 1e-4), (3, 0.0)]  # and the weight decay, for big, low, mat
    for p, theta, (stream, decay) in zip(_trainable(model), thetas, streams, strict=True):
        assert torch.equal(_ivon_triton._DRAWN[p][0].cpu(), words.cpu())
        assert _ivon_triton._DRAWN[p][1] == stream
        eps = _noise(p)
        if _ivon_native.kernels() is not None:
            native = _ivon_native.normal_(torch.empty(p.numel()), key, stream)
            # libm-grade log and cos in the interpreter; the GPU's are within a few ulps
            atol = 2e-6 if device == "cpu" else 2e-5
            torch.testing.assert_close(eps.cpu().flatten(), native, rtol=0, atol=atol)
        sigma = 1 / math.sqrt(50.0 * (1.0 + decay))
        want = (p.data.double() + sigma * eps.double()).to(p.dtype)
        rtol = 4 * torch.finfo(p.dtype).eps
        torch.testing.assert_close(theta.double(), want.double(), rtol=rtol, atol=1e-7)
    _train(model, opt, 1)  # the fixture wants every kernel to run


@pytest.mark.parametrize("mc", [1, 2])
def test_regenerated_noise_gives_the_bits_of_the_stored_noise(device: str, mc: int) -> None:
    """Three steps through the kernels that regenerate the noise and through those that stored
    it: every sample, parameter (float32 and bfloat16), mean, Hessian and momentum bit for bit."""
    from ivon_stored_noise import StoredNoise

    model, twin = _Model(device), _Model(device)
    opt, reference = _ivon(model, mc), _ivon(twin, mc)
    thetas: list[torch.Tensor] = []
    twin_thetas: list[torch.Tensor] = []
    _train(model, opt, 3, thetas=thetas)
    # the regenerating kernels never allocate the PyTorch paths' parameter-sized noise buffer
    assert opt._buffers and all(b.stored_noise is None for b in opt._buffers.values())
    stored = StoredNoise()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_ivon_triton, "_kernels", lambda device: stored)
        _train(twin, reference, 3, thetas=twin_thetas)
    assert len(stored.noise) == 3  # the reference ran, with a buffer per stream
    assert all(torch.equal(a, b) for a, b in zip(thetas, twin_thetas, strict=True))
    for p, q in zip(_trainable(model), _trainable(twin), strict=True):
        assert torch.equal(p.data, q.data)
        for name in ("hess", "momentum", *(["mean"] if p.dtype == torch.bfloat16 else [])):
            assert torch.equal(opt.state[p][name], reference.state[q][name]), name


def test_a_sample_between_the_block_and_step_leaves_the_record_alone(device: str) -> None:
    """One sample per step records at ``step()`` with the noise of the recorded sample, not that
    of a later one (an evaluation at a sample between the block and ``step()``)."""
    model, twin = _Model(device), _Model(device)
    opt, plain = _ivon(model), _ivon(twin)
    with opt.sampled_params(train=True):
        model.loss(0).backward()
    with opt.sampled_params(), torch.no_grad():
        model.loss(1)  # evaluated at a second sample: its noise is not the recorded one
    opt.step()
    _train(twin, plain, 1)
    for p, q in zip(_trainable(model), _trainable(twin), strict=True):
        assert torch.equal(p.data, q.data)
        assert torch.equal(opt.state[p]["hess"], plain.state[q]["hess"])


def test_injected_noise_is_recorded_by_the_path_that_stored_it(device: str) -> None:
    """Noise injected through ``_fill_noise`` samples on the PyTorch path, which stores it, so
    the record is that path's too: the steps equal the PyTorch path given the same noise."""
    model, twin = _Model(device), _Model(device)
    g = torch.Generator().manual_seed(1)
    noises = [[torch.randn(p.shape, generator=g).to(device) for p in _trainable(model)]
              for _ in range(2)]  # fmt: skip
    opt, reference = _ivon(model), _ivon(twin)
    _inject(opt, noises)
    _inject(reference, noises)
    _train(model, opt, 2)
    with _native.disabled(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(_ivon_triton, "_kernels", lambda device: None)
        _train(twin, reference, 2)
    for p, q in zip(_trainable(model), _trainable(twin), strict=True):
        torch.testing.assert_close(opt.state[p]["hess"], reference.state[q]["hess"])
        torch.testing.assert_close(p.data, q.data)
    _train(model, _ivon(model), 1)  # the fixture wants every kernel to run


def test_noise_is_standard_normal(device: str) -> None:
    """8192 normals: mean and variance within 5 standard errors (1/sqrt(n), sqrt(2/n))."""
    p = nn.Parameter(torch.zeros(8192, device=device))
    opt = IVON([p], lr=0.1, ess=1.0, hess_init=1.0, weight_decay=0.0,
               generator=torch.Generator(device).manual_seed(5))  # fmt: skip
    with opt.sampled_params(train=True):
        z = p.data.double().cpu()
        p.sum().backward()
    opt.step()
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)


@pytest.mark.parametrize("mc", [1, 2])
def test_resume_is_bitwise(device: str, mc: int) -> None:
    model = _Model(device)
    opt = _ivon(model, mc=mc)
    _train(model, opt, 2)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    _train(model, opt, 2)
    again = _Model(device)
    again.load_state_dict(saved_model)
    resumed = _ivon(again, mc=mc, seed=99)
    resumed.load_state_dict(saved_opt)
    _train(again, resumed, 2)
    for p, q in zip(_trainable(model), _trainable(again), strict=True):
        assert torch.equal(p.data, q.data)
        assert torch.equal(opt.state[p]["hess"], resumed.state[q]["hess"])


def test_one_launch_per_group_and_dtype(device: str, request: pytest.FixtureRequest) -> None:
    """Group 1 holds float32 and bfloat16 tensors (two launches), group 2 one; ``mat`` has no
    gradient in a second sample. One sample per step records and updates in one launch."""
    model = _Model(device)
    _train(model, _ivon(model, mc=2), 1)
    assert request.node.launches == {"sample_": 6, "record_": 5, "update_": 3, "step_": 0}
    _train(model, _ivon(model, mc=1), 1)
    assert request.node.launches == {"sample_": 9, "record_": 5, "update_": 3, "step_": 3}


def test_cpu_parameters_keep_the_cpu_paths() -> None:
    """Without the test switch, CPU parameters never reach the Triton dispatch."""
    p = nn.Parameter(torch.randn(10))
    assert not _ivon_triton.takes(p, {"hess": p.detach(), "momentum": p.detach()})
    with _triton.on_cpu():
        if _ivon_triton._kernels(p.device) is not None:
            assert _ivon_triton.takes(p, {"hess": p.detach(), "momentum": p.detach()})
            assert not _ivon_triton.takes(p.double(), {"hess": p.detach(), "momentum": p.detach()})
            channels = torch.zeros(2, 3, 2, 2).to(memory_format=torch.channels_last)
            assert not _ivon_triton.takes(channels, {"hess": channels, "momentum": channels})


@pytest.mark.slow
@pytest.mark.skipif(INTERPRETED, reason="compiles for a GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernels_compile_for_the_gpu(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """The four kernels, and the stored-noise reference's three (the CUDA run compares them)."""
    pytest.importorskip("triton.backends.nvidia")
    import ivon_stored_noise

    from smoothlab._triton import ivon

    recorders = {}
    names = ("_sample_kernel", "_record_kernel", "_update_kernel", "_step_kernel")
    for module in (ivon, ivon_stored_noise):
        for name in [n for n in names if hasattr(module, n)]:
            recorders[module, name] = (getattr(module, name), Recorder())
            monkeypatch.setattr(module, name, recorders[module, name][1])
    p = nn.Parameter(torch.randn(300).to(dtype))
    for mc, stored in itertools.product((1, 2), (False, True)):
        # one sample: sample and step; two: sample, record and update
        opt = IVON([p], lr=0.1, ess=10.0, mc_samples=mc)
        with _triton.on_cpu(), pytest.MonkeyPatch.context() as patch:
            if stored:
                reference = ivon_stored_noise.StoredNoise()
                patch.setattr(_ivon_triton, "_kernels", lambda _, kernels=reference: kernels)
            for _ in range(mc):
                with opt.sampled_params(train=True):
                    p.float().sum().backward()
            opt.step()
    assert len(recorders) == 7
    for kernel, recorder in recorders.values():
        assert recorder.launches
        compile_sm90(kernel, *recorder.launches[0])


@pytest.mark.skipif(INTERPRETED, reason="this is the interpreter run")
def test_interpreter_suite() -> None:
    """Run this file's cases on CPU tensors in Triton's interpreter, in a subprocess."""
    run_interpreter_suite(__file__, 12)
