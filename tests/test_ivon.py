"""IVON: Algorithm 1 of Shen et al. (ICML 2024) against a float64 loop twin, sampling, resume."""

from __future__ import annotations

import copy
import io
import math
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from smoothlab import _native
from smoothlab.optim import IVON
from smoothlab.optim._ivon_kernels import hessian_update_


@pytest.fixture(params=["native", "pytorch"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test with the compiled kernels (when they build) and with PyTorch alone."""
    if request.param == "pytorch":
        with _native.disabled():
            yield request.param
    else:
        yield request.param


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp(dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _data(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(1)
    return torch.randn(16, 5, generator=g).to(dtype), torch.randint(0, 3, (16,), generator=g)


def _train(model: nn.Module, opt: IVON, steps: int) -> None:
    dtype = next(model.parameters()).dtype
    x, y = _data(dtype)
    for _ in range(steps):
        for _ in range(opt.mc_samples):
            with opt.sampled_params(train=True):
                opt.zero_grad()
                logits = model(x).to(torch.promote_types(dtype, torch.float32))
                nn.functional.cross_entropy(logits, y).backward()
        opt.step()


def _reference_steps(model, x, y, noise_gen, steps, *, lr, ess, h0, b1, b2, wd, mc, rescale):
    """Algorithm 1 written out in float64, element by element where it matters."""
    params = [p.detach().clone() for p in model.parameters()]
    means = [p.clone() for p in params]
    hess = [torch.full_like(p, h0) for p in params]
    mom = [torch.zeros_like(p) for p in params]
    alpha = lr * (h0 + wd) if rescale else lr
    for t in range(1, steps + 1):
        g_hat = [torch.zeros_like(p) for p in params]
        h_hat = [torch.zeros_like(p) for p in params]
        for _ in range(mc):
            sigma = [1 / torch.sqrt(ess * (h + wd)) for h in hess]
            eps = [torch.randn(p.shape, generator=noise_gen, dtype=p.dtype) for p in params]
            theta = [m + s * e for m, s, e in zip(means, sigma, eps, strict=True)]
            with torch.no_grad():
                for p, th in zip(model.parameters(), theta, strict=True):
                    p.copy_(th)
            model.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            for i, p in enumerate(model.parameters()):
                g_hat[i] += p.grad / mc
                h_hat[i] += p.grad * (theta[i] - means[i]) / sigma[i] ** 2 / mc
        for i in range(len(params)):
            mom[i] = b1 * mom[i] + (1 - b1) * g_hat[i]
            h, hh = hess[i], h_hat[i]
            hess[i] = b2 * h + (1 - b2) * hh + 0.5 * (1 - b2) ** 2 * (h - hh) ** 2 / (h + wd)
            g_bar = mom[i] / (1 - b1**t)
            means[i] = means[i] - alpha * (g_bar + wd * means[i]) / (hess[i] + wd)
    return means, hess


@pytest.mark.parametrize(("mc", "rescale"), [(1, True), (2, False)])
def test_matches_float64_twin_of_algorithm_1(mc: int, rescale: bool) -> None:
    hyper = {"lr": 0.05, "ess": 50.0, "beta1": 0.8, "beta2": 0.9, "weight_decay": 1e-2}
    model, twin = _mlp(torch.float64), _mlp(torch.float64)
    opt = IVON(model.parameters(), hess_init=0.7, mc_samples=mc, rescale_lr=rescale,
               generator=_gen(3), **hyper)  # fmt: skip
    x, y = _data(torch.float64)
    means, hess = _reference_steps(
        twin, x, y, _gen(3), 4, lr=0.05, ess=50.0, h0=0.7, b1=0.8, b2=0.9, wd=1e-2, mc=mc,
        rescale=rescale,
    )  # fmt: skip
    _train(model, opt, 4)
    for p, m, h in zip(model.parameters(), means, hess, strict=True):
        torch.testing.assert_close(p.detach(), m, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(opt.state[p]["hess"], h, rtol=1e-10, atol=1e-12)
        assert opt.state[p]["step"] == 4


def test_sigma_at_init_per_group() -> None:
    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, 2))
    opt = IVON([{"params": [a]}, {"params": [b], "ess": 9.0, "hess_init": 3.0}], lr=0.1,
               ess=100.0, hess_init=0.5, weight_decay=0.01)  # fmt: skip
    sig_a, sig_b = opt.posterior_std()
    torch.testing.assert_close(sig_a, torch.full((3,), 1 / math.sqrt(100 * 0.51)))
    torch.testing.assert_close(sig_b, torch.full((2, 2), 1 / math.sqrt(9 * 3.01)))


def test_training_and_checkpointing_ivon_never_imports_dynamo() -> None:
    # torch.optim's _disable_dynamo wrappers import torch._dynamo (1 s) at their first call;
    # IVON calls past them outside compilation, so a process that uses only IVON skips it
    code = """
import sys, torch
from torch import nn
from smoothlab.optim import IVON
model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
opt = IVON(model.parameters(), lr=0.1, ess=16.0, generator=torch.Generator().manual_seed(0))
opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "lr": 0.05})
x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
for _ in range(2):
    with opt.sampled_params(train=True):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
opt.load_state_dict(opt.state_dict())
print("torch._dynamo" in sys.modules, [len(g["params"]) for g in opt.param_groups])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False [4, 1]\n"


def test_while_dynamo_traces_ivon_keeps_torchs_wrappers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
        wrapper = getattr(torch.optim.Optimizer, name)

        def spy(*args: object, _name: str = name, _raw: object = wrapper.__wrapped__) -> object:
            calls.append(_name)
            return _raw(*args)  # type: ignore[operator]

        spy.__wrapped__ = wrapper.__wrapped__  # type: ignore[attr-defined]
        monkeypatch.setattr(torch.optim.Optimizer, name, spy)

    def use() -> None:
        opt = IVON([nn.Parameter(torch.zeros(3))], lr=0.1, ess=10.0)
        opt.zero_grad()
        opt.load_state_dict(opt.state_dict())

    use()
    assert calls == []
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    use()
    assert calls == ["add_param_group", "zero_grad", "state_dict", "load_state_dict"]


def test_duplicate_parameters_raise_torchs_error() -> None:
    w = nn.Parameter(torch.zeros(3))
    opt = IVON([w], lr=0.1, ess=10.0)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [w]})


def test_samples_have_the_posterior_scale(backend: str) -> None:
    w = nn.Parameter(torch.full((40_000,), 0.5))
    opt = IVON([w], lr=0.1, ess=25.0, hess_init=0.2, weight_decay=0.0, generator=_gen())
    with opt.sampled_params():
        z = (w.detach() - 0.5) / (1 / math.sqrt(25 * 0.2))
    # mean 0 and std 1 within 5 standard errors (1/200 and 1/283)
    assert abs(z.mean().item()) < 5 / 200
    assert abs(z.std().item() - 1) < 5 / 283


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sampled_params_restores_bitwise(dtype: torch.dtype, backend: str) -> None:
    model = _mlp(dtype)
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, generator=_gen())
    before = [p.detach().clone() for p in model.parameters()]
    with opt.sampled_params(train=True):
        changed = [not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True)]
    assert all(changed)
    with pytest.raises(KeyError), opt.sampled_params(train=True):
        raise KeyError("body fails")
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), b)
    assert opt._samples == 1  # the failed body recorded nothing


def test_resume_is_bitwise(backend: str) -> None:
    def fresh() -> tuple[nn.Module, IVON]:
        model = _mlp()
        return model, IVON(model.parameters(), lr=0.1, ess=20.0, beta2=0.99, mc_samples=2)

    model, opt = fresh()
    _train(model, opt, 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    _train(model, opt, 5)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model2, opt2 = fresh()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    _train(model2, opt2, 5)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)
        for key in ("momentum", "hess", "step"):
            assert torch.equal(
                torch.as_tensor(opt.state[p][key]), torch.as_tensor(opt2.state[q][key])
            )
    assert torch.equal(opt.generator.get_state(), opt2.generator.get_state())


def test_low_precision_parameters_keep_float32_state_across_resume(backend: str) -> None:
    model = _mlp(torch.bfloat16)
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, generator=_gen())
    _train(model, opt, 2)
    opt2 = IVON(model.parameters(), lr=0.1, ess=10.0)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p in model.parameters():
        for key in ("momentum", "hess", "mean"):
            assert opt2.state[p][key].dtype == torch.float32
            assert torch.equal(opt2.state[p][key], opt.state[p][key])
        assert torch.equal(p.detach(), opt.state[p]["mean"].to(torch.bfloat16))


def test_parameters_without_gradient_are_skipped(backend: str) -> None:
    used, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    frozen = nn.Parameter(torch.ones(2), requires_grad=False)
    opt = IVON([used, unused, frozen], lr=0.1, ess=10.0, generator=_gen())
    with opt.sampled_params(train=True):
        assert torch.equal(frozen, torch.ones(2))  # never perturbed
        (used**2).sum().backward()
    opt.step()
    assert opt.state[used]["step"] == 1
    assert opt.state[unused]["step"] == 0
    assert torch.equal(unused.detach(), torch.ones(2))
    assert torch.equal(opt.state[unused]["hess"], torch.ones(2))


def test_closure_protocol_equals_the_explicit_loop(backend: str) -> None:
    x, y = _data()
    results = []
    for use_closure in (False, True):
        model = _mlp()
        opt = IVON(model.parameters(), lr=0.1, ess=10.0, mc_samples=3, generator=_gen(5))

        def closure(model: nn.Module = model, opt: IVON = opt) -> torch.Tensor:
            with opt.sampled_params(train=True):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
            return loss

        if use_closure:
            loss = opt.step(closure)
            assert loss.shape == ()
        else:
            _train(model, opt, 1)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_clip_radius_bounds_the_update(backend: str) -> None:
    w = nn.Parameter(torch.tensor([0.0, 0.0]))
    opt = IVON([w], lr=1.0, ess=1e6, weight_decay=0.0, clip_radius=0.1, beta1=0.0,
               rescale_lr=False, generator=_gen())  # fmt: skip
    with opt.sampled_params(train=True):
        (torch.tensor([100.0, 0.01]) * w).sum().backward()
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([-0.1, -0.01]), rtol=1e-3, atol=1e-6)


def test_converges_on_a_quadratic_and_learns_its_curvature() -> None:
    curvature = torch.tensor([1.0, 10.0])
    w = nn.Parameter(torch.tensor([3.0, -2.0], dtype=torch.float64))
    opt = IVON([w], lr=0.2, ess=100.0, beta2=0.99, hess_init=1.0, weight_decay=0.0,
               generator=_gen())  # fmt: skip
    for _ in range(1500):
        with opt.sampled_params(train=True):
            opt.zero_grad()
            (0.5 * curvature * w**2).sum().backward()
        opt.step()
    assert w.detach().abs().max() < 0.05
    torch.testing.assert_close(opt.state[w]["hess"].float(), curvature, rtol=0.25, atol=0.0)


def test_converges_on_rosenbrock() -> None:
    w = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = IVON([w], lr=0.8, ess=1e4, hess_init=400.0, beta2=0.999, weight_decay=0.0,
               rescale_lr=False, generator=_gen())  # fmt: skip

    def rosenbrock() -> torch.Tensor:
        return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2

    for _ in range(1500):
        with opt.sampled_params(train=True):
            opt.zero_grad()
            rosenbrock().backward()
        opt.step()
    assert rosenbrock().item() < 0.02  # from 1.0 at the start
    assert (w.detach() - 1).abs().max() < 0.2


@given(
    h=st.floats(1e-6, 1e6),
    h_hat=st.floats(-1e6, 1e6),
    wd=st.floats(0.0, 10.0),
    beta2=st.floats(0.0, 1.0),
)
def test_hessian_update_keeps_the_precision_positive(h, h_hat, wd, beta2) -> None:
    hess = torch.tensor([h], dtype=torch.float64)
    hessian_update_(hess, hess - h_hat, 3.0 * (hess + wd), beta2=beta2, ess=3.0)
    new = hess.item()
    twin = beta2 * h + (1 - beta2) * h_hat + 0.5 * (1 - beta2) ** 2 * (h - h_hat) ** 2 / (h + wd)
    assert new == pytest.approx(twin, rel=1e-9, abs=1e-9 * (abs(h_hat) + h))
    # minimum over h_hat is (h - wd) / 2: h + wd at most halves, h > 0 stays when wd = 0
    assert new + wd >= 0.5 * (h + wd) * (1 - 1e-9) > 0
    if wd == 0:
        assert new > 0


def test_predict_averages_softmax_over_samples(backend: str) -> None:
    model = _mlp()
    x, _ = _data()
    opt = IVON(model.parameters(), lr=0.1, ess=1.0, generator=_gen())
    state = opt.generator.get_state()
    out = opt.predict(model, x, n_samples=4, generator=_gen(7))
    assert torch.equal(opt.generator.get_state(), state)  # own generator left alone
    torch.testing.assert_close(out.at_mean, torch.softmax(model(x), 1))
    torch.testing.assert_close(out.predictive.sum(1), torch.ones(16))
    assert not torch.allclose(out.predictive, out.at_mean, atol=1e-3)
    tight = IVON(model.parameters(), lr=0.1, ess=1e12).predict(model, x, n_samples=2)
    torch.testing.assert_close(tight.predictive, tight.at_mean, atol=1e-4, rtol=0)


def _oracle_update(ivon_module, kw):
    """One update of the official package; returns its means, samples and resulting weights."""
    torch.manual_seed(0)
    x, y = _data()
    model = _mlp()
    opt = ivon_module.IVON(model.parameters(), **kw)
    means = [p.detach().clone() for p in model.parameters()]
    with opt.sampled_params(train=True):
        thetas = [p.detach().clone() for p in model.parameters()]
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return means, thetas, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("rescale_lr", [True, False])
def test_one_update_agrees_with_the_official_package(rescale_lr: bool, backend: str) -> None:
    ivon_module = pytest.importorskip("ivon")  # dev-only oracle, never imported by smoothlab
    kw = {"lr": 0.1, "ess": 10.0, "hess_init": 0.5, "weight_decay": 1e-2, "beta1": 0.8,
          "beta2": 0.9, "rescale_lr": rescale_lr}  # fmt: skip
    means, thetas, expected = _oracle_update(ivon_module, kw)
    model = _mlp()
    opt = IVON(model.parameters(), **kw)
    sigmas = opt.posterior_std()
    noise = iter([(t - m) / s for t, m, s in zip(thetas, means, sigmas, strict=True)])
    opt._fill_noise = lambda buffer, generator: buffer.copy_(next(noise))  # type: ignore[method-assign]
    x, y = _data()
    with opt.sampled_params(train=True):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "kind", "match"),
    [
        ({"lr": 0.0}, ValueError, "`lr` must be > 0.0, got 0.0"),
        ({"ess": -1.0}, ValueError, "`ess` must be > 0.0, got -1.0"),
        ({"hess_init": 0.0}, ValueError, "`hess_init` must be > 0.0, got 0.0"),
        ({"beta1": 1.0}, ValueError, "`beta1` must be < 1.0, got 1.0"),
        ({"beta1": -0.1}, ValueError, "`beta1` must be >= 0.0, got -0.1"),
        ({"beta2": 1.5}, ValueError, "`beta2` must be <= 1.0, got 1.5"),
        ({"weight_decay": -1e-3}, ValueError, "`weight_decay` must be >= 0.0, got -0.001"),
        ({"clip_radius": 0.0}, ValueError, "`clip_radius` must be > 0.0, got 0.0"),
        ({"mc_samples": 0}, ValueError, "`mc_samples` must be >= 1, got 0"),
        ({"rescale_lr": 1}, TypeError, "`rescale_lr` must be a bool, got 1"),
        ({"generator": 3}, TypeError, "`generator` must be a torch.Generator or None, got int"),
    ],
)
def test_constructor_errors(kwargs, kind, match) -> None:
    args = {"lr": 0.1, "ess": 10.0} | kwargs
    with pytest.raises(kind, match=match):
        IVON([nn.Parameter(torch.zeros(2))], **args)


def test_usage_errors() -> None:
    w = nn.Parameter(torch.zeros(2))
    opt = IVON([w], lr=0.1, ess=10.0, mc_samples=2)
    with pytest.raises(RuntimeError, match=r"`step\(\)` must follow mc_samples=2 .* got 0"):
        opt.step()
    with opt.sampled_params(train=True):
        w.sum().backward()
        with pytest.raises(RuntimeError, match=r"`step\(\)` must come after the `sampled_par"):
            opt.step()
    with pytest.raises(RuntimeError, match=r"`step\(\)` must follow mc_samples=2 .* got 1"):
        opt.step()
    with pytest.raises(RuntimeError, match=r"`state_dict\(\)` must be taken between steps, got 1"):
        opt.state_dict()
    with pytest.raises(RuntimeError, match="`sampled_params\\(\\)` must not be nested"):  # noqa: SIM117
        with opt.sampled_params(), opt.sampled_params():
            pass
    with pytest.raises(TypeError, match="`params` must be floating-point tensors, got a torch"):
        IVON([torch.zeros(2, dtype=torch.long)], lr=0.1, ess=1.0)
    with pytest.raises(ValueError, match="`state_dict` must be an IVON state dict"):
        opt.load_state_dict(torch.optim.SGD([w], lr=0.1).state_dict())
    with pytest.raises(ValueError, match="`n_samples` must be >= 1, got 0"):
        opt.predict(nn.Identity(), torch.zeros(1, 2), n_samples=0)


def test_groups_behave_like_separate_optimizers(backend: str) -> None:
    def zero_noise(buffer: torch.Tensor, generator: torch.Generator) -> None:
        buffer.zero_()  # theta = m: deterministic, so the comparison can be bitwise

    a, b = nn.Parameter(torch.tensor([1.0, -2.0])), nn.Parameter(torch.tensor([0.5]))
    a2, b2 = nn.Parameter(a.detach().clone()), nn.Parameter(b.detach().clone())
    joint = IVON([{"params": [a]}, {"params": [b], "lr": 0.3, "beta1": 0.5, "ess": 7.0}],
                 lr=0.1, ess=10.0)  # fmt: skip
    alone = [IVON([a2], lr=0.1, ess=10.0), IVON([b2], lr=0.3, beta1=0.5, ess=7.0)]
    for opt in (joint, *alone):
        opt._fill_noise = zero_noise  # type: ignore[method-assign]
    for _ in range(3):
        for opt, params in ((joint, (a, b)), (alone[0], (a2,)), (alone[1], (b2,))):
            with opt.sampled_params(train=True):
                opt.zero_grad()
                sum((p**2).sum() for p in params).backward()  # type: ignore[union-attr]
            opt.step()
    assert torch.equal(a, a2)
    assert torch.equal(b, b2)


def test_beta2_one_keeps_the_hessian_fixed(backend: str) -> None:  # Yang et al., Fig. 6 ablation
    model = _mlp()
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, beta2=1.0, hess_init=0.3, generator=_gen())
    sigma = opt.posterior_std()
    _train(model, opt, 3)
    for p in model.parameters():
        assert torch.equal(opt.state[p]["hess"], torch.full_like(p, 0.3))
    for before, after in zip(sigma, opt.posterior_std(), strict=True):
        assert torch.equal(before, after)


def test_works_with_a_learning_rate_scheduler() -> None:
    model = _mlp()
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, generator=_gen())
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5**epoch)
    for _ in range(2):
        _train(model, opt, 1)
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_one_cycle_runs_without_cycling_momentum_as_the_docstring_says() -> None:
    model = _mlp()
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, generator=_gen())
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=4,
                                                    cycle_momentum=False)  # fmt: skip
    lrs = []
    for _ in range(3):
        _train(model, opt, 1)
        scheduler.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] > lrs[-1] and opt.param_groups[0]["beta1"] == 0.9


# ------------------------------------------------------- closures, frameworks and clipping
def _loss(model: nn.Module) -> torch.Tensor:
    x, y = _data()
    return nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("mc", [1, 3])
def test_a_plain_closure_runs_at_samples_drawn_by_step(mc: int, backend: str) -> None:
    """A framework's closure (zero_grad, forward, backward, no sampling) gives the loop's step."""
    results = []
    for use_closure in (False, True):
        model = _mlp()
        opt = IVON(model.parameters(), lr=0.1, ess=10.0, mc_samples=mc, generator=_gen(5))
        calls: list[torch.Tensor] = []

        def closure(
            model: nn.Module = model, opt: IVON = opt, calls: list[torch.Tensor] = calls
        ) -> torch.Tensor:
            opt.zero_grad()
            loss = _loss(model)
            loss.backward()
            calls.append(loss.detach())
            return loss

        if use_closure:
            loss = opt.step(closure)
            assert len(calls) == mc
            torch.testing.assert_close(loss, torch.stack(calls).mean(), rtol=0, atol=0)
        else:
            _train(model, opt, 1)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_closures_returning_none_are_fine_and_tensors_are_averaged() -> None:
    model = _mlp()
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, mc_samples=3, generator=_gen())
    returns = iter([None, torch.tensor(2.0), torch.tensor(4.0), None, None, None])

    def closure() -> torch.Tensor | None:
        opt.zero_grad()
        _loss(model).backward()
        return next(returns)

    assert opt.step(closure).item() == 3.0  # the mean of 2 and 4; the None is left out
    before = [p.detach().clone() for p in model.parameters()]
    assert opt.step(closure) is None
    assert all(opt.state[p]["step"] == 2 for p in model.parameters())
    assert not any(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_a_closure_without_backward_updates_nothing() -> None:
    """Lightning skips a batch whose training_step returns None: zero_grad, no backward."""
    model = _mlp()
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, generator=_gen())
    before = [p.detach().clone() for p in model.parameters()]
    assert opt.step(lambda: opt.zero_grad()) is None
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)
        assert opt.state[p]["step"] == 0


def test_a_closure_after_recorded_samples_is_called_once_unsampled() -> None:
    """Lightning's manual `optimizer.step()` hands IVON a closure that does nothing."""
    model = _mlp()
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, mc_samples=2, generator=_gen())
    for _ in range(2):
        with opt.sampled_params(train=True):
            opt.zero_grad()
            _loss(model).backward()
    means = [p.detach().clone() for p in model.parameters()]
    seen: list[bool] = []

    def closure() -> None:
        seen.append(all(torch.equal(p, m) for p, m in zip(model.parameters(), means, strict=True)))

    assert opt.step(closure) is None
    assert seen == [True]  # called once, at the mean
    assert all(opt.state[p]["step"] == 1 for p in model.parameters())


def test_a_closure_that_leaves_earlier_gradients_is_refused() -> None:
    """Backward at the mean before `step(no-op closure)` would be recorded as a sample's."""
    model = _mlp()
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, generator=_gen())
    _loss(model).backward()
    with pytest.raises(
        RuntimeError,
        match=r"`closure` must run backward when `step\(closure\)` calls it .*got only gradients from before the call",
    ):
        opt.step(lambda: None)
    assert opt._samples == 0  # nothing recorded


def _clipped_step(where: str, max_norm: float | None) -> list[torch.Tensor]:
    model = _mlp()
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, generator=_gen(2))

    def clip() -> None:
        if max_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _loss(model)
        loss.backward()
        clip()
        return loss

    if where == "closure":
        opt.step(closure)
    else:
        with opt.sampled_params(train=True):
            opt.zero_grad()
            _loss(model).backward()
            if where == "block":
                clip()
        if where == "after":
            clip()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("where", ["block", "closure"])
def test_clipping_where_ivon_reads_the_gradient_is_honoured(where: str, backend: str) -> None:
    free, clipped = _clipped_step(where, None), _clipped_step(where, 1e-3)
    loose = _clipped_step(where, 1e6)  # a bound that is not reached changes nothing
    assert not any(torch.equal(a, b) for a, b in zip(free, clipped, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(free, loose, strict=True))


def test_clipping_after_the_block_is_refused() -> None:
    """It used to be silently ignored (the same step as without clipping)."""
    message = r"`p.grad` must not change between the `sampled_params\(train=True\)` block and `step\(\)` .*got 4 gradient\(s\) written after the block"
    with pytest.raises(RuntimeError, match=message):
        _clipped_step("after", 1e-3)
    model = _mlp()
    opt = IVON(model.parameters(), lr=0.1, ess=10.0, generator=_gen())
    with opt.sampled_params(train=True):
        opt.zero_grad()
        _loss(model).backward()
    opt.zero_grad()  # dropping the gradients after the block is harmless
    opt.step()
    with opt.sampled_params(train=True):
        opt.zero_grad()
    _loss(model).backward()  # a backward outside the block is not
    with pytest.raises(RuntimeError, match="got 4 gradient"):
        opt.step()
