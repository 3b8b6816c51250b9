r"""Matrix scaling and Dirichlet calibration with off-diagonal and intercept regularisation (L2).

Both map a row of features :math:`x_i` to calibrated logits :math:`W x_i + b` with a full
:math:`C \times C` matrix: matrix scaling takes the logits, :math:`x_i = z_i` (Guo et al., 2017);
Dirichlet calibration takes the log-probabilities, :math:`x_i = \log \mathrm{softmax}(z_i)`, and so
calibrates any probabilistic classifier (Kull et al., 2019). Both fit by minimising

.. math::
    \mathcal{L}(W, b) = \frac1N \sum_i -\log \mathrm{softmax}(W x_i + b)_{y_i}
        + \frac{\lambda}{C (C - 1)} \sum_{j \ne k} W_{jk}^2 + \frac{\mu}{C} \sum_k b_k^2,

Kull et al.'s ODIR (off-diagonal and intercept regularisation): the diagonal stays free, so with
``off_diagonal`` and ``intercept`` large the map tends to vector scaling. The objective is convex;
it is minimised in float64 from the identity map by damped Newton steps for up to 16 classes
(to rounding) and by L-BFGS with a strong-Wolfe line search above (to a largest gradient entry of
1e-10; a fit that stops short warns). Kull et al. choose :math:`\lambda` and :math:`\mu` by
cross-validation. When the logits separate the validation data the objective has no minimum
along the (unregularised) diagonal: the fit then stops where the gradient vanishes to rounding,
with large weights and probabilities near 0 and 1.
"""

from __future__ import annotations

import warnings
from typing import Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothlab._checks import check_floating, check_int, check_real
from smoothlab.calibration._inputs import check_classes, check_fit_inputs

__all__ = ["DirichletCalibration", "MatrixScaling"]

_GRADIENT_TOLERANCE = 1e-10
_MAX_ITERATIONS = 2000
# Newton's Hessian has (C (C + 1))^2 entries and costs O(N C^4): above this many classes,
# L-BFGS (O(N C^2) a step) is the better trade.
NEWTON_MAX_CLASSES = 16


def odir_objective(
    features: Tensor, target: Tensor, params: Tensor, lam: float, mu: float
) -> Tensor:
    """Mean NLL of ``softmax(features @ W.T + b)`` plus the ODIR penalty; ``params = [W | b]``."""
    weight, bias = params[:, :-1], params[:, -1]
    c = weight.shape[0]
    off = weight - torch.diag(torch.diagonal(weight))
    penalty = lam / (c * (c - 1)) * off.square().sum() + mu / c * bias.square().sum()
    return F.cross_entropy(features @ weight.T + bias, target) + penalty


def _penalty_curvature(c: int, lam: float, mu: float, like: Tensor) -> Tensor:
    """``(C, C + 1)`` second derivative of the penalty in each entry of ``[W | b]``."""
    curvature = like.new_full((c, c + 1), 2 * lam / (c * (c - 1)))
    curvature[:, -1] = 2 * mu / c
    return curvature.fill_diagonal_(0.0)


def _gradient_hessian(
    features: Tensor, target: Tensor, params: Tensor, curvature: Tensor
) -> tuple[Tensor, Tensor]:
    """Gradient ``(C, C + 1)`` and Hessian ``(P, P)`` of the objective, ``P = C (C + 1)``."""
    n, c = features.shape
    x = torch.cat([features, features.new_ones(n, 1)], 1)
    p = torch.softmax(x @ params.T, 1)
    residual = p - F.one_hot(target, c).to(p.dtype)
    gradient = residual.T @ x / n + curvature * params
    blocks = torch.einsum("ik,ia,ib->kab", p, x, x) / n
    q = (p.unsqueeze(2) * x.unsqueeze(1)).reshape(n, -1)
    hessian = torch.diag(curvature.reshape(-1)) - q.T @ q / n
    diagonal = torch.arange(c, device=p.device)
    hessian.view(c, c + 1, c, c + 1)[diagonal, :, diagonal, :] += blocks  # the k = l blocks
    return gradient, hessian


def _pseudo_newton_step(hessian: Tensor, gradient: Tensor) -> Tensor:
    """``-H^+ g`` with the pseudo-inverse: without penalty the softmax's shift invariance makes
    ``H`` singular, and a ridge would send rounding noise along those flat directions."""
    eigenvalues, vectors = torch.linalg.eigh(hessian)
    keep = eigenvalues > 1e-12 * eigenvalues.abs().max()
    inverse = torch.where(keep, 1 / eigenvalues.where(keep, 1.0), 0.0)
    step: Tensor = -(vectors @ (inverse * (vectors.T @ gradient)))
    return step


def _newton(features: Tensor, target: Tensor, start: Tensor, lam: float, mu: float) -> Tensor:
    """Damped Newton (Armijo backtracking) on the convex objective until the decrement vanishes."""
    params = start
    curvature = _penalty_curvature(params.shape[0], lam, mu, params)
    for _ in range(_MAX_ITERATIONS):
        value = float(odir_objective(features, target, params, lam, mu))
        gradient, hessian = _gradient_hessian(features, target, params, curvature)
        step = _pseudo_newton_step(hessian, gradient.reshape(-1)).view_as(params)
        slope = float((gradient * step).sum())
        if -slope <= 1e-20:  # the squared Newton decrement: below this it is rounding noise
            break
        size = 1.0
        while size > 1e-12:
            candidate = params + size * step
            # Strict: a step that only ties in rounding is no progress.
            new_value = float(odir_objective(features, target, candidate, lam, mu))
            if new_value < value + 1e-4 * size * slope:
                break
            size /= 2
        else:
            break  # no decrease along the Newton direction: converged to rounding
        params = candidate
    return params


def _lbfgs(features: Tensor, target: Tensor, start: Tensor, lam: float, mu: float) -> Tensor:
    """L-BFGS with a strong-Wolfe line search, for many classes."""
    params = start.clone().requires_grad_()
    optimizer = torch.optim.LBFGS(
        [params],
        max_iter=_MAX_ITERATIONS,
        tolerance_grad=_GRADIENT_TOLERANCE,
        tolerance_change=0.0,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        loss = odir_objective(features, target, params, lam, mu)
        (params.grad,) = torch.autograd.grad(loss, [params])
        return loss.detach()

    with torch.enable_grad():  # fit may be called under no_grad (e.g. in an eval loop)
        optimizer.step(closure)  # type: ignore[no-untyped-call]
    return params.detach()


def _fit_odir(features: Tensor, target: Tensor, lam: float, mu: float) -> Tensor:
    """Minimise :func:`odir_objective` from the identity map; warn if it does not converge.

    Newton for up to ``NEWTON_MAX_CLASSES`` classes, L-BFGS above."""
    c = features.shape[1]
    start = torch.cat(
        [torch.eye(c, dtype=torch.float64), torch.zeros(c, 1, dtype=torch.float64)], 1
    )
    start = start.to(features.device)
    solver = _newton if c <= NEWTON_MAX_CLASSES else _lbfgs
    params = solver(features, target, start, lam, mu)
    with torch.enable_grad():
        probe = params.clone().requires_grad_()
        (gradient,) = torch.autograd.grad(odir_objective(features, target, probe, lam, mu), probe)
    largest = float(gradient.abs().max())
    if largest > 1e-7:
        message = f"the fit did not converge: its largest gradient entry is {largest:.3g}"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return params


class _LinearCalibrator(nn.Module):
    """Shared state and methods; subclasses choose the features (logits or log-probabilities)."""

    weight: Tensor
    bias: Tensor
    on_log_probabilities = False

    def __init__(self, num_classes: int, *, off_diagonal: float, intercept: float) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, low=2)
        self.off_diagonal = check_real("off_diagonal", off_diagonal, low=0.0)
        self.intercept = check_real("intercept", intercept, low=0.0)
        self.register_buffer("weight", torch.eye(self.num_classes, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(self.num_classes, dtype=torch.float64))

    def _features(self, logits: Tensor) -> Tensor:
        return torch.log_softmax(logits, dim=1) if self.on_log_probabilities else logits

    def fit(self, logits: Tensor, target: Tensor) -> Self:
        """Set :attr:`weight` and :attr:`bias` to the ODIR objective's minimiser; return self."""
        z, y = check_fit_inputs(logits, target)
        check_classes(z, self.num_classes)
        params = _fit_odir(self._features(z), y, self.off_diagonal, self.intercept)
        with torch.no_grad():
            self.weight.copy_(params[:, :-1])
            self.bias.copy_(params[:, -1])
        return self

    def forward(self, logits: Tensor) -> Tensor:
        """``W x + b`` along dimension 1, in the logits' dtype and device."""
        z = check_floating("logits", logits, min_dim=2)
        check_classes(z, self.num_classes)
        x = torch.movedim(self._features(z), 1, -1)
        weight, bias = (t.to(device=z.device, dtype=z.dtype) for t in (self.weight, self.bias))
        return torch.movedim(x @ weight.T + bias, -1, 1)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, off_diagonal={self.off_diagonal:g}, "
            f"intercept={self.intercept:g}"
        )


class MatrixScaling(_LinearCalibrator):
    r"""Calibrated logits :math:`W z + b` with a full matrix, fitted with ODIR (module docstring).

    .. math:: \mathrm{forward}(z)_i = W z_i + b, \qquad
        (W, b) = \arg\min \mathcal{L}(W, b) \text{ with } x_i = z_i

    The identity before fitting. It can change the arg-max; with :math:`C^2 + C` parameters it
    overfits small validation sets unless regularised.

    Args:
        num_classes: number of classes ``C >= 2``.
        off_diagonal: :math:`\lambda \ge 0`, the weight of the off-diagonal penalty.
        intercept: :math:`\mu \ge 0`, the weight of the intercept penalty.

    Attributes:
        weight: ``(C, C)`` float64 buffer; bias: ``(C,)`` float64 buffer.

    Shape:
        - ``fit``: logits ``(N, C)``, target ``(N,)``.
        - ``forward``: ``(N, C, d1, ...)`` with the class dimension 1, same dtype and device out.

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> scaler = MatrixScaling(2, off_diagonal=0.1, intercept=0.1)
    >>> scaler = scaler.fit(logits, torch.tensor([0, 1, 1, 1, 0]))
    >>> torch.softmax(scaler(logits), 1)[:2]
    tensor([[0.9145, 0.0855],
            [0.1379, 0.8621]])

    References: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017 (matrix
    scaling); Kull et al., "Beyond temperature scaling: Obtaining well-calibrated multiclass
    probabilities with Dirichlet calibration", NeurIPS 2019 (ODIR).
    """

    def __init__(
        self, num_classes: int, *, off_diagonal: float = 0.01, intercept: float = 0.01
    ) -> None:
        super().__init__(num_classes, off_diagonal=off_diagonal, intercept=intercept)


class DirichletCalibration(_LinearCalibrator):
    r"""Dirichlet calibration: :math:`W \log p + b` on the log-probabilities, fitted with ODIR.

    .. math:: \mathrm{forward}(z)_i = W \log \mathrm{softmax}(z_i) + b, \qquad
        (W, b) = \arg\min \mathcal{L}(W, b) \text{ with } x_i = \log \mathrm{softmax}(z_i)

    The calibrated distribution :math:`\mathrm{softmax}(W \log p + b)` is Kull et al.'s
    Dirichlet calibration map (a Dirichlet model of :math:`p` per class, inverted by Bayes'
    rule, is this family). Before fitting, ``softmax(forward(z)) = softmax(z)``.

    Args:
        num_classes, off_diagonal, intercept: as in :class:`MatrixScaling`.

    Attributes:
        weight: ``(C, C)`` float64 buffer; bias: ``(C,)`` float64 buffer.

    Shape:
        - ``fit``: logits ``(N, C)``, target ``(N,)``.
        - ``forward``: ``(N, C, d1, ...)`` with the class dimension 1, same dtype and device out.

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> calibrator = DirichletCalibration(2, off_diagonal=0.1, intercept=0.1)
    >>> calibrator = calibrator.fit(logits, torch.tensor([0, 1, 1, 1, 0]))
    >>> torch.softmax(calibrator(logits), 1)[0]
    tensor([0.7967, 0.2033])

    Reference: Kull, Perello-Nieto, Kängsepp, Silva Filho, Song & Flach, "Beyond temperature
    scaling: Obtaining well-calibrated multiclass probabilities with Dirichlet calibration",
    NeurIPS 2019.
    """

    on_log_probabilities = True

    def __init__(
        self, num_classes: int, *, off_diagonal: float = 0.01, intercept: float = 0.01
    ) -> None:
        super().__init__(num_classes, off_diagonal=off_diagonal, intercept=intercept)
