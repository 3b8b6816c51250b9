"""The one private binning kernel behind every calibration metric, the meter and the bootstrap.

Everything here works on rows: ``conf`` and ``outcome`` are ``(K, N)`` float64 tensors, one row per
independent problem (the top label: ``K = 1``; one row per class for classwise errors; one row per
bootstrap resample). Inputs are trusted; the public functions validate.

Conventions (DESIGN.md): bin ``b`` (0-based) is the right-closed interval ``(e_b, e_{b+1}]``, a
confidence of exactly 0 goes to the first bin and a confidence of exactly 1 to the last one, so
there are always exactly ``n_bins`` bins. Comparisons are made in float64.
"""

from __future__ import annotations

from typing import Literal, cast

import torch
from torch import Tensor

from smoothlab._checks import check_int, fail

__all__ = [
    "Binning",
    "Norm",
    "bin_sums",
    "check_binning",
    "check_norm",
    "class_bin_sums",
    "error_from_sums",
    "quantile_edges",
    "type7_quantile",
    "uniform_edges",
]

Norm = Literal["l1", "l2", "max"]
Binning = Literal["uniform", "quantile"]
_NORMS = ("l1", "l2", "max")
_BINNINGS = ("uniform", "quantile")


def check_norm(norm: object) -> Norm:
    """Return ``norm`` if it is ``"l1"``, ``"l2"`` or ``"max"``."""
    if norm not in _NORMS:
        raise fail("norm", "one of 'l1', 'l2', 'max'", norm)
    return cast(Norm, norm)


def check_binning(n_bins: object, binning: object) -> tuple[int, Binning]:
    """Return ``(n_bins, binning)`` after checking ``n_bins >= 1`` and the binning's name."""
    count = check_int("n_bins", n_bins, low=1)
    if binning not in _BINNINGS:
        raise fail("binning", "one of 'uniform', 'quantile'", binning)
    return count, cast(Binning, binning)


def uniform_edges(n_bins: int, device: torch.device | None = None) -> Tensor:
    """Equal-width edges ``b / n_bins`` for ``b = 0..n_bins`` (each correctly rounded)."""
    return torch.arange(n_bins + 1, dtype=torch.float64, device=device) / n_bins


def type7_quantile(sorted_rows: Tensor, numerators: Tensor, denominator: int) -> Tensor:
    """Linear-interpolation quantiles (Hyndman & Fan type 7, NumPy's default) of sorted rows.

    The levels are ``numerators / denominator``; the position ``level * (n - 1)`` is split into
    its integer and fractional parts in exact integer arithmetic, so a level that lands on a data
    point returns that data point exactly. ``sorted_rows`` is ``(K, n)`` with ``n >= 1``.
    """
    n = sorted_rows.shape[-1]
    scaled = numerators.to(torch.int64) * (n - 1)
    lower = torch.div(scaled, denominator, rounding_mode="floor")
    frac = (scaled - lower * denominator).to(sorted_rows.dtype) / denominator
    upper = (lower + 1).clamp(max=n - 1)
    below = sorted_rows[..., lower]
    above = sorted_rows[..., upper]
    return below + (above - below) * frac


def quantile_edges(conf: Tensor, n_bins: int) -> Tensor:
    """Equal-mass edges per row: 0, the type-7 quantiles ``b / n_bins`` of ``conf``, then 1.

    Ties in ``conf`` can make neighbouring edges equal, which leaves the bins between them empty.
    """
    rows = conf.shape[0]
    if conf.shape[1] == 0:
        return uniform_edges(n_bins, conf.device).expand(rows, -1)
    levels = torch.arange(1, n_bins, device=conf.device)
    interior = type7_quantile(conf.sort(dim=-1).values, levels, n_bins)
    # Rounding in the interpolation must never un-sort the edges (searchsorted needs them sorted).
    interior = torch.cummax(interior, dim=-1).values
    zeros = conf.new_zeros(rows, 1)
    return torch.cat([zeros, interior, zeros + 1], dim=-1)


def bin_sums(conf: Tensor, outcome: Tensor, n_bins: int, binning: Binning) -> tuple[Tensor, Tensor]:
    """Bin each row and return ``(edges, sums)``.

    ``edges`` is ``(K, n_bins + 1)``; ``sums`` is ``(K, 3, n_bins)`` holding, per bin, the number
    of samples, the sum of their confidences and the sum of their outcomes (1 = correct).
    """
    rows, n = conf.shape
    if binning == "uniform":
        edges = uniform_edges(n_bins, conf.device).expand(rows, -1)
    else:
        edges = quantile_edges(conf, n_bins)
    # Left-side search on the interior edges: e_b < c <= e_{b+1} gives bin b, 0 gives bin 0.
    index = torch.searchsorted(edges[:, 1:-1].contiguous(), conf.contiguous(), right=False)
    flat = (index + torch.arange(rows, device=conf.device).unsqueeze(1) * n_bins).reshape(-1)
    values = torch.stack([torch.ones_like(conf), conf, outcome]).reshape(3, rows * n)
    sums = conf.new_zeros(3, rows * n_bins).index_add_(1, flat, values)
    return edges, sums.reshape(3, rows, n_bins).transpose(0, 1)


def class_bin_sums(
    probs: Tensor, target: Tensor, n_bins: int, binning: Binning
) -> tuple[Tensor, Tensor]:
    """:func:`bin_sums` of every class's probability ``p_ik`` against ``[y_i = k]`` (``K = C``).

    ``probs`` is ``(N, C)`` and ``target`` ``(N,)`` class indices; the classwise errors use it.
    """
    classes = torch.arange(probs.shape[1], device=probs.device).unsqueeze(1)
    outcome = (target.unsqueeze(0) == classes).to(torch.float64)
    return bin_sums(probs.to(torch.float64).T, outcome, n_bins, binning)


def error_from_sums(sums: Tensor, norm: Norm) -> Tensor:
    r"""Calibration error of each row of per-bin ``sums`` (``(..., 3, B)``), shape ``(...)``.

    With :math:`n_b` samples in bin :math:`b`, :math:`N = \sum_b n_b` and gap
    :math:`g_b = |\mathrm{acc}_b - \mathrm{conf}_b|`: ``l1`` is :math:`\sum_b (n_b/N) g_b`, ``l2``
    is :math:`\sqrt{\sum_b (n_b/N) g_b^2}` and ``max`` is :math:`\max_{b: n_b > 0} g_b`. Empty bins
    carry no weight; no samples at all gives NaN.
    """
    count, sum_conf, sum_outcome = sums.unbind(-2)
    gap = (sum_outcome - sum_conf).abs() / count.clamp(min=1)  # 0 in empty bins
    total = count.sum(-1)
    if norm == "max":
        # Gaps are >= 0, so the zeros of empty bins never win unless every bin is empty.
        return torch.where(total > 0, gap.amax(-1), torch.nan)
    weight = count / total.unsqueeze(-1)  # NaN when there are no samples
    if norm == "l1":
        return (weight * gap).sum(-1)
    return (weight * gap.square()).sum(-1).sqrt()
