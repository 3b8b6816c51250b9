"""IVON's compiled kernels: Philox known answers, the Gaussian stream, and agreement with PyTorch."""

from __future__ import annotations

import copy
import io
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from smoothlab import _native
from smoothlab.optim import IVON, _ivon_native

_MISSING = _ivon_native.kernels() is None
pytestmark = pytest.mark.skipif(
    _MISSING, reason=f"native IVON kernels: {_native.status()['ivon']}" if _MISSING else ""
)

MASK = 0xFFFFFFFF


def _philox_twin(key: tuple[int, int], counter: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Philox4x32-10 in Python integers, from Salmon et al. (SC 2011), Sec. 3 and 5."""
    (c0, c1, c2, c3), (k0, k1) = counter, key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
        pa, pb = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (pb >> 32) ^ c1 ^ k0, pb & MASK, (pa >> 32) ^ c3 ^ k1, pa & MASK
    return c0, c1, c2, c3


def _normal_twin(key: tuple[int, int], stream: int, n: int) -> np.ndarray:
    """The documented layout in float64: element j is word (j % 256) // 64 of block
    64 (j // 256) + j % 64, Box-Muller on the uniforms (x >> 8 + 1/2) 2^-24."""
    out = np.empty(n)
    for j in range(n):
        chunk, rest = divmod(j, 256)
        word, lane = divmod(rest, 64)
        block = 64 * chunk + lane
        x = _philox_twin(key, (block & MASK, block >> 32, stream, 0))
        u0, u1 = (((x[w] >> 8) + 0.5) * 2.0**-24 for w in (word & 2, (word & 2) + 1))
        radius, angle = math.sqrt(-2.0 * math.log(u0)), 2.0 * math.pi * (u1 - 0.5)
        out[j] = radius * (math.cos(angle) if word % 2 == 0 else math.sin(angle))
    return out


def _normals(n: int, key: tuple[int, int] = (1, 2), stream: int = 0) -> torch.Tensor:
    return _ivon_native.normal_(torch.empty(n), key, stream)


# ------------------------------------------------------------------------------------ Philox
@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [  # Random123's kat_vectors, "philox4x32 10" lines
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(counter, key, expected) -> None:
    assert tuple(_ivon_native.philox4x32(key, counter, 1)[0].tolist()) == expected
    assert _philox_twin(key, counter) == expected


def test_philox_counts_up_with_carry_and_matches_the_twin() -> None:
    key, counter = (0x12345678, 0x9ABCDEF0), (MASK - 1, 7, 3, 5)
    words = _ivon_native.philox4x32(key, counter, 3).tolist()
    counters = [(MASK - 1, 7, 3, 5), (MASK, 7, 3, 5), (0, 8, 3, 5)]
    assert words == [list(_philox_twin(key, c)) for c in counters]


def test_unavailable_kernels_raise() -> None:
    with _native.disabled(), pytest.raises(RuntimeError, match="native IVON kernels are unava"):
        _ivon_native.philox4x32((0, 0), (0, 0, 0, 0), 1)


# ------------------------------------------------------------------------- Gaussian stream
def test_normals_follow_the_documented_layout() -> None:
    n = 600  # two full chunks and a partial one
    for key, stream in (((1, 2), 0), ((MASK, 0x80000000), 12345)):
        twin = torch.from_numpy(_normal_twin(key, stream, n)).float()
        torch.testing.assert_close(_normals(n, key, stream), twin, rtol=2e-6, atol=2e-6)


def test_normals_do_not_depend_on_the_split_or_the_thread_count() -> None:
    n, lib = 2 * _ivon_native.GRAIN_ELEMENTS + 1, _ivon_native.kernels()
    assert lib is not None
    whole = _normals(n)
    pieces = torch.empty(n)
    cuts = [0, 1, 255, 256, 1000, 77_777, 200_000, n - 3, n]
    for lo, hi in itertools.pairwise(cuts):
        lib.sl_ivon_normal(1, 2, 0, lo, hi, pieces.data_ptr())
    assert torch.equal(whole, pieces)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.equal(whole, _normals(n))
    finally:
        torch.set_num_threads(threads)


def test_normals_are_standard_normal() -> None:
    n = 1 << 20
    z = _normals(n, (7, 11), 3).double()
    # mean and variance within 5 standard errors (1/sqrt(n) and sqrt(2/n))
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert stats.kstest(z.numpy(), "norm").pvalue > 5.733e-7  # 5 sigma, two-sided
    tail = (z.abs() > 3).double().mean().item()  # P(|z| > 3) = 0.0027
    expected = 2 * stats.norm.sf(3)
    assert abs(tail - expected) < 5 * math.sqrt(expected / n)
    assert z.abs().max().item() < 5.9  # u >= 2^-25 bounds the radius at sqrt(50 ln 2)


@pytest.mark.parametrize("lag", [1, 2, 63, 64, 128, 192, 256])
def test_neighbours_are_uncorrelated(lag: int) -> None:
    """Lags 64 and 128 pair words of one block; squares also catch a shared Box-Muller radius
    or angle that linear correlation misses."""
    n = 1 << 20
    z = _normals(n, (3, 4), 1).double()
    bound = 5 / math.sqrt(n)
    assert abs(torch.corrcoef(torch.stack([z[:-lag], z[lag:]]))[0, 1].item()) < bound
    sq = z**2
    assert abs(torch.corrcoef(torch.stack([sq[:-lag], sq[lag:]]))[0, 1].item()) < bound


def test_keys_and_streams_give_independent_noise() -> None:
    n = 1 << 18
    base = _normals(n, (1, 2), 0).double()
    others = [_normals(n, (1, 3), 0), _normals(n, (2, 2), 0), _normals(n, (1, 2), 1)]
    for other in others:
        assert abs(torch.corrcoef(torch.stack([base, other.double()]))[0, 1].item()) < 5 / 512


def test_consecutive_samples_are_uncorrelated_and_seeded_by_the_generator() -> None:
    w = nn.Parameter(torch.zeros(1 << 18))
    opt = IVON([w], lr=0.1, ess=1.0, hess_init=1.0, weight_decay=0.0, generator=_gen(4))
    draws = []
    for _ in range(3):
        with opt.sampled_params():
            draws.append(w.detach().clone().double())
    for a, b in ((0, 1), (1, 2)):
        assert abs(torch.corrcoef(torch.stack([draws[a], draws[b]]))[0, 1].item()) < 5 / 512
    again = IVON([nn.Parameter(torch.zeros(1 << 18))], lr=0.1, ess=1.0, weight_decay=0.0,
                 generator=_gen(4))  # fmt: skip
    with again.sampled_params():
        assert torch.equal(again.param_groups[0]["params"][0].detach().double(), draws[0])


# ---------------------------------------------------------------- agreement with PyTorch
def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 40), nn.Tanh(), nn.Linear(40, 3), nn.Linear(3, 3))


def _run(
    model: nn.Module, opt: IVON, steps: int, noise: list[torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Train; the last layer gets no gradient in odd samples. Returns the noise drawn, per
    sample and parameter; given ``noise``, replays it through ``_fill_noise``."""
    g = _gen(1)
    x, y = torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)
    if noise is not None:
        replay = iter(noise)
        opt._fill_noise = lambda buffer, generator: buffer.copy_(next(replay))  # type: ignore[method-assign]
    drawn = []
    for step in range(steps):
        for sample in range(opt.mc_samples):
            with opt.sampled_params(train=True):
                opt.zero_grad()
                head = model[:3] if (step + sample) % 2 else model
                nn.functional.cross_entropy(head(x), y).backward()
            drawn += [opt._buffers[p].noise.clone() for p in model.parameters()]
        opt.step()
    return drawn


@pytest.mark.parametrize(
    "hyper",
    [
        {"mc_samples": 1, "weight_decay": 1e-2},
        {"mc_samples": 3, "weight_decay": 0.0, "clip_radius": 0.05, "rescale_lr": False},
        {"mc_samples": 2, "beta2": 1.0},
    ],
)
def test_native_steps_equal_pytorch_steps_given_the_same_noise(hyper) -> None:
    def build() -> tuple[nn.Module, IVON]:
        model = _model()
        head = list(model[3].parameters())
        body = [p for p in model.parameters() if all(p is not q for q in head)]
        groups = [{"params": body}, {"params": head, "lr": 0.05, "ess": 30.0, "beta1": 0.5}]
        return model, IVON(groups, lr=0.1, ess=50.0, generator=_gen(2), **({"beta2": 0.9} | hyper))

    native_model, native = build()
    noise = _run(native_model, native, 4)
    eager_model, eager = build()
    with _native.disabled():
        _run(eager_model, eager, 4, noise)
    for p, q in zip(native_model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
        for key in ("hess", "momentum"):
            torch.testing.assert_close(native.state[p][key], eager.state[q][key], rtol=1e-5,
                                       atol=1e-6)  # fmt: skip
        assert native.state[p]["step"] == eager.state[q]["step"]


def test_native_sample_is_mean_plus_sigma_times_noise() -> None:
    model = _model()
    opt = IVON(model.parameters(), lr=0.1, ess=20.0, generator=_gen())
    means = [p.detach().clone() for p in model.parameters()]
    with opt.sampled_params():
        for p, m, s in zip(model.parameters(), means, opt.posterior_std(), strict=True):
            noise = opt._buffers[p].noise
            torch.testing.assert_close(p.detach(), m + s * noise, rtol=1e-6, atol=1e-7)


def test_switching_backends_keeps_sigma_current() -> None:
    model = _model()
    opt = IVON(model.parameters(), lr=0.1, ess=20.0, beta2=0.5, generator=_gen())
    _run(model, opt, 2)  # native steps change h
    opt._fill_noise = lambda buffer, generator: buffer.fill_(1.0)  # type: ignore[method-assign]
    means = [p.detach().clone() for p in model.parameters()]
    with _native.disabled(), opt.sampled_params():
        for p, m, s in zip(model.parameters(), means, opt.posterior_std(), strict=True):
            torch.testing.assert_close(p.detach() - m, s, rtol=1e-5, atol=1e-7)


def test_resume_at_the_same_thread_count_is_bitwise() -> None:
    def fresh() -> tuple[nn.Module, IVON]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 64), nn.Tanh(), nn.Linear(64, 3), nn.Linear(3, 3))
        return model, IVON(model.parameters(), lr=0.1, ess=20.0, beta2=0.99, mc_samples=2)

    model, opt = fresh()
    _run(model, opt, 2)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    _run(model, opt, 2)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model2, opt2 = fresh()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(copy.deepcopy(saved["opt"]))
    _run(model2, opt2, 2)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p]["hess"], opt2.state[q]["hess"])
        assert torch.equal(opt.state[p]["momentum"], opt2.state[q]["momentum"])


def _steps_from_fixed_gradients(threads: int) -> list[torch.Tensor]:
    """Three IVON steps of a parameter that splits over 2 threads, fed gradients drawn from a
    fixed generator: only smoothlab's kernels run (no torch matrix product, whose bits may
    depend on the thread count on AVX-512 CPUs)."""
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        n = 2 * _ivon_native.GRAIN_ELEMENTS + 1001
        w = nn.Parameter(torch.linspace(-1.0, 1.0, n))
        opt = IVON([w], lr=0.1, ess=20.0, beta2=0.99, mc_samples=2, generator=_gen(3))
        g = _gen(4)
        for _ in range(3):
            for _ in range(opt.mc_samples):
                with opt.sampled_params(train=True):
                    w.grad = torch.randn(n, generator=g) + w.detach()
            opt.step()
        return [w.detach().clone(), opt.state[w]["hess"].clone(), opt.state[w]["momentum"].clone()]
    finally:
        torch.set_num_threads(previous)


def test_kernels_give_the_same_bits_for_any_thread_split() -> None:
    one, two = _steps_from_fixed_gradients(1), _steps_from_fixed_gradients(2)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


def test_non_contiguous_gradient_is_recorded_like_a_contiguous_one() -> None:
    results = []
    for contiguous in (True, False):
        w = nn.Parameter(torch.linspace(-1.0, 1.0, 6).reshape(2, 3))
        opt = IVON([w], lr=0.1, ess=10.0, generator=_gen())
        grad = torch.arange(6.0).reshape(3, 2).t()
        with opt.sampled_params(train=True):
            w.grad = grad.contiguous() if contiguous else grad
        opt.step()
        results.append((w.detach().clone(), opt.state[w]["hess"].clone()))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Parameter(torch.zeros(4, dtype=torch.float64)),
        lambda: nn.Parameter(torch.zeros(4, dtype=torch.bfloat16)),
        lambda: nn.Parameter(torch.zeros(4, 3).t()),
    ],
)
def test_other_parameters_take_the_pytorch_path(make) -> None:
    p = make()
    opt = IVON([p], lr=0.1, ess=10.0)
    assert not _ivon_native.usable(p, opt.state[p])
    mixed = nn.Parameter(torch.zeros(4))  # float64 state from a foreign state dict
    state = IVON([mixed], lr=0.1, ess=10.0).state[mixed]
    assert not _ivon_native.usable(mixed, state | {"hess": state["hess"].double()})
    plain = nn.Parameter(torch.zeros(4))
    assert _ivon_native.usable(plain, IVON([plain], lr=0.1, ess=10.0).state[plain])
