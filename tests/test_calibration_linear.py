"""Matrix scaling and Dirichlet calibration: planted maps, optimality against scipy, invariants."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import smoothlab.calibration.linear as linear
from smoothlab.calibration import DirichletCalibration, MatrixScaling
from smoothlab.calibration.linear import _gradient_hessian, _penalty_curvature, odir_objective

F64 = torch.float64
MAP = torch.tensor([[0.6, 0.2, 0.0], [-0.1, 1.2, 0.3], [0.2, 0.0, 0.4]], dtype=F64)
SHIFT = torch.tensor([0.3, -0.5, 0.1], dtype=F64)


def planted(n: int, seed: int = 0, *, on_log_probs: bool = False):
    """Logits z and labels drawn from softmax(MAP x + SHIFT), x = z or log softmax(z)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 3, generator=generator, dtype=F64) * 3
    x = torch.log_softmax(logits, 1) if on_log_probs else logits
    probs = torch.softmax(x @ MAP.T + SHIFT, 1)
    return logits, torch.multinomial(probs, 1, generator=generator).squeeze(1)


def params_of(module: MatrixScaling | DirichletCalibration) -> torch.Tensor:
    return torch.cat([module.weight, module.bias.unsqueeze(1)], 1)


def scipy_optimum(x: torch.Tensor, target: torch.Tensor, lam: float, mu: float) -> np.ndarray:
    optimize = pytest.importorskip("scipy.optimize")
    c = x.shape[1]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        params = torch.tensor(flat, dtype=F64, requires_grad=True)
        value = odir_objective(x, target, params.view(c, c + 1), lam, mu)
        (gradient,) = torch.autograd.grad(value, params)
        return float(value.detach()), gradient.numpy()

    start = np.concatenate([np.eye(c), np.zeros((c, 1))], 1).ravel()
    options = {"gtol": 1e-12, "ftol": 1e-16, "maxiter": 5000}
    result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", options=options)
    return result.x.reshape(c, c + 1)


def centred(params: torch.Tensor) -> torch.Tensor:
    """Remove the softmax's invariance (adding one row to every row of [W | b])."""
    return params - params.mean(0, keepdim=True)


@pytest.mark.parametrize("cls", [MatrixScaling, DirichletCalibration])
def test_planted_map_is_recovered_without_penalty(cls) -> None:
    logits, target = planted(20000, on_log_probs=cls is DirichletCalibration)
    module = cls(3, off_diagonal=0.0, intercept=0.0).fit(logits, target)
    truth = centred(torch.cat([MAP, SHIFT.unsqueeze(1)], 1))
    # 5 standard errors of the entries (Fisher information of the planted data): up to 0.021
    # for matrix scaling, 0.046 for Dirichlet calibration
    atol = 0.11 if cls is MatrixScaling else 0.23
    torch.testing.assert_close(centred(params_of(module)), truth, atol=atol, rtol=0)


@pytest.mark.parametrize("cls", [MatrixScaling, DirichletCalibration])
@pytest.mark.parametrize(
    ("lam", "mu", "newton"),
    # L-BFGS (many classes) is slow along the nearly flat shift directions of a weak penalty.
    [(0.0, 0.0, True), (0.05, 0.02, True), (1.0, 1.0, True), (1.0, 1.0, False)],
)
def test_fit_reaches_the_scipy_optimum(
    monkeypatch, cls, lam: float, mu: float, newton: bool
) -> None:
    if not newton:
        monkeypatch.setattr(linear, "NEWTON_MAX_CLASSES", 1)
    logits, target = planted(600, seed=1, on_log_probs=cls is DirichletCalibration)
    module = cls(3, off_diagonal=lam, intercept=mu).fit(logits, target)
    x = module._features(logits)
    oracle = torch.from_numpy(scipy_optimum(x, target, lam, mu))
    ours = odir_objective(x, target, params_of(module), lam, mu)
    assert float(ours) <= float(odir_objective(x, target, oracle, lam, mu)) + 1e-12
    if lam > 0 and mu > 0:  # strictly convex: the minimiser is unique
        torch.testing.assert_close(params_of(module), oracle, atol=1e-6, rtol=0)
    else:  # unique up to the shift: compare the calibrated probabilities
        probs = torch.softmax(module(logits), 1)
        expected = torch.softmax(x @ oracle[:, :-1].T + oracle[:, -1], 1)
        torch.testing.assert_close(probs, expected, atol=1e-6, rtol=0)
    params = params_of(module).requires_grad_()
    (gradient,) = torch.autograd.grad(odir_objective(x, target, params, lam, mu), params)
    assert float(gradient.abs().max()) < 1e-8


def test_hessian_matches_autograd() -> None:
    logits, target = planted(40, seed=2)
    generator = torch.Generator().manual_seed(3)
    params = torch.randn(3, 4, generator=generator, dtype=F64)
    curvature = _penalty_curvature(3, 0.3, 0.2, params)
    gradient, hessian = _gradient_hessian(logits, target, params, curvature)

    def objective(flat: torch.Tensor) -> torch.Tensor:
        return odir_objective(logits, target, flat.view(3, 4), 0.3, 0.2)

    flat = params.reshape(-1)
    torch.testing.assert_close(hessian, torch.autograd.functional.hessian(objective, flat))
    expected = torch.autograd.functional.jacobian(objective, flat).view(3, 4)
    torch.testing.assert_close(gradient, expected)


def test_penalty_is_the_odir_formula() -> None:
    logits, target = planted(30, seed=4)
    params = torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=F64)
    w, b = params[:, :3], params[:, 3]
    off = sum(float(w[j, k]) ** 2 for j in range(3) for k in range(3) if j != k)
    nll = float(F.cross_entropy(logits @ w.T + b, target))
    expected = nll + 0.7 * off / 6 + 0.4 * float(b.square().sum()) / 3
    assert float(odir_objective(logits, target, params, 0.7, 0.4)) == pytest.approx(expected)


def test_identity_before_fit_forward_shapes_and_state_dict() -> None:
    logits, target = planted(300, seed=6)
    images = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(9))
    assert torch.equal(MatrixScaling(3)(images), images)
    before = DirichletCalibration(3)(images)
    torch.testing.assert_close(torch.softmax(before, 1), torch.softmax(images, 1))
    for cls in (MatrixScaling, DirichletCalibration):
        module = cls(3).fit(logits.float(), target)
        out = module(images)
        assert out.dtype == torch.float32 and out.shape == images.shape
        x = images if cls is MatrixScaling else torch.log_softmax(images, 1)
        flat = x.movedim(1, -1) @ module.weight.float().T + module.bias.float()
        torch.testing.assert_close(out, flat.movedim(-1, 1))
        loaded = cls(3)
        loaded.load_state_dict(module.state_dict())
        assert torch.equal(loaded(images), out)
        assert "num_classes=3, off_diagonal=0.01, intercept=0.01" in repr(module)


def test_a_fit_that_stops_short_warns(monkeypatch) -> None:
    monkeypatch.setattr(linear, "NEWTON_MAX_CLASSES", 1)
    monkeypatch.setattr(linear, "_MAX_ITERATIONS", 1)
    logits, target = planted(200, seed=7)
    with pytest.warns(RuntimeWarning, match="the fit did not converge: its largest gradient"):
        MatrixScaling(3).fit(logits, target)


def test_fit_under_no_grad_and_errors() -> None:
    logits, target = planted(200, seed=8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        module = DirichletCalibration(3).fit(logits, target)
    assert float(params_of(module).sub(params_of(DirichletCalibration(3))).abs().max()) > 0.01
    with pytest.raises(ValueError, match="`num_classes` must be >= 2, got 1"):
        MatrixScaling(1)
    with pytest.raises(ValueError, match=r"`off_diagonal` must be >= 0\.0, got -1"):
        MatrixScaling(3, off_diagonal=-1)
    with pytest.raises(TypeError, match="`intercept` must be a real number, got 'no'"):
        DirichletCalibration(3, intercept="no")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"`logits` must be 3 classes along dimension 1, got shape"
    ):
        MatrixScaling(3)(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="`logits` must be 3 classes along dimension 1"):
        DirichletCalibration(3).fit(torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="`logits` must be a tensor with at least 2 dimensions"):
        MatrixScaling(3)(torch.zeros(3))
