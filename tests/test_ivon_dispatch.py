"""IVON's dispatch to the native kernels: which backend runs each part of a step (sample, record,
update) as the switches change between and within steps, and hundreds of steps bit for bit
against a twin loop that calls the kernels in the order the docs state."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothlab import _native
from smoothlab.optim import IVON, _ivon_native
from smoothlab.optim import ivon as ivon_module

_MISSING = _ivon_native.kernels() is None
pytestmark = pytest.mark.skipif(
    _MISSING, reason=f"native IVON kernels: {_native.status()['ivon']}" if _MISSING else ""
)


def _spy(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the calls of the native sample, record and update, and of PyTorch's record and
    update (the PyTorch sample has no function of its own: no native sample is its trace)."""
    calls: Counter[str] = Counter()

    def counted(real: Callable[..., None], key: str) -> Callable[..., None]:
        def spy(*args: object, **kwargs: object) -> None:
            calls[key] += 1
            real(*args, **kwargs)

        return spy

    for module, backend, names in (
        (_ivon_native, "native", ("sample_", "record_", "update_")),
        (ivon_module, "torch", ("record_", "update_")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, counted(getattr(module, name), f"{backend} {name}"))
    return calls


def _step(model: nn.Module, opt: IVON, off: str) -> None:
    """One training step with ``disabled()`` around the ``"block"``, from inside its ``"body"``
    (after the sample) to after the block (its record), or around ``"step"`` (``""``: none)."""
    x, y = torch.ones(4, 3), torch.tensor([0, 1, 0, 1])
    with ExitStack() as late, _switch(off == "block"), opt.sampled_params(train=True):
        late.enter_context(_switch(off == "body"))  # leaves after the block has recorded
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
    with _switch(off == "step"):
        opt.step()


def _switch(off: bool) -> AbstractContextManager[object]:
    return _native.disabled() if off else nullcontext()


NATIVE = {"native sample_": 2, "native record_": 2, "native update_": 2}
TORCH = {"torch record_": 2, "torch update_": 2}
# (environment value, where disabled() is) -> the calls of one step
SEQUENCE = [
    ((None, ""), NATIVE),
    (("0", ""), TORCH),
    (("off", ""), TORCH),
    ((None, ""), NATIVE),  # read again once the variable is gone
    (("1", "block"), {"torch record_": 2, "native update_": 2}),
    (("1", "body"), NATIVE),  # a block records with its sample's backends
    (("1", "step"), {"native sample_": 2, "native record_": 2, "torch update_": 2}),
    (("1", ""), NATIVE),
]


def test_each_block_and_step_reads_the_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SMOOTHLAB_NATIVE`` set or removed between steps, and ``disabled()`` around the
    ``sampled_params`` block or around ``step()`` alone, decide the backends of what they
    cover, and only that; the switches are read as a block begins, not at its record."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, generator=torch.Generator().manual_seed(0))
    calls = _spy(monkeypatch)
    for (env, off), expected in SEQUENCE:
        if env is None:
            monkeypatch.delenv("SMOOTHLAB_NATIVE", raising=False)
        else:
            monkeypatch.setenv("SMOOTHLAB_NATIVE", env)
        calls.clear()
        _step(model, opt, off)
        assert dict(calls) == expected, (env, off)


def _forward(params: Sequence[Tensor], x: Tensor) -> Tensor:
    """The model of the bitwise test: Linear(5, 8), tanh, Linear(8, 3)."""
    w1, b1, w2, b2 = params
    return F.linear(torch.tanh(F.linear(x, w1, b1)), w2, b2)


GROUPS = [  # the first bias is frozen; its position still counts as a noise stream
    {"lr": 0.1, "ess": 50.0, "weight_decay": 1e-3, "beta1": 0.9, "clip_radius": float("inf")},
    {"lr": 0.05, "ess": 30.0, "weight_decay": 0.0, "beta1": 0.5, "clip_radius": 0.02},
]
HESS_INIT, BETA2, MC = 0.5, 0.99, 2
STEPS = 300


def _missing(step: int, sample: int) -> bool:
    """Whether the head bias gets no gradient: the second sample of every third step."""
    return sample == 1 and step % 3 == 0


def _data() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)


def _init() -> list[Tensor]:
    torch.manual_seed(0)
    return [p.detach() for p in nn.Sequential(nn.Linear(5, 8), nn.Linear(8, 3)).parameters()]


def _ivon_run() -> list[Tensor]:
    params = [nn.Parameter(t.clone()) for t in _init()]
    params[1].requires_grad_(False)
    groups = [{"params": params[:2], **GROUPS[0]}, {"params": params[2:], **GROUPS[1]}]
    gen = torch.Generator().manual_seed(3)
    opt = IVON(groups, lr=1.0, ess=1.0, hess_init=HESS_INIT, beta2=BETA2, mc_samples=MC,
               generator=gen)  # fmt: skip
    x, y = _data()
    for step, sample in itertools.product(range(STEPS), range(MC)):
        with opt.sampled_params(train=True):
            opt.zero_grad()
            F.cross_entropy(_forward(params, x), y).backward()
            if _missing(step, sample):
                params[3].grad = None
        if sample == MC - 1:
            opt.step()
    states = [opt.state[p] for p in params]
    return [t for p, s in zip(params, states, strict=True) for t in (p, s["hess"], s["momentum"])]


def _twin_run() -> list[Tensor]:
    """IVON's native path as a plain loop over the kernels: per sample a Philox key (two words
    of the generator) and parameter ``i`` sampled on stream ``i``; each gradient recorded with
    share 1/S, the first of a step assigning; per step the update of each parameter that got a
    gradient, with the bias correction of its own step count and the samples it missed."""
    means = [t.clone() for t in _init()]
    hess = [torch.full_like(m, HESS_INIT) for m in means]
    moms, diffs = [torch.zeros_like(m) for m in means], [torch.empty_like(m) for m in means]
    noise, thetas = [torch.empty_like(m) for m in means], [torch.empty_like(m) for m in means]
    groups = [GROUPS[i // 2] for i in range(4)]
    scale = [{"ess": g["ess"], "weight_decay": g["weight_decay"]} for g in groups]
    trained, steps = (0, 2, 3), [0] * 4
    gen, (x, y) = torch.Generator().manual_seed(3), _data()
    for step in range(STEPS):
        counts = [0] * 4
        for sample in range(MC):
            key = tuple(torch.randint(0, 2**32, (2,), dtype=torch.int64, generator=gen).tolist())
            for i in trained:
                _ivon_native.sample_(means[i], hess[i], thetas[i], noise[i], key=key, stream=i,
                                     **scale[i])  # fmt: skip
            leaves = [t.detach().requires_grad_() for t in thetas]
            leaves[1] = means[1]  # frozen: the forward sees its mean
            F.cross_entropy(_forward(leaves, x), y).backward()
            for i in (0, 2) if _missing(step, sample) else trained:
                _ivon_native.record_(leaves[i].grad, noise[i], hess[i], moms[i], diffs[i],
                                     beta1=groups[i]["beta1"], share=1 / MC,
                                     first=counts[i] == 0, **scale[i])  # fmt: skip
                counts[i] += 1
        for i in trained:
            steps[i] += 1
            lr = groups[i]["lr"] * (HESS_INIT + groups[i]["weight_decay"])
            debias = 1 / (1 - groups[i]["beta1"] ** steps[i])
            _ivon_native.update_(means[i], hess[i], moms[i], diffs[i], beta2=BETA2, lr=lr,
                                 debias=debias, clip_radius=groups[i]["clip_radius"],
                                 missing=MC - counts[i], samples=MC, **scale[i])  # fmt: skip
    return [t for i in range(4) for t in (means[i], hess[i], moms[i])]


def test_hundreds_of_steps_equal_the_kernel_loop_bit_for_bit() -> None:
    """Two groups, a frozen parameter, two samples per step and a gradient missing from some:
    means, Hessians and momenta after 300 steps equal the twin's bit for bit."""
    ours, twin = _ivon_run(), _twin_run()
    for index, (a, b) in enumerate(zip(ours, twin, strict=True)):
        assert torch.equal(a, b), index
