r"""Smooth ECE: kernel-smoothed calibration error with a self-chosen bandwidth (L1: torch only).

Blasiok & Nakkiran (ICLR 2024) replace the bins of the ECE by a Gaussian kernel reflected at 0 and
1. With top-label confidences :math:`c_i`, correctness :math:`o_i` and residuals
:math:`r_i = c_i - o_i`, the smoothed residual and its calibration error at bandwidth
:math:`\sigma` are

.. math::
    \rho_\sigma(t) = \frac{1}{N} \sum_i r_i \tilde K_\sigma(t, c_i), \qquad
    \mathrm{smECE}_\sigma = \int_0^1 |\rho_\sigma(t)| \, dt,

where the reflected kernel :math:`\tilde K_\sigma(t, c) = \sum_{k \in \mathbb{Z}}
\varphi_\sigma(t - c + 2k) + \varphi_\sigma(t + c + 2k)` is the density at :math:`t` of
:math:`c + \sigma \eta` folded back into :math:`[0, 1]` (so it integrates to 1 over :math:`[0, 1]`).
The paper's ratio form, :math:`\int |\hat r(t)| \hat\delta(t) dt` with the Nadaraya-Watson mean
residual :math:`\hat r` and the kernel density :math:`\hat\delta`, is the same number. The
bandwidth is the paper's fixed point :math:`\sigma^\star = \mathrm{smECE}_{\sigma^\star}` (unique,
since :math:`\mathrm{smECE}_\sigma` does not increase with :math:`\sigma`), so the reported value
is :math:`\sigma^\star` itself.

Computation (exact up to float64 rounding, not binned): the reflected kernel is the Neumann heat
kernel on :math:`[0, 1]`, whose cosine series is :math:`\tilde K_\sigma(t, c) = 1 + 2
\sum_{m \ge 1} e^{-\pi^2 m^2 \sigma^2 / 2} \cos(\pi m t) \cos(\pi m c)`; so
:math:`\rho_\sigma(t) = a_0 + 2 \sum_m e^{-\pi^2 m^2 \sigma^2/2} a_m \cos(\pi m t)` with
:math:`a_m = \frac1N \sum_i r_i \cos(\pi m c_i)`, truncated where the factor falls below 1e-16,
and the integral is a midpoint rule on at least 16 points per period of the highest term. The
fixed point is found in :math:`[10^{-3}, 1]` to a relative 1e-13 by a safeguarded Newton search
on :math:`f(\sigma) = \mathrm{smECE}_\sigma - \sigma`: the derivative comes out of the same
batched FFT, each evaluation brackets the root between :math:`\sigma` and
:math:`\mathrm{smECE}_\sigma`, and bisection takes over whenever Newton stalls; typically 2-8
evaluations where bisection needed ~45. A fixed point below :math:`10^{-3}` (nearly perfect
calibration) is reported as :math:`\mathrm{smECE}_{10^{-3}}`, as the authors' ``relplot`` does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from smoothlab._checks import check_real
from smoothlab.metrics._validate import check_probs_target
from smoothlab.metrics.scores import top_label

__all__ = ["MIN_BANDWIDTH", "smooth_calibration_error"]

MIN_BANDWIDTH = 1e-3
# exp(-x) < 1e-16 beyond x = 36.85: the cosine series is cut where pi^2 m^2 sigma^2 / 2 passes it.
_CUTOFF = math.sqrt(2 * 36.85) / math.pi
_GRID_PER_TERM = 16
_MIN_GRID = 2048
_RELATIVE_TOLERANCE = 1e-13


def _terms(sigma: float) -> int:
    return math.ceil(_CUTOFF / sigma) + 1


def _cosine_coefficients(conf: Tensor, residual: Tensor, stop: int, start: int = 0) -> Tensor:
    """``a_m = mean_i r_i cos(pi m c_i)`` for ``m = start .. stop - 1``, in chunks of samples.

    With ``m = start + B j + k`` (``0 <= k < B``) the angle-addition formula
    ``cos(u + k theta) = cos(u) cos(k theta) - sin(u) sin(k theta)`` turns the ``N x M`` table of
    cosines into four ``N x sqrt(M)`` tables and two matrix products: cosines cost ~10 times a
    multiply-add, and the search asks for thousands of terms at small bandwidths.
    """
    count = stop - start
    block = math.isqrt(count - 1) + 1  # B = ceil(sqrt(M)) columns of J = ceil(M / B) rows
    rows = -(-count // block)
    outer = start + block * torch.arange(rows, dtype=conf.dtype, device=conf.device)
    inner = torch.arange(block, dtype=conf.dtype, device=conf.device)
    chunk = max(1, 2**22 // (rows + block))  # bound the (chunk, J + B) tables
    total = conf.new_zeros(rows, block)
    for first in range(0, conf.shape[0], chunk):
        theta = math.pi * conf[first : first + chunk].unsqueeze(1)
        r = residual[first : first + chunk].unsqueeze(1)
        phase, offset = theta * outer, theta * inner
        total = total + (r * torch.cos(phase)).T @ torch.cos(offset)
        total = total - (r * torch.sin(phase)).T @ torch.sin(offset)
    return total.reshape(-1)[:count] / conf.shape[0]


def _on_grid(damped: Tensor) -> Tensor:
    """``sum_m w_m cos(pi m t_j)`` at the midpoints ``t_j = (j + 1/2) / G``, for each row of ``w``.

    The sum is the real part of ``sum_m w_m e^{i pi m / 2G} e^{2 pi i j m / 2G}``: an inverse real
    FFT of length ``2G`` (a DCT-III), ``O(G log G)`` rather than ``O(G M)``. The real FFT counts
    each ``m >= 1`` with its mirror ``-m``, which is the series' factor 2 on those terms.
    """
    count = damped.shape[-1]
    # A power of two: FFT lengths with a large prime factor are many times slower.
    points = 1 << max(_MIN_GRID, _GRID_PER_TERM * count - 1).bit_length()
    m = torch.arange(count, dtype=damped.dtype, device=damped.device)
    shift = torch.polar(torch.ones_like(m), math.pi * m / (2 * points))
    grid: Tensor = torch.fft.irfft(damped * shift, n=2 * points, norm="forward")
    return grid[..., :points]


def _damping(count: int, sigma: Tensor) -> Tensor:
    """The heat kernel's factors ``exp(-pi^2 m^2 sigma^2 / 2)`` for ``m < count``."""
    m = torch.arange(count, dtype=sigma.dtype, device=sigma.device)
    return torch.exp(-((math.pi * m * sigma) ** 2) / 2)


def _error_at(coefficients: Tensor, sigma: Tensor) -> Tensor:
    """``smECE_sigma`` from the coefficients: a midpoint rule on ``|rho_sigma|``."""
    rho = _on_grid(coefficients * _damping(coefficients.shape[0], sigma))
    return rho.abs().mean()


def _error_and_slope(coefficients: Tensor, sigma: float) -> tuple[float, float]:
    """``smECE_sigma`` and ``d smECE_sigma / d sigma = mean_j sign(rho_j) d rho_j / d sigma``.

    ``d/d sigma`` of a damping factor is ``-pi^2 m^2 sigma`` times it; both series come out of one
    batched real FFT.
    """
    count = coefficients.shape[0]
    damped = coefficients * _damping(count, coefficients.new_tensor(sigma))
    m = torch.arange(count, dtype=damped.dtype, device=damped.device)
    rho, rate = _on_grid(torch.stack([damped, -((math.pi * m) ** 2) * sigma * damped]))
    return float(rho.abs().mean()), float((rho.sign() * rate).mean())


class _Coefficients:
    """Cosine coefficients computed once, extended as smaller bandwidths need more terms."""

    def __init__(self, conf: Tensor, residual: Tensor) -> None:
        self.conf, self.residual = conf, residual
        self.values = _cosine_coefficients(conf, residual, _terms(1.0))

    def error_and_slope(self, sigma: float) -> tuple[float, float]:
        needed = _terms(sigma)
        have = self.values.shape[0]
        if needed > have:  # doubling: few extensions, each computing only the new terms
            extra = _cosine_coefficients(self.conf, self.residual, 2 * needed, start=have)
            self.values = torch.cat([self.values, extra])
        return _error_and_slope(self.values[:needed], sigma)


def _newton_step(sigma: float, error: float, slope: float) -> float:
    """Newton's step for ``f = smECE_sigma - sigma``, long steps down halved in log scale.

    Written as a weighted mean of ``error`` and ``sigma``, so that it is exactly ``error`` when
    the slope is 0; the true slope is <= 0, and clamping its rounding noise keeps the mean.
    Halving a long step down in log scale: ``smECE_1`` is near ``|mean r_i|`` whatever the root,
    and an evaluation costs ~``1 / sigma``, so overshooting down is the costly mistake.
    """
    decay = -min(slope, 0.0)
    step = error + (sigma - error) * (decay / (1 + decay))
    return math.sqrt(sigma * step) if step < sigma / 4 else step


def _fixed_point(conf: Tensor, residual: Tensor) -> float:
    """The bandwidth with ``smECE_sigma = sigma`` in ``[MIN_BANDWIDTH, 1]`` (safeguarded Newton).

    Why it converges: ``f(sigma) = smECE_sigma - sigma`` has slope ``smECE'_sigma - 1 <= -1``, so
    the root lies between ``sigma`` and ``smECE_sigma`` (``f`` changes sign between them: if
    ``smECE_sigma < sigma``, then ``smECE`` at ``smECE_sigma`` is at least ``smECE_sigma``, and the
    mirror case alike) and the Newton step ``sigma + f / (1 - smECE')`` lands between the two. The
    bracket only shrinks; a step that leaves it, or a Newton step that failed to halve it, is
    replaced by bisection, so the search is never much worse than bisection and converges
    quadratically near the root. The floor, the costliest point, is evaluated only when a step
    points at or below it.
    """
    coefficients = _Coefficients(conf, residual)
    low, high, sigma = MIN_BANDWIDTH, 1.0, 1.0  # smECE_1 <= mean |r_i| <= 1
    width, floor_seen = math.inf, False
    while True:
        error, slope = coefficients.error_and_slope(sigma)
        if sigma == MIN_BANDWIDTH:
            if error <= MIN_BANDWIDTH:
                return MIN_BANDWIDTH  # no root above the floor: smECE at the floor is reported
            floor_seen = True
        low, high = max(low, min(sigma, error)), min(high, max(sigma, error))
        if high - low <= _RELATIVE_TOLERANCE * high:
            return 0.5 * (low + high)
        step = _newton_step(sigma, error, slope)
        slack = _RELATIVE_TOLERANCE * high  # rounding in smECE may put an exact step just outside
        halved, width = high - low <= 0.5 * width, high - low
        if step <= low == MIN_BANDWIDTH and not floor_seen:
            sigma = MIN_BANDWIDTH
        elif halved and low - slack <= step <= high + slack:
            sigma = min(max(step, low), high)
        else:
            sigma = 0.5 * (low + high)


def _differentiable_fixed_point(conf: Tensor, residual: Tensor, sigma: float) -> Tensor:
    """``sigma*`` carrying the implicit gradient ``h_theta / (1 - h_sigma)`` of ``h = sigma``."""
    bandwidth = torch.tensor(sigma, dtype=conf.dtype, device=conf.device, requires_grad=True)
    value = _error_at(_cosine_coefficients(conf, residual, _terms(sigma)), bandwidth)
    (slope,) = torch.autograd.grad(value, bandwidth, retain_graph=True)
    attached = value - value.detach()  # zero, carrying d h / d theta
    return bandwidth.detach() + attached / (1 - slope)


def smooth_calibration_error(
    probs: Tensor, target: Tensor, *, bandwidth: float | None = None
) -> Tensor:
    r"""Smooth ECE of the top label (Blasiok & Nakkiran, ICLR 2024); formula in the module.

    .. math::
        \mathrm{smECE}_\sigma = \int_0^1 \Big| \frac1N \sum_i (c_i - o_i)
        \tilde K_\sigma(t, c_i) \Big| dt, \qquad \mathrm{smECE} = \sigma^\star
        \text{ with } \mathrm{smECE}_{\sigma^\star} = \sigma^\star

    Unlike the binned ECE it is continuous in the predictions (no edges to fall across) and
    needs no bin count. It is differentiable in ``probs`` (at a fixed ``bandwidth``, and through
    the fixed point by the implicit function theorem otherwise) except where :math:`\rho_\sigma`
    vanishes on a set of positive length or the arg-max ties.

    Args:
        probs: ``(N, C)`` probabilities; rows sum to 1.
        target: ``(N,)`` class indices in ``[0, C)``.
        bandwidth: a fixed :math:`\sigma` in ``(0, 1]``; ``None`` (default) solves for the
            fixed point :math:`\sigma^\star`.

    Returns:
        A 0-dim float64 tensor (NaN when ``N = 0``).

    All samples at one confidence 0.8, half of them right: the smoothed residual is 0.3 times a
    kernel of mass 1, at every bandwidth:

    >>> probs = torch.tensor([[0.8, 0.2]] * 4)
    >>> smooth_calibration_error(probs, torch.tensor([0, 0, 1, 1]))
    tensor(0.3000, dtype=torch.float64)
    >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> smooth_calibration_error(probs, torch.tensor([0, 1, 1, 1]), bandwidth=0.1)
    tensor(0.1614, dtype=torch.float64)

    Reference: Blasiok & Nakkiran, "Smooth ECE: Principled Reliability Diagrams via Kernel
    Smoothing", ICLR 2024.
    """
    probs, target = check_probs_target(probs, target)
    sigma = None
    if bandwidth is not None:
        sigma = check_real("bandwidth", bandwidth, low=0.0, high=1.0, low_open=True)
    conf, correct = top_label(probs, target)
    if conf.shape[0] == 0:
        return conf.new_tensor(math.nan)
    residual = conf - correct
    if sigma is None:
        with torch.no_grad():
            sigma = _fixed_point(conf, residual)
        if sigma > MIN_BANDWIDTH:  # at the floor, smECE at the floor is computed below
            if residual.requires_grad:
                return _differentiable_fixed_point(conf, residual, sigma)
            return conf.new_tensor(sigma)
    coefficients = _cosine_coefficients(conf, residual, _terms(sigma))
    return _error_at(coefficients, conf.new_tensor(sigma))
