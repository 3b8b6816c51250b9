"""Label noise (Yang et al. 2025): quadrature vs Monte Carlo and scipy, the paper's properties."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from smoothlab.analysis import (
    class_smoothed_labels,
    gaussian_softmax_label_noise,
    linear_softmax_label_noise,
    logistic_label_noise,
    noise_magnitude,
    online_smoothing_label_noise,
    predictive_label_noise,
    rank_examples,
    smoothing_label_noise,
)
from smoothlab.optim import IVON
from smoothlab.targets import smooth_targets

from reference import Z5

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _softmax_spread(mean: torch.Tensor, var: torch.Tensor, n: int = 20_000) -> torch.Tensor:
    """Standard deviation of each softmax entry under independent Gaussian logits ``(N, K)``:
    the per-draw spread whose standard error a Monte Carlo mean of ``S`` draws divides by
    sqrt(S)."""
    draws = mean + var.sqrt() * torch.randn(n, *mean.shape, generator=_gen(99), dtype=F64)
    return torch.softmax(draws, -1).std(0)


# ------------------------------------------------------------------------------ logistic (Eq. 13)
def test_logistic_quadrature_matches_scipy_integration() -> None:
    integrate = pytest.importorskip("scipy.integrate")
    for mu, s, tol in [(0.3, 1.0, 1e-9), (-2.0, 0.5, 1e-9), (4.0, 2.0, 1e-8), (1.5, 4.0, 1e-5)]:
        integrand = lambda e, mu=mu, s=s: math.exp(-0.5 * e * e) / (1 + math.exp(-(mu + s * e)))  # noqa: E731
        expected = integrate.quad(integrand, -40, 40, epsabs=1e-13)[0] / math.sqrt(2 * math.pi)
        twin = 1 / (1 + math.exp(-mu)) - expected
        got = logistic_label_noise(torch.tensor(mu, dtype=F64), torch.tensor(s, dtype=F64))
        assert got.item() == pytest.approx(twin, abs=tol)


def test_logistic_quadrature_matches_monte_carlo() -> None:
    mu = torch.tensor([-3.0, -1.0, 0.5, 2.0], dtype=F64)
    s = torch.tensor([1.0, 2.0, 0.7, 3.0], dtype=F64)
    e = torch.randn(400_000, 1, generator=_gen(), dtype=F64)
    samples = torch.sigmoid(mu) - torch.sigmoid(mu + s * e)
    standard_error = samples.std(0) / math.sqrt(e.shape[0])
    got = logistic_label_noise(mu, s)
    assert ((got - samples.mean(0)).abs() < 4 * standard_error).all()


def test_logistic_noise_vanishes_at_zero_mean_and_zero_std() -> None:
    s = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    assert logistic_label_noise(torch.zeros(3, dtype=F64), s).abs().max() < 1e-14
    mu = torch.linspace(-5, 5, 11, dtype=F64)
    assert logistic_label_noise(mu, torch.zeros(11, dtype=F64)).abs().max() < 1e-15
    collapsing = logistic_label_noise(torch.tensor(1.0, dtype=F64), torch.tensor(1e-4, dtype=F64))
    assert abs(collapsing.item()) < 1e-8  # O(s^2)


@given(mu=st.floats(0.01, 8.0), s=st.floats(0.01, 5.0))
def test_logistic_noise_is_odd_signed_and_bounded(mu: float, s: float) -> None:
    m, std = torch.tensor([mu, -mu], dtype=F64), torch.tensor(s, dtype=F64)
    plus, minus = logistic_label_noise(m, std).tolist()
    assert plus == pytest.approx(-minus, abs=1e-12)  # odd in the mean logit
    assert plus > 0  # the noise has the sign of the mean logit (pushes towards 1/2)
    assert plus < 1 / (1 + math.exp(-mu)) - 0.5  # at most the whole way to 1/2


def test_logistic_noise_grows_with_the_spread_towards_its_limit() -> None:
    mu = torch.tensor(1.0, dtype=F64)
    values = [logistic_label_noise(mu, torch.tensor(s, dtype=F64)).item() for s in (0.5, 1, 2, 4)]
    assert values == sorted(values)
    limit = logistic_label_noise(mu, torch.tensor(300.0, dtype=F64)).item()
    assert limit == pytest.approx(1 / (1 + math.exp(-1)) - 0.5, abs=1e-3)


def test_logistic_noise_peaks_away_from_zero() -> None:  # Yang et al., Fig. 2 (unit variance)
    mu = torch.linspace(0, 8, 801, dtype=F64)
    noise = logistic_label_noise(mu, torch.ones_like(mu))
    peak = mu[noise.argmax()].item()
    assert 0.5 < peak < 3.0
    assert noise[-1] < 0.01 * noise.max()


def test_logistic_noise_is_differentiable() -> None:
    mu = torch.tensor([0.3, -1.2], dtype=F64, requires_grad=True)
    s = torch.tensor([0.8, 2.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: logistic_label_noise(a, b, degree=20), (mu, s))


# ---------------------------------------------------------------------------- softmax (Eq. 16)
def test_two_class_softmax_reduces_to_logistic() -> None:
    mu = torch.tensor([[0.0, 1.2], [0.0, -0.4]], dtype=F64)
    var = torch.tensor([[0.0, 2.25], [0.0, 0.36]], dtype=F64)
    got = gaussian_softmax_label_noise(mu, var, n_samples=200_000, generator=_gen())
    exact = logistic_label_noise(mu[:, 1], var[:, 1].sqrt())
    tolerance = Z5 * _softmax_spread(mu, var)[:, 1] / math.sqrt(200_000)
    assert ((got[:, 1] - exact).abs() <= tolerance).all()
    torch.testing.assert_close(got.sum(1), torch.zeros(2, dtype=F64), atol=1e-12, rtol=0)


def test_full_covariance_equals_independent_logits_when_diagonal() -> None:
    mu = torch.tensor([[1.0, 0.0, -0.5]], dtype=F64)
    var = torch.tensor([[0.5, 1.0, 2.0]], dtype=F64)
    diag = gaussian_softmax_label_noise(mu, var, n_samples=100_000, generator=_gen(1))
    full = gaussian_softmax_label_noise(mu, torch.diag_embed(var), n_samples=100_000,
                                        generator=_gen(2))  # fmt: skip
    tolerance = Z5 * _softmax_spread(mu, var) * math.sqrt(2 / 100_000)
    assert ((diag - full).abs() <= tolerance).all()


def test_linear_softmax_matches_sampling_the_weights() -> None:
    g = _gen(3)
    x = torch.randn(4, 3, generator=g, dtype=F64)
    mean = torch.randn(3, 5, generator=g, dtype=F64)
    var = torch.rand(3, 5, generator=g, dtype=F64)
    got = linear_softmax_label_noise(x, mean, var, n_samples=100_000, generator=_gen(4))
    weights = mean + var.sqrt() * torch.randn(100_000, 3, 5, generator=_gen(5), dtype=F64)
    twin = torch.softmax(x @ mean, 1) - torch.softmax(
        torch.einsum("nd,sdk->snk", x, weights), -1
    ).mean(0)
    tolerance = Z5 * _softmax_spread(x @ mean, (x**2) @ var) * math.sqrt(2 / 100_000)
    assert ((got - twin).abs() <= tolerance).all()
    full = linear_softmax_label_noise(x, mean, torch.diag(var.flatten()), n_samples=100_000,
                                      generator=_gen(4))  # fmt: skip
    assert ((full - got).abs() <= tolerance).all()


def test_collapsed_posterior_gives_no_noise() -> None:
    mu = torch.randn(3, 4, generator=_gen(), dtype=F64)
    for cov in (torch.zeros(3, 4, dtype=F64), torch.zeros(3, 4, 4, dtype=F64)):
        noise = gaussian_softmax_label_noise(mu, cov, n_samples=16, generator=_gen())
        assert noise.abs().max() < 1e-15


# ------------------------------------------------------------------------- IVON's posterior
def test_predictive_label_noise_of_a_linear_model_matches_the_closed_form() -> None:
    model = nn.Linear(3, 4).double()
    with torch.no_grad():  # weights from a fixed generator, not the global one (test order)
        model.weight.copy_(torch.randn(4, 3, generator=_gen(4), dtype=F64) / 2)
        model.bias.copy_(torch.randn(4, generator=_gen(5), dtype=F64) / 2)
    opt = IVON(model.parameters(), lr=0.1, ess=2.0, hess_init=0.5, generator=_gen())
    x = torch.randn(6, 3, generator=_gen(1), dtype=F64)
    mc = predictive_label_noise(model, opt, x, n_samples=20_000, generator=_gen(2))
    sigma_w, sigma_b = opt.posterior_std()
    features = torch.cat([x, torch.ones(6, 1, dtype=F64)], 1)
    weight_mean = torch.cat([model.weight.detach().T, model.bias.detach()[None]], 0)
    weight_var = torch.cat([sigma_w.T, sigma_b[None]], 0) ** 2
    exact = linear_softmax_label_noise(features, weight_mean, weight_var, n_samples=100_000,
                                       generator=_gen(3))  # fmt: skip
    # Each estimate is a mean of softmax draws: 5 standard errors of both means, per entry,
    # from the spread of the softmax under the same Gaussian logits.
    spread = _softmax_spread(features @ weight_mean, (features**2) @ weight_var)
    tolerance = Z5 * spread * math.sqrt(1 / 20_000 + 1 / 100_000)
    assert ((mc.noise - exact).abs() <= tolerance).all()
    assert tolerance.max() < 0.2 * mc.noise.abs().max()  # still resolves the noise itself
    torch.testing.assert_close(mc.noise.sum(1), torch.zeros(6, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(mc.magnitude, 0.5 * mc.noise.abs().sum(1))


def test_predictive_label_noise_vanishes_as_the_posterior_collapses() -> None:
    model = nn.Linear(3, 4)
    opt = IVON(model.parameters(), lr=0.1, ess=1e14)
    out = predictive_label_noise(model, opt, torch.randn(5, 3), n_samples=4)
    assert out.magnitude.max() < 1e-5


def test_two_class_network_noise_follows_eq_13_and_ranks_atypical_inputs_higher() -> None:
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    opt = IVON(model.parameters(), lr=0.1, ess=4.0, weight_decay=0.0)  # sigma = 1/2
    # confident; near the boundary; near it with a large feature; very confident
    x = torch.tensor([[2.0, 0.0], [0.6, 1.9], [0.6, 4.0], [6.0, 0.0]])
    out = predictive_label_noise(model, opt, x, n_samples=20_000, generator=_gen())
    # logit difference f1 - f0: mean 2 x_0, variance 2 * sigma^2 * |x|^2 (Eq. 12)
    exact = logistic_label_noise(2 * x[:, 0], (0.5 * x.norm(dim=1) ** 2).sqrt())
    spread = _softmax_spread(torch.stack([torch.zeros(4), 2 * x[:, 0]], 1).double(),
                             torch.stack([torch.zeros(4), 0.5 * x.norm(dim=1) ** 2], 1).double())  # fmt: skip
    tolerance = (Z5 * spread[:, 1] / math.sqrt(20_000)).float()
    assert ((out.noise[:, 1] - exact).abs() <= tolerance).all()
    assert ((out.magnitude - exact.abs()).abs() <= tolerance).all()
    assert rank_examples(out.magnitude).tolist() == [2, 1, 0, 3]


# ------------------------------------------------------------------------ smoothing methods
def test_uniform_smoothing_noise_is_constant_and_matches_the_targets() -> None:
    target = torch.tensor([0, 3, 1, 3])
    noise = smoothing_label_noise(target, 4, 0.2)
    torch.testing.assert_close(
        noise, smooth_targets(target, 4, 0.2) - nn.functional.one_hot(target, 4).float()
    )
    torch.testing.assert_close(noise_magnitude(noise), torch.full((4,), 0.2 * 0.75))
    torch.testing.assert_close(noise.sum(1), torch.zeros(4))


def test_online_smoothing_noise_is_classwise() -> None:
    soft = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    target = torch.tensor([2, 0, 2])
    noise = online_smoothing_label_noise(target, soft, alpha=0.25)
    expected = 0.75 * (soft[target] - nn.functional.one_hot(target, 3).float())
    torch.testing.assert_close(noise, expected)
    assert torch.equal(noise[0], noise[2])
    uniform = online_smoothing_label_noise(target, torch.full((3, 3), 1 / 3), alpha=0.8)
    torch.testing.assert_close(uniform, smoothing_label_noise(target, 3, 0.2))


def _class_smoothed_labels_twin(target: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Loop twin in float64: average y + eps over each class's examples."""
    k = noise.shape[1]
    out = torch.full((k, k), math.nan, dtype=F64)
    for c in range(k):
        rows = [noise[i].double() + (torch.arange(k) == c).double()
                for i in range(len(target)) if int(target[i]) == c]  # fmt: skip
        if rows:
            out[c] = torch.stack(rows).mean(0)
    return out


def test_class_smoothed_labels_matches_its_twin_and_the_closed_forms() -> None:
    g = _gen(3)
    target = torch.randint(0, 4, (50,), generator=g)
    noise = torch.softmax(torch.randn(50, 4, generator=g, dtype=F64), 1)
    noise -= nn.functional.one_hot(target, 4).double()  # a prediction minus the label
    torch.testing.assert_close(
        class_smoothed_labels(target, noise), _class_smoothed_labels_twin(target, noise)
    )
    # uniform smoothing: (1 - r) I + r / K exactly, for every class present
    ls = class_smoothed_labels(target, smoothing_label_noise(target, 4, 0.3))
    torch.testing.assert_close(ls, 0.7 * torch.eye(4) + 0.3 / 4)
    # online smoothing: row c is alpha e_c + (1 - alpha) S_c
    soft = torch.softmax(torch.randn(4, 4, generator=g), 1)
    ols = class_smoothed_labels(target, online_smoothing_label_noise(target, soft, alpha=0.6))
    torch.testing.assert_close(ols, 0.6 * torch.eye(4) + 0.4 * soft)
    torch.testing.assert_close(ols.sum(1), torch.ones(4))


def test_class_smoothed_labels_absent_class_is_nan_and_errors() -> None:
    target = torch.tensor([0, 0, 2])
    out = class_smoothed_labels(target, smoothing_label_noise(target, 3, 0.1))
    assert out[1].isnan().all() and not out[[0, 2]].isnan().any()
    noise = torch.zeros(3, 3)
    with pytest.raises(TypeError, match=re.escape("`noise` must be a floating-point tensor")):
        class_smoothed_labels(target, noise.long())
    with pytest.raises(ValueError, match=re.escape("`noise` must be label noise of shape (N, K)")):
        class_smoothed_labels(target, torch.zeros(3))
    with pytest.raises(ValueError, match=re.escape("`target` must be class indices of shape (3,)")):
        class_smoothed_labels(target[:2], noise)
    with pytest.raises(ValueError, match=re.escape("`target` must be")):
        class_smoothed_labels(torch.tensor([0, 1, 3]), noise)


def test_rank_examples() -> None:
    magnitude = torch.tensor([0.2, 0.5, 0.2, 0.0])
    assert rank_examples(magnitude).tolist() == [1, 0, 2, 3]
    assert rank_examples(magnitude, 2, least=True).tolist() == [3, 0]
    assert rank_examples(magnitude, 0).tolist() == []


def test_errors() -> None:
    f = torch.zeros(2)
    with pytest.raises(ValueError, match=re.escape("`logit_std` must be finite and non-negative")):
        logistic_label_noise(f, torch.tensor([1.0, -1.0]))
    with pytest.raises(TypeError, match=re.escape("`mean_logit` must be a floating-point tensor")):
        logistic_label_noise(torch.zeros(2, dtype=torch.long), f)
    with pytest.raises(ValueError, match=re.escape("`degree` must be >= 1, got 0")):
        logistic_label_noise(f, f, degree=0)
    with pytest.raises(
        ValueError, match=re.escape("`logit_cov` must be of shape (2, 3) or (2, 3, 3)")
    ):
        gaussian_softmax_label_noise(torch.zeros(2, 3), torch.zeros(3, 3), n_samples=2)
    with pytest.raises(ValueError, match=re.escape("`logit_cov` must be non-negative variances")):
        gaussian_softmax_label_noise(torch.zeros(1, 2), -torch.ones(1, 2), n_samples=2)
    with pytest.raises(ValueError, match=re.escape("`logit_cov` must be positive semi-definite")):
        gaussian_softmax_label_noise(torch.zeros(1, 2), -torch.eye(2)[None], n_samples=2)
    with pytest.raises(ValueError, match=re.escape("`n_samples` must be >= 1, got 0")):
        gaussian_softmax_label_noise(torch.zeros(1, 2), torch.ones(1, 2), n_samples=0)
    with pytest.raises(
        ValueError, match=re.escape("`features` must be of shape (N, 2), got shape (1, 3)")
    ):
        linear_softmax_label_noise(
            torch.zeros(1, 3), torch.zeros(2, 4), torch.zeros(2, 4), n_samples=2
        )
    with pytest.raises(
        ValueError, match=re.escape("`weight_cov` must be of shape (2, 4) or (8, 8)")
    ):
        linear_softmax_label_noise(
            torch.zeros(1, 2), torch.zeros(2, 4), torch.zeros(4, 2), n_samples=2
        )
    with pytest.raises(
        ValueError, match=re.escape("`k` must be <= the number of examples 2, got 3")
    ):
        rank_examples(f, 3)
    with pytest.raises(ValueError, match=re.escape("`magnitude` must be a tensor of shape (N,)")):
        rank_examples(torch.zeros(2, 2))
    with pytest.raises(
        ValueError, match=re.escape("`noise` must be a tensor with at least 2 dimensions")
    ):
        noise_magnitude(f)
    with pytest.raises(ValueError, match=re.escape("`soft_labels` must be a square (K, K) matrix")):
        online_smoothing_label_noise(torch.tensor([0]), torch.ones(2, 3) / 3, alpha=0.5)
    with pytest.raises(ValueError, match=re.escape("`soft_labels` must be a distribution summing")):
        online_smoothing_label_noise(torch.tensor([0]), torch.ones(2, 2), alpha=0.5)
    with pytest.raises(ValueError, match=re.escape("`alpha` must be <= 1.0, got 1.5")):
        online_smoothing_label_noise(torch.tensor([0]), torch.eye(2), alpha=1.5)
    with pytest.raises(
        ValueError, match=re.escape("`target` must be class indices in [0, 1], got 2")
    ):
        online_smoothing_label_noise(torch.tensor([2]), torch.eye(2), alpha=0.5)
    sgd = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(
        TypeError, match=re.escape("`optimizer` must be a smoothlab.optim.IVON, got SGD")
    ):
        predictive_label_noise(nn.Identity(), sgd, f[None], n_samples=1)  # type: ignore[arg-type]
