r"""Calibration errors, reliability-diagram data and a bootstrap interval for the ECE.

A classifier is calibrated when, among the samples it predicts with confidence :math:`c`, a
fraction :math:`c` is correct. Binned estimators group the top-label confidences
:math:`c_i = \max_k p_{ik}` into bins and compare, per bin :math:`b` with :math:`n_b` samples, the
accuracy :math:`\mathrm{acc}_b` with the mean confidence :math:`\mathrm{conf}_b`.

Binning conventions (DESIGN.md; they decide where ties on an edge land):

- ``binning="uniform"`` (default): edges :math:`e_b = b/B`; bin :math:`b` is the right-closed
  interval :math:`(e_{b-1}, e_b]`; a confidence of exactly 0 goes to the first bin and of exactly 1
  to the last, so there are always exactly :math:`B` bins. This matches scikit-learn's
  ``calibration_curve(strategy="uniform")`` (whose bins are also right-closed). torchmetrics'
  ``calibration_error`` uses left-closed bins :math:`[e_{b-1}, e_b)` and puts a confidence of 1.0
  in an extra phantom bin of its own; the numbers agree with ours unless a confidence sits exactly
  on an edge (0.5, 1.0, ...).
- ``binning="quantile"``: equal-mass ("adaptive") bins whose interior edges are the type-7
  (NumPy default, linear-interpolation) quantiles :math:`b/B` of the confidences, outer edges 0 and
  1; same right-closed rule. Ties in the confidences can leave a bin empty. This matches
  scikit-learn's ``strategy="quantile"``.

Every function returns float64 and a NaN for zero samples.

References: Naeini, Cooper & Hauskrecht, "Obtaining Well Calibrated Probabilities Using Bayesian
Binning", AAAI 2015 (ECE, MCE); Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017 (top-label ECE with 15 bins, reliability diagrams); Nixon et al., "Measuring
Calibration in Deep Learning", CVPR Workshops 2019 (adaptive bins, classwise error).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from smoothlab._checks import check_generator, check_int, check_real
from smoothlab.metrics._binning import (
    Binning,
    Norm,
    bin_sums,
    check_binning,
    check_norm,
    class_bin_sums,
    error_from_sums,
    type7_quantile,
)
from smoothlab.metrics._validate import check_probs_target
from smoothlab.metrics.scores import top_label

__all__ = [
    "BootstrapInterval",
    "ReliabilityBins",
    "bootstrap_calibration_error",
    "classwise_calibration_error",
    "debiased_calibration_error",
    "expected_calibration_error",
    "reliability_bins",
    "reliability_from_sums",
]


@dataclass(frozen=True, eq=False)
class ReliabilityBins:
    """Per-bin data of a reliability diagram (all tensors float64 except ``count``).

    Attributes:
        edges: ``(B + 1,)`` bin edges, ``edges[0] = 0`` and ``edges[-1] = 1``; bin ``b`` is
            ``(edges[b], edges[b + 1]]`` (a confidence of 0 is in bin 0).
        confidence: ``(B,)`` mean confidence per bin; NaN for an empty bin.
        accuracy: ``(B,)`` fraction correct per bin; NaN for an empty bin.
        count: ``(B,)`` int64 number of samples per bin; 0 marks an empty bin.
    """

    edges: Tensor
    confidence: Tensor
    accuracy: Tensor
    count: Tensor


def reliability_from_sums(edges: Tensor, sums: Tensor) -> ReliabilityBins:
    """Build :class:`ReliabilityBins` from one row of edges and ``(3, B)`` per-bin sums."""
    count, sum_conf, sum_correct = sums.unbind(0)
    nonempty = count > 0
    confidence = torch.where(nonempty, sum_conf / count, torch.nan)
    accuracy = torch.where(nonempty, sum_correct / count, torch.nan)
    return ReliabilityBins(edges, confidence, accuracy, count.round().to(torch.int64))


def _top_label_sums(
    probs: Tensor, target: Tensor, n_bins: object, binning: object
) -> tuple[Tensor, Tensor]:
    probs, target = check_probs_target(probs, target)
    count, kind = check_binning(n_bins, binning)
    conf, correct = top_label(probs, target)
    return bin_sums(conf.unsqueeze(0), correct.unsqueeze(0), count, kind)


def expected_calibration_error(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    norm: Norm = "l1",
    binning: Binning = "uniform",
) -> Tensor:
    r"""Top-label expected calibration error (ECE), its RMS (``l2``) and maximum (MCE) forms.

    .. math::
        \mathrm{ECE} = \sum_{b=1}^{B} \frac{n_b}{N} |\mathrm{acc}_b - \mathrm{conf}_b|, \quad
        \mathrm{RMS} = \Big(\sum_b \frac{n_b}{N} (\mathrm{acc}_b - \mathrm{conf}_b)^2\Big)^{1/2},
        \quad \mathrm{MCE} = \max_{b: n_b > 0} |\mathrm{acc}_b - \mathrm{conf}_b|

    with :math:`\mathrm{acc}_b` the fraction of bin :math:`b` whose arg-max is the target and
    :math:`\mathrm{conf}_b` its mean top-label confidence; binning as in the module docstring.

    Args:
        probs: ``(N, C)`` probabilities; rows sum to 1 (see :func:`probs_from_logits`).
        target: ``(N,)`` class indices in ``[0, C)``.
        n_bins: number of bins ``B >= 1`` (15 as in Guo et al.).
        norm: ``"l1"`` (ECE), ``"l2"`` (RMS calibration error) or ``"max"`` (MCE).
        binning: ``"uniform"`` (equal width) or ``"quantile"`` (equal mass, Nixon et al.).

    Returns:
        A 0-dim float64 tensor (NaN when ``N = 0``).

    Three samples in two bins, ``(0, 0.5]`` and ``(0.5, 1]``: the first holds confidence 0.5
    (wrong), the second 0.75 (right) and 0.95 (wrong), so ECE = ``1/3 * 0.5 + 2/3 * |0.5 - 0.85|``:

    >>> probs = torch.tensor([[0.5, 0.5], [0.75, 0.25], [0.05, 0.95]])
    >>> expected_calibration_error(probs, torch.tensor([1, 0, 0]), n_bins=2)
    tensor(0.4000, dtype=torch.float64)
    >>> expected_calibration_error(probs, torch.tensor([1, 0, 0]), n_bins=2, norm="max")
    tensor(0.5000, dtype=torch.float64)

    References: Naeini et al., AAAI 2015; Guo et al., ICML 2017; Nixon et al., 2019.
    """
    kind = check_norm(norm)
    _, sums = _top_label_sums(probs, target, n_bins, binning)
    return error_from_sums(sums[0], kind)


def classwise_calibration_error(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    norm: Norm = "l1",
    binning: Binning = "uniform",
) -> Tensor:
    r"""Classwise calibration error: the calibration error of every class's probability, averaged.

    For each class :math:`k` the probabilities :math:`p_{ik}` of *all* samples are binned and
    compared with the frequency of :math:`y_i = k` in the bin; with :math:`n_{bk}` samples in bin
    :math:`b` of class :math:`k` (``norm="l1"``, Nixon et al.'s static calibration error SCE):

    .. math::
        \mathrm{CCE} = \frac{1}{C} \sum_{k=1}^{C} \sum_{b=1}^{B} \frac{n_{bk}}{N}
        \Big| \frac{1}{n_{bk}} \sum_{i \in b} [y_i = k] - \frac{1}{n_{bk}} \sum_{i \in b} p_{ik}
        \Big|

    ``norm="l2"`` and ``"max"`` replace the inner sum per class as in
    :func:`expected_calibration_error` before averaging over classes; ``binning="quantile"``
    uses equal-mass bins per class (Nixon et al.'s adaptive ACE).

    Args:
        probs: ``(N, C)`` probabilities; rows sum to 1.
        target: ``(N,)`` class indices in ``[0, C)``.
        n_bins, norm, binning: as in :func:`expected_calibration_error`.

    >>> probs = torch.tensor([[0.5, 0.5], [0.75, 0.25], [0.05, 0.95]])
    >>> classwise_calibration_error(probs, torch.tensor([1, 0, 0]), n_bins=2)
    tensor(0.3167, dtype=torch.float64)

    Reference: Nixon et al., "Measuring Calibration in Deep Learning", 2019; Kull et al.,
    "Beyond temperature scaling", NeurIPS 2019 (classwise-ECE).
    """
    kind = check_norm(norm)
    probs, target = check_probs_target(probs, target)
    count, binning_kind = check_binning(n_bins, binning)
    _, sums = class_bin_sums(probs, target, count, binning_kind)
    return error_from_sums(sums, kind).mean()


def debiased_calibration_error(
    probs: Tensor, target: Tensor, *, n_bins: int = 15, binning: Binning = "uniform"
) -> Tensor:
    r"""Debiased estimate of the squared top-label calibration error (Kumar et al., 2019).

    The plug-in :math:`\sum_b \frac{n_b}{N} (\mathrm{acc}_b - \mathrm{conf}_b)^2` (the square
    of the ``l2`` error of :func:`expected_calibration_error`) overestimates the binned squared
    error, because :math:`\mathrm{acc}_b` is a mean of :math:`n_b` Bernoulli outcomes with
    variance :math:`\mu_b (1 - \mu_b) / n_b`. Kumar et al.'s debiased estimator subtracts the
    unbiased estimate of that variance in every bin:

    .. math::
        \widehat{\mathrm{CE}}^2_{\mathrm{db}} = \sum_{b: n_b \ge 2} \frac{n_b}{N} \Big[
        (\mathrm{acc}_b - \mathrm{conf}_b)^2 - \frac{\mathrm{acc}_b (1 - \mathrm{acc}_b)}
        {n_b - 1} \Big]

    For samples drawn i.i.d. it is unbiased for the squared calibration error of the binned
    model (the outcomes of a bin are then i.i.d. Bernoulli). It can be negative when the model
    is nearly calibrated; :math:`\sqrt{\max(0, \cdot)}` estimates the RMS error. A bin with one
    sample has no unbiased variance estimate: its term is left out (its mass still counts in
    :math:`N`). Kumar et al. recommend equal-mass bins (``binning="quantile"``).

    Args:
        probs: ``(N, C)`` probabilities; rows sum to 1.
        target: ``(N,)`` class indices in ``[0, C)``.
        n_bins, binning: as in :func:`expected_calibration_error`.

    Returns:
        A 0-dim float64 tensor (NaN when ``N = 0``).

    Two bins of two samples: ``(0, 0.5]`` holds 0.5 (wrong) and 0.5 (right), ``(0.5, 1]`` holds
    0.9 twice, both right: the plug-in is 0.005, the variance terms are 0.25 and 0:

    >>> probs = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.9, 0.1]])
    >>> debiased_calibration_error(probs, torch.tensor([1, 0, 0, 0]), n_bins=2)
    tensor(-0.1200, dtype=torch.float64)

    Reference: Kumar, Liang & Ma, "Verified Uncertainty Calibration", NeurIPS 2019, Section 5.
    """
    _, sums = _top_label_sums(probs, target, n_bins, binning)
    count, sum_conf, sum_correct = sums[0].unbind(0)
    accuracy = sum_correct / count.clamp(min=1)
    gap = (accuracy - sum_conf / count.clamp(min=1)).square()
    variance = accuracy * (1 - accuracy) / (count - 1).clamp(min=1)
    terms = torch.where(count >= 2, gap - variance, 0.0)
    return (count * terms).sum() / count.sum()


def reliability_bins(
    probs: Tensor, target: Tensor, *, n_bins: int = 15, binning: Binning = "uniform"
) -> ReliabilityBins:
    r"""Per-bin mean confidence, accuracy and count of the top label: a reliability diagram.

    .. math::
        \mathrm{conf}_b = \frac{1}{n_b} \sum_{i \in b} c_i, \qquad
        \mathrm{acc}_b = \frac{1}{n_b} \sum_{i \in b} [\hat y_i = y_i]

    Empty bins have ``count = 0`` and NaN confidence and accuracy (nothing to plot).

    Args:
        probs: ``(N, C)`` probabilities; rows sum to 1.
        target: ``(N,)`` class indices in ``[0, C)``.
        n_bins, binning: as in :func:`expected_calibration_error`.

    >>> probs = torch.tensor([[0.5, 0.5], [0.75, 0.25], [0.05, 0.95]])
    >>> bins = reliability_bins(probs, torch.tensor([1, 0, 0]), n_bins=4)
    >>> bins.count.tolist(), bins.accuracy.tolist(), bins.confidence.tolist()
    ([0, 1, 1, 1], [nan, 0.0, 1.0, 0.0], [nan, 0.5, 0.75, 0.95])

    Reference: DeGroot & Fienberg, "The comparison and evaluation of forecasters", 1983;
    Guo et al., ICML 2017, Figure 1.
    """
    edges, sums = _top_label_sums(probs, target, n_bins, binning)
    return reliability_from_sums(edges[0], sums[0])


@dataclass(frozen=True, eq=False)
class BootstrapInterval:
    """A point estimate with a percentile-bootstrap interval (0-dim float64 tensors)."""

    estimate: Tensor
    low: Tensor
    high: Tensor
    level: float


def _bootstrap_errors(
    conf: Tensor,
    correct: Tensor,
    n_bins: int,
    binning: Binning,
    norm: Norm,
    resamples: int,
    generator: torch.Generator | None,
) -> Tensor:
    """Calibration errors of ``resamples`` resamples with replacement, in chunks of rows."""
    n = conf.shape[0]
    chunk = max(1, 2**22 // n)  # bound memory to a few million resampled entries
    device = generator.device if generator is not None else conf.device
    errors = []
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        index = torch.randint(n, (rows, n), generator=generator, device=device).to(conf.device)
        errors.append(
            error_from_sums(bin_sums(conf[index], correct[index], n_bins, binning)[1], norm)
        )
    return torch.cat(errors)


def bootstrap_calibration_error(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    norm: Norm = "l1",
    binning: Binning = "uniform",
    n_resamples: int = 1000,
    level: float = 0.95,
    generator: torch.Generator | None = None,
) -> BootstrapInterval:
    r"""Percentile-bootstrap confidence interval for :func:`expected_calibration_error`.

    Draws ``n_resamples`` datasets of :math:`N` samples with replacement, computes the error
    :math:`\hat E^{(r)}` on each (re-binning each resample for quantile bins) and returns the
    type-7 quantiles :math:`(1 \mp \text{level})/2` of :math:`\hat E^{(1..R)}`. The binned ECE is
    biased upwards for small bins (Kumar et al., NeurIPS 2019; Roelofs et al., AISTATS 2022); the
    interval describes the sampling variability of this estimator, not that bias.

    Args:
        probs, target, n_bins, norm, binning: as in :func:`expected_calibration_error`.
        n_resamples: number of bootstrap resamples ``R >= 1``.
        level: coverage of the interval, in ``(0, 1)``.
        generator: source of the resampling indices (on its own device); ``None`` uses the
            global generator.

    >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> ci = bootstrap_calibration_error(probs, torch.tensor([0, 1, 1, 0]), n_bins=4,
    ...                                  generator=torch.Generator().manual_seed(0))
    >>> ci.estimate, ci.low <= ci.estimate <= ci.high
    (tensor(0.3500, dtype=torch.float64), tensor(True))

    Reference: Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13.
    """
    kind = check_norm(norm)
    probs, target = check_probs_target(probs, target)
    count, binning_kind = check_binning(n_bins, binning)
    resamples = check_int("n_resamples", n_resamples, low=1)
    coverage = check_real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    rng = check_generator(generator)
    conf, correct = top_label(probs, target)
    estimate = error_from_sums(bin_sums(conf[None], correct[None], count, binning_kind)[1], kind)[0]
    if conf.shape[0] == 0:
        return BootstrapInterval(estimate, estimate, estimate, coverage)
    errors = _bootstrap_errors(conf, correct, count, binning_kind, kind, resamples, rng)
    ordered = errors.sort().values.unsqueeze(0)
    ends = torch.tensor([1 - coverage, 1 + coverage], dtype=torch.float64, device=conf.device) / 2
    low, high = type7_quantile(ordered, (ends * 10**9).round(), 10**9)[0]
    return BootstrapInterval(estimate, low, high, coverage)
