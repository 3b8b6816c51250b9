"""Calibration figures: reliability diagrams (one, or small multiples) and confidence histograms.

Bins and the ECE come from :mod:`smoothlab.metrics` (15 equal-width right-closed bins by
default), so a figure always shows the numbers a table reports.

Reference: C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural
Networks", ICML 2017, Figure 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from smoothlab._checks import check_int, fail
from smoothlab.metrics import ReliabilityBins, expected_calibration_error, reliability_bins
from smoothlab.plots._base import (
    COLUMN_WIDTH,
    FONT_SIZE,
    finish_axes,
    new_axes,
    paper_style,
    require,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["confidence_histogram", "reliability_diagram", "reliability_grid"]

_ACCURACY_COLOUR = "#3a6ea5"
_GAP_COLOUR = "#d1495b"


def reliability_diagram(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    ax: Axes | None = None,
    title: str | None = None,
    show_counts: bool = True,
) -> Figure:
    r"""Accuracy against confidence per bin, with the gap to the diagonal, the counts and the ECE.

    Each non-empty bin :math:`b` gets a bar of height :math:`\mathrm{acc}_b`, a hatched bar from
    :math:`\mathrm{acc}_b` to :math:`\mathrm{conf}_b` (the miscalibration) and, with
    ``show_counts``, its number of samples :math:`n_b`; the panel says the ECE
    :math:`\sum_b \frac{n_b}{N}|\mathrm{acc}_b - \mathrm{conf}_b|` of
    :func:`smoothlab.metrics.expected_calibration_error` with the same bins.

    Args:
        probs: ``(N, C)`` probabilities (see :func:`smoothlab.metrics.probs_from_logits`).
        target: ``(N,)`` class indices.
        n_bins: equal-width bins (15 as in Guo et al.).
        ax: draw into these axes; default a new column-wide figure.
        title: the panel's title.
        show_counts: write each bin's count above its bar.

    Returns:
        The figure holding the panel.

    >>> probs = torch.tensor([[0.875, 0.125], [0.625, 0.375], [0.25, 0.75], [0.375, 0.625]])
    >>> fig = reliability_diagram(probs, torch.tensor([0, 1, 1, 1]), n_bins=5)
    >>> [t.get_text() for t in fig.axes[0].texts]  # counts of (0.6, 0.8] and (0.8, 1], the ECE
    ['3', '1', 'ECE = 0.0312']

    Reference: Guo et al., ICML 2017, Figure 1 (bottom).
    """
    bins = reliability_bins(probs, target, n_bins=n_bins)
    ece = float(expected_calibration_error(probs, target, n_bins=n_bins))
    with paper_style():
        figure, axes = new_axes(ax, COLUMN_WIDTH * 0.8, COLUMN_WIDTH * 0.8)
        _draw_reliability(axes, bins, show_counts)
        box = {"boxstyle": "round", "fc": "white", "ec": "0.7"}
        axes.text(0.04, 0.96, f"ECE = {ece:.4f}", transform=axes.transAxes, va="top", bbox=box)
        finish_axes(axes, title=title, xlabel="confidence", ylabel="accuracy")
    return figure


def _draw_reliability(ax: Axes, bins: ReliabilityBins, show_counts: bool) -> None:
    """Bars, gaps, the diagonal and the counts of one reliability panel.

    The artists carry labels ("accuracy", "gap", "perfect calibration") for a caller's
    ``ax.legend()``; the panel itself has none, since any corner of it can hold a tall bar.
    """
    left, width = bins.edges[:-1].tolist(), bins.edges.diff().tolist()
    full = bins.count > 0
    acc = torch.where(full, bins.accuracy, 0.0).tolist()
    conf = torch.where(full, bins.confidence, 0.0).tolist()
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=0.8, zorder=3, label="perfect calibration")
    ax.bar(left, acc, width=width, align="edge", color=_ACCURACY_COLOUR, edgecolor="white",
           lw=0.4, label="accuracy")  # fmt: skip
    gap = [c - a for a, c in zip(acc, conf, strict=True)]
    # Hatching without a fill reads on white (over-confident bins) and over the accuracy bar
    # (under-confident bins, where the gap lies inside it) alike.
    ax.bar(left, gap, bottom=acc, width=width, align="edge", facecolor="none",
           edgecolor=_GAP_COLOUR, hatch="////", lw=0.6, label="gap")  # fmt: skip
    if show_counts:
        for x, w, a, c, n in zip(left, width, acc, conf, bins.count.tolist(), strict=True):
            if n > 0:
                ax.text(x + w / 2, max(a, c) + 0.015, f"{n}", ha="center", va="bottom",
                        rotation=90, fontsize=FONT_SIZE - 3, color="0.25")  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.12 if show_counts else 1)  # room above a full bar for its count
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])


def confidence_histogram(
    probs: Tensor,
    target: Tensor,
    *,
    n_bins: int = 15,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    r"""Share of samples per top-label confidence bin, with the accuracy and mean confidence.

    The bins are those of :func:`reliability_diagram`; two vertical lines mark the accuracy and
    the average confidence, whose distance is the overall over- or under-confidence.

    Args:
        probs, target, n_bins, ax, title: as in :func:`reliability_diagram`.

    >>> probs = torch.tensor([[0.875, 0.125], [0.625, 0.375], [0.25, 0.75], [0.375, 0.625]])
    >>> fig = confidence_histogram(probs, torch.tensor([0, 1, 1, 1]), n_bins=5)
    >>> [float(bar.get_height()) for bar in fig.axes[0].patches]
    [0.0, 0.0, 0.0, 0.75, 0.25]

    Reference: Guo et al., ICML 2017, Figure 1 (top).
    """
    bins = reliability_bins(probs, target, n_bins=n_bins)
    total = max(int(bins.count.sum()), 1)
    share = (bins.count.double() / total).tolist()
    seen = bins.count > 0
    mean_conf = float((bins.confidence[seen] * bins.count[seen]).sum() / total)
    mean_acc = float((bins.accuracy[seen] * bins.count[seen]).sum() / total)
    with paper_style():
        figure, axes = new_axes(ax, COLUMN_WIDTH * 0.8, COLUMN_WIDTH * 0.6)
        axes.bar(bins.edges[:-1].tolist(), share, width=bins.edges.diff().tolist(), align="edge",
                 color=_ACCURACY_COLOUR, edgecolor="white", lw=0.4)  # fmt: skip
        axes.axvline(mean_acc, color="0.2", ls="--", label=f"accuracy {mean_acc:.3f}")
        axes.axvline(mean_conf, color=_GAP_COLOUR, ls=":", label=f"avg. confidence {mean_conf:.3f}")
        axes.set_xlim(0, 1)
        # A boxed legend: the two lines may run through its corner and must not hide its text.
        axes.legend(loc="upper left", frameon=True, framealpha=0.9, edgecolor="none")
        finish_axes(axes, title=title, xlabel="confidence", ylabel="share of samples")
    return figure


def reliability_grid(
    panels: Mapping[str, tuple[Tensor, Tensor]],
    *,
    n_bins: int = 15,
    ncols: int | None = None,
    title: str | None = None,
    show_counts: bool = True,
) -> Figure:
    """Small multiples of :func:`reliability_diagram`, one panel per entry, in shared axes.

    Args:
        panels: panel title (e.g. ``"noise 0.2"``) -> ``(probs, target)``, in reading order.
        n_bins, show_counts: as in :func:`reliability_diagram`.
        ncols: panels per row; default up to 4.
        title: the figure's title.

    >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    >>> y = torch.tensor([0, 1, 1])
    >>> fig = reliability_grid({"a": (probs, y), "b": (probs, y), "c": (probs, y)}, ncols=2)
    >>> [ax.get_title() for ax in fig.axes if ax.get_visible()]
    ['a', 'b', 'c']
    """
    if not isinstance(panels, Mapping) or not panels:
        raise fail("panels", "a non-empty mapping of title -> (probs, target)", panels,
                   kind=TypeError if not isinstance(panels, Mapping) else ValueError)  # fmt: skip
    cols = min(len(panels), 4) if ncols is None else check_int("ncols", ncols, low=1)
    rows = math.ceil(len(panels) / cols)
    side = 1.9
    with paper_style():
        figure = require("matplotlib.figure").Figure(
            figsize=(side * cols + 0.3, side * rows + 0.3), layout="constrained"
        )
        grid = figure.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
        for i, (name, (probs, target)) in enumerate(panels.items()):
            axes = grid[i // cols][i % cols]
            reliability_diagram(probs, target, n_bins=n_bins, ax=axes, title=name,
                                show_counts=show_counts)  # fmt: skip
            bottom = i + cols >= len(panels)  # no panel below: this one shows the x axis
            axes.set_xlabel("confidence" if bottom else "")
            axes.tick_params(labelbottom=bottom)
            axes.set_ylabel("accuracy" if i % cols == 0 else "")
        for j in range(len(panels), rows * cols):
            grid[j // cols][j % cols].set_visible(False)
        if title is not None:
            figure.suptitle(title, fontsize=FONT_SIZE + 1)
    result: Figure = figure
    return result
