"""Closed forms from the seeds: the optimal smoothing rate under noise and the optimal logit gap."""

from __future__ import annotations

import math

from smoothlab._checks import check_int, check_real, fail

__all__ = ["optimal_logit_gap", "optimal_smoothing_rate"]


def optimal_smoothing_rate(
    num_classes: int, noise_rate: float, clean_optimum: float = 0.0
) -> float:
    r"""The smoothing rate to use on noisy labels to recover the clean optimum (Wei et al. 2022).

    Under symmetric noise where each wrong class is chosen with probability :math:`e/(K-1)`
    (:func:`smoothlab.noise.symmetric`), training with generalized label smoothing of rate

    .. math::
        r_\mathrm{opt} = \frac{(K-1)\, r^* - K e}{(K-1) - K e}

    on noisy labels has the same minimiser as rate :math:`r^*` on clean labels (smoothing mass
    :math:`r/K` on every class). It is negative (negative label smoothing) once
    :math:`e > (K-1) r^* / K`. The formula breaks down at :math:`e = (K-1)/K`, where the noisy
    labels carry no information.

    >>> optimal_smoothing_rate(10, 0.2)
    -0.2857142857142857
    >>> optimal_smoothing_rate(2, 0.1, clean_optimum=0.4)
    0.25

    Reference: J. Wei, H. Liu, T. Liu, G. Niu, M. Sugiyama, Y. Liu, "To Smooth or Not? When Label
    Smoothing Meets Noisy Labels", ICML 2022.
    """
    k = check_int("num_classes", num_classes, low=2)
    e = check_real("noise_rate", noise_rate, low=0.0, high=1.0, high_open=True)
    r_star = check_real("clean_optimum", clean_optimum, high=1.0)
    denominator = (k - 1) - k * e
    if abs(denominator) < 1e-12:
        raise fail(
            "noise_rate",
            f"different from (K-1)/K = {(k - 1) / k:.6g}, where the labels carry no information",
            noise_rate,
        )
    return ((k - 1) * r_star - k * e) / denominator


def optimal_logit_gap(smoothing: float, num_classes: int, *, exclusive: bool = False) -> float:
    r"""Gap between the true and every other logit at the minimum of smoothed cross-entropy.

    With smoothing mass :math:`r/K` on every class (PyTorch's convention, the default) the
    optimum puts :math:`1 - r + r/K` on the true class and :math:`r/K` on each other, so

    .. math:: z_y - z_j = \log\left(1 + \frac{K (1 - r)}{r}\right)

    With ``exclusive=True`` (mass :math:`r/(K-1)` on each other class, the convention of the
    lecture-note formula in circulation) the gap is :math:`\log\frac{(K-1)(1-r)}{r}`. At
    :math:`r = 0` the gap is infinite; negative rates have no finite optimum (the loss is
    unbounded below) and raise.

    >>> round(optimal_logit_gap(0.1, 10), 4)
    4.5109
    >>> round(optimal_logit_gap(0.1, 10, exclusive=True), 4)
    4.3945
    """
    r = check_real("smoothing", smoothing, high=1.0)
    if r < 0:
        raise fail(
            "smoothing",
            ">= 0 (negative smoothing has no finite optimum: its loss is unbounded below)",
            smoothing,
        )
    k = check_int("num_classes", num_classes, low=2)
    if r == 0.0:
        return math.inf
    if exclusive:
        return math.log((k - 1) * (1 - r) / r) if r < 1.0 else -math.inf
    return math.log1p(k * (1 - r) / r)
