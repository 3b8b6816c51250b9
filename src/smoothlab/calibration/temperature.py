r"""Post-hoc calibration of a trained classifier's logits: temperature and vector scaling (L2).

Temperature scaling divides every logit by one number :math:`T > 0` fitted on held-out data by
minimising the negative log-likelihood

.. math::
    \mathcal{L}(T) = \frac{1}{N} \sum_{i=1}^{N}
        \Big[\log \sum_{k} e^{z_{ik}/T} - z_{i y_i}/T\Big],

which is convex in the inverse temperature :math:`w = 1/T` (a log-sum-exp of functions linear in
:math:`w`). Its derivative :math:`\mathcal{L}'(w) = \frac1N \sum_i (\mathbb{E}_{p_i}[z_i] -
z_{iy_i})` is therefore increasing, and :class:`TemperatureScaling` finds its root by safeguarded
Newton steps inside a bracket (bisection in :math:`\log w` whenever a Newton step would leave the
bracket or shrink too slowly) to a relative precision of about 1e-12 in :math:`T`. The widely
copied recipe ``LBFGS(lr=0.01, max_iter=50)`` from :math:`T = 1.5` takes steps too small to get
there on strongly miscalibrated logits; ``tests/test_calibration.py`` shows both.

Vector scaling (:class:`VectorScaling`) gives every class its own temperature :math:`T_k`; the
NLL is jointly convex in :math:`w_k = 1/T_k` and is minimised over a box of temperatures by
projected Newton steps with an Armijo line search. Unlike temperature scaling it can change the
arg-max.

Both modules fit on the logits' device in float64 (so not on devices without float64, such as
Apple's MPS: move the logits to the CPU first) and never load data: pass the validation logits and
labels as tensors. ``forward`` keeps the logits' dtype and device.

References: Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", ICML 2017
(temperature and vector scaling); Platt, "Probabilistic outputs for support vector machines",
1999 (the one-parameter idea); the lecture notes in ``papers/003`` (temperature scaling section).
"""

from __future__ import annotations

import math
import warnings
from typing import Self

import torch
from torch import Tensor, nn

from smoothlab._checks import check_floating, check_int, check_real
from smoothlab.calibration._inputs import check_classes, check_fit_inputs, mean_nll

__all__ = ["TemperatureScaling", "VectorScaling"]

_RELATIVE_TOLERANCE = 1e-12
_MAX_ITERATIONS = 200


def _check_bounds(low: object, high: object) -> tuple[float, float]:
    t_min = check_real("min_temperature", low, low=0.0, low_open=True)
    t_max = check_real("max_temperature", high, low=t_min, low_open=True)
    return t_min, t_max


def _scalar_derivatives(z: Tensor, z_true: Tensor, w: float) -> tuple[float, float]:
    """First and second derivative of the mean NLL in the inverse temperature ``w``."""
    p = torch.softmax(w * z, dim=1)
    mean_z = (p * z).sum(1)
    first = (mean_z - z_true).mean()
    second = ((p * z * z).sum(1) - mean_z.square()).mean()  # a variance: >= 0
    return float(first), float(second)


def _fit_inverse_temperature(z: Tensor, target: Tensor, low: float, high: float) -> float:
    """Root of the increasing derivative in ``[low, high]``, or the end where it has none."""
    z_true = z.gather(1, target.unsqueeze(1)).squeeze(1)
    if _scalar_derivatives(z, z_true, low)[0] >= 0:
        return low
    if _scalar_derivatives(z, z_true, high)[0] <= 0:
        return high
    w, previous_step = min(max(1.0, low), high), high - low
    for _ in range(_MAX_ITERATIONS):
        first, second = _scalar_derivatives(z, z_true, w)
        if first == 0:
            return w
        low, high = (low, w) if first > 0 else (w, high)
        step = first / second if second > 0 else math.inf
        # Newton inside the bracket while it converges fast; else bisect in log w.
        if low < w - step < high and abs(step) < 0.5 * previous_step:
            new = w - step
        else:
            new = math.sqrt(low * high)
        previous_step = abs(new - w)
        w = new
        if previous_step <= _RELATIVE_TOLERANCE * w or high - low <= _RELATIVE_TOLERANCE * w:
            return w
    return w


def _warn_at_bounds(temperature: Tensor, t_min: float, t_max: float) -> None:
    """Warn when fitted temperatures sit exactly on a bound of the search."""
    reasons = {
        t_max: "the logits do no better than chance here: the NLL keeps falling as T grows",
        t_min: "the data are separated by the logits: the NLL keeps falling as T shrinks",
    }
    for bound, why in reasons.items():
        hits = temperature == bound
        if bool(hits.any()):
            where = (
                "" if temperature.dim() == 0 else f" for classes {hits.nonzero()[:, 0].tolist()}"
            )
            message = f"the fitted temperature sits at its bound {bound:g}{where}; {why}"
            warnings.warn(message, RuntimeWarning, stacklevel=3)


class TemperatureScaling(nn.Module):
    r"""Divide logits by one temperature :math:`T`, fitted to minimise validation NLL.

    .. math:: \mathrm{forward}(z) = z / T, \qquad
        T^\star = \arg\min_{T \in [T_{\min}, T_{\max}]} \frac{1}{N} \sum_i
        -\log \mathrm{softmax}(z_i / T)_{y_i}

    :math:`T` is a positive scalar, so the order of every row of logits and hence the arg-max is
    unchanged (in floating point, two logits within a rounding error of each other can become
    exactly equal; a tie then goes to the lower index, as always with :func:`torch.argmax`).
    If the optimum lies outside the bounds, :meth:`fit` returns the nearer bound and warns.

    Args:
        min_temperature: lower end of the search, ``> 0`` (default 1e-3).
        max_temperature: upper end of the search, ``> min_temperature`` (default 1e3).

    Attributes:
        temperature: 0-dim float64 buffer (1 before fitting), saved in the ``state_dict``.

    Shape:
        - ``fit``: logits ``(N, C)``, target ``(N,)``.
        - ``forward``: any shape, same dtype and device out.

    Four samples with logit gap 4, three of them right: the fitted model says 3/4, so
    :math:`4 / T = \log 3`:

    >>> logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    >>> scaler = TemperatureScaling().fit(logits, torch.tensor([0, 1, 1, 1]))
    >>> scaler.temperature, 4 / math.log(3)
    (tensor(3.6410, dtype=torch.float64), 3.6410)
    >>> scaler(logits)[0]
    tensor([1.0986, 0.0000])

    Reference: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, Section 4.2.
    """

    temperature: Tensor

    def __init__(self, *, min_temperature: float = 1e-3, max_temperature: float = 1e3) -> None:
        super().__init__()
        self.min_temperature, self.max_temperature = _check_bounds(min_temperature, max_temperature)
        self.register_buffer("temperature", torch.ones((), dtype=torch.float64))

    def fit(self, logits: Tensor, target: Tensor) -> Self:
        """Set :attr:`temperature` to the NLL minimiser on ``(logits, target)``; return self."""
        z, y = check_fit_inputs(logits, target)
        low, high = 1 / self.max_temperature, 1 / self.min_temperature
        w = _fit_inverse_temperature(z, y, low, high)
        # An optimum at a bound returns that bound exactly (1 / (1 / t) may not round-trip).
        bound = {low: self.max_temperature, high: self.min_temperature}.get(w)
        temperature = torch.tensor(1 / w if bound is None else bound, dtype=torch.float64)
        _warn_at_bounds(temperature, self.min_temperature, self.max_temperature)
        with torch.no_grad():
            self.temperature.copy_(temperature)
        return self

    def forward(self, logits: Tensor) -> Tensor:
        """``logits / temperature`` in the logits' dtype and device."""
        z = check_floating("logits", logits)
        return z / self.temperature.to(device=z.device, dtype=z.dtype)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature.item():.6g}"


def _nll_gradient_hessian(z: Tensor, target: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean NLL of ``softmax(w * z)`` with its gradient and Hessian in ``w`` (``(C,)``)."""
    log_p = torch.log_softmax(z * w, dim=1)
    n = z.shape[0]
    value = mean_nll(log_p, target)
    pz = log_p.exp() * z
    true_z = torch.zeros_like(w).index_add_(0, target, z.gather(1, target.unsqueeze(1))[:, 0])
    gradient = (pz.sum(0) - true_z) / n
    hessian = torch.diag((pz * z).sum(0) / n) - pz.T @ pz / n
    return value, gradient, hessian


def _newton_direction(gradient: Tensor, hessian: Tensor, free: Tensor) -> Tensor:
    """Newton direction on the ``free`` coordinates, zero on the others."""
    sub = hessian[free][:, free]
    # A tiny ridge keeps the solve defined where a class never varies (singular Hessian).
    ridge = 1e-12 * (1 + sub.diagonal().abs().max())
    eye = torch.eye(sub.shape[0], dtype=sub.dtype, device=sub.device)
    direction = torch.zeros_like(gradient)
    direction[free] = torch.linalg.solve(sub + ridge * eye, -gradient[free])
    return direction


def _fit_inverse_temperatures(
    z: Tensor, target: Tensor, start: Tensor, low: float, high: float
) -> Tensor:
    """Projected Newton (Bertsekas, 1982) on the convex NLL over the box ``low <= w <= high``.

    Coordinates on a bound whose gradient pushes outwards are held fixed; Newton steps on the
    rest are projected back into the box and backtracked until the Armijo condition holds.
    """
    w = start.clamp(low, high)
    for _ in range(_MAX_ITERATIONS):
        value, gradient, hessian = _nll_gradient_hessian(z, target, w)
        held = ((w <= low) & (gradient > 0)) | ((w >= high) & (gradient < 0))
        if bool(held.all()):
            break
        direction = _newton_direction(gradient, hessian, ~held)
        if -float(gradient @ direction) <= 1e-24:  # the squared Newton decrement
            break
        step = 1.0
        while step > 1e-12:
            candidate = (w + step * direction).clamp(low, high)
            change = float(gradient @ (candidate - w))
            # Only the value is needed here: the O(N C^2) Hessian waits for the accepted step.
            new_value = float(mean_nll(torch.log_softmax(z * candidate, dim=1), target))
            if new_value <= float(value) + 1e-4 * change:
                break
            step /= 2
        else:
            break  # no decrease along the projected Newton path: converged to rounding
        w = candidate
    return w


class VectorScaling(nn.Module):
    r"""Divide the logits of class :math:`k` by their own temperature :math:`T_k` (vector scaling).

    .. math:: \mathrm{forward}(z)_{ik} = z_{ik} / T_k, \qquad
        T^\star = \arg\min_{T \in [T_{\min}, T_{\max}]^C} \frac{1}{N} \sum_i
        -\log \mathrm{softmax}(z_i / T)_{y_i}

    This is Guo et al.'s vector scaling without the bias term. :meth:`fit` starts from the
    :class:`TemperatureScaling` solution and runs projected Newton (Bertsekas, 1982) over the box
    of inverse temperatures :math:`w_k = 1/T_k` (the objective is convex there) until the Newton
    decrement vanishes; each step costs :math:`O(N C^2)`. A class whose logits carry no signal
    ends on a bound (usually :math:`T_{\max}`), with a warning naming it. Per-class temperatures
    can change the arg-max.

    Args:
        num_classes: number of classes ``C >= 2`` (fixes the buffer's shape for ``state_dict``).
        min_temperature, max_temperature: the box searched, as in :class:`TemperatureScaling`.

    Attributes:
        temperature: ``(C,)`` float64 buffer (ones before fitting).

    Shape:
        - ``fit``: logits ``(N, C)``, target ``(N,)``.
        - ``forward``: ``(N, C, d1, ...)`` with the class dimension 1, same dtype and device out.

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 6.0], [1.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    >>> scaler = VectorScaling(2).fit(logits, torch.tensor([0, 1, 1, 1, 0]))
    >>> scaler.temperature
    tensor([2.3831, 1.7411], dtype=torch.float64)

    Reference: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, Section 4.2.
    """

    temperature: Tensor

    def __init__(
        self, num_classes: int, *, min_temperature: float = 1e-3, max_temperature: float = 1e3
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, low=2)
        self.min_temperature, self.max_temperature = _check_bounds(min_temperature, max_temperature)
        self.register_buffer("temperature", torch.ones(self.num_classes, dtype=torch.float64))

    def fit(self, logits: Tensor, target: Tensor) -> Self:
        """Set :attr:`temperature` to the NLL minimiser on ``(logits, target)``; return self."""
        z, y = check_fit_inputs(logits, target)
        check_classes(z, self.num_classes)
        low, high = 1 / self.max_temperature, 1 / self.min_temperature
        scalar = _fit_inverse_temperature(z, y, low, high)
        w = _fit_inverse_temperatures(z, y, torch.full_like(z[0], scalar), low, high)
        temperature = (1 / w).clamp(self.min_temperature, self.max_temperature)
        temperature[w == low] = self.max_temperature  # exact bounds, as in TemperatureScaling
        temperature[w == high] = self.min_temperature
        _warn_at_bounds(temperature, self.min_temperature, self.max_temperature)
        with torch.no_grad():
            self.temperature.copy_(temperature)
        return self

    def forward(self, logits: Tensor) -> Tensor:
        """``logits / temperature`` along dimension 1, in the logits' dtype and device."""
        z = check_floating("logits", logits, min_dim=2)
        check_classes(z, self.num_classes)
        shape = [1] * z.dim()
        shape[1] = self.num_classes
        return z / self.temperature.to(device=z.device, dtype=z.dtype).view(shape)
