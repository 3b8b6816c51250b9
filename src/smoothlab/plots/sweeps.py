"""Sweep figures: a metric against the noise rate (or a smoothing rate), one line per method.

Each point is the mean over seeds with a bar of one standard deviation (no bar for one seed).
The axis adapts to the grid: one rate gives the methods side by side on a categorical axis
instead of points on a degenerate axis, and rates of both signs (negative smoothing) a
symmetric-log axis whose ticks are the swept values, written plainly.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from smoothlab._checks import check_bool, check_real, fail
from smoothlab.plots._base import (
    COLUMN_WIDTH,
    finish_axes,
    new_axes,
    paper_style,
    require,
    series_style,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Sweep", "metric_vs_epoch", "metric_vs_noise"]

#: Method label -> x value (noise or smoothing rate) -> the metric of each seed.
Sweep = Mapping[str, Mapping[float, Sequence[float]]]
XScale = Literal["auto", "linear", "symlog"]


def _summaries(
    results: object, name: str = "results", x: str = "rate"
) -> dict[str, list[tuple[float, float, float]]]:
    """Method -> sorted ``(x, mean, std)``; std is NaN for a single seed."""
    if not isinstance(results, Mapping) or not results:
        raise fail(name, f"a non-empty mapping method -> {{{x}: [value per seed]}}", results,
                   kind=TypeError if not isinstance(results, Mapping) else ValueError)  # fmt: skip
    out: dict[str, list[tuple[float, float, float]]] = {}
    for method, by_x in results.items():
        if not isinstance(by_x, Mapping) or not by_x:
            raise fail(f"{name}[{method!r}]", f"a non-empty mapping {x} -> values", by_x)
        rows = []
        for at, values in sorted(by_x.items()):
            seeds = [float(v) for v in values]
            if not seeds:
                raise fail(f"{name}[{method!r}][{at!r}]", "at least one value", values)
            std = statistics.stdev(seeds) if len(seeds) > 1 else math.nan
            rows.append((float(at), statistics.fmean(seeds), std))
        out[str(method)] = rows
    return out


def metric_vs_noise(
    results: Sweep,
    *,
    metric: str = "accuracy",
    xlabel: str = "noise rate",
    xscale: XScale = "auto",
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """A metric against the noise (or smoothing) rate, one line per method, mean +- std over seeds.

    Args:
        results: method label -> rate -> the metric of each seed, e.g.
            ``{"ce": {0.0: [0.95, 0.96], 0.2: [0.90, 0.91]}, "ls(0.1)": {...}}``.
        metric: the y-axis label.
        xlabel: the x-axis label (``"smoothing rate"`` for a smoothing sweep).
        xscale: ``"linear"``, ``"symlog"`` (linear for ``|rate| <= 1``, logarithmic beyond: for
            sweeps like 0.8 ... -8) or ``"auto"``: symlog when a rate is negative. With a single
            rate in the whole grid the methods are laid out side by side (a categorical axis).
        ax: draw into these axes; default a new figure.
        title: the panel's title.

    >>> results = {"ce": {0.0: [0.9, 0.92], 0.4: [0.7]}, "ls": {0.0: [0.93], 0.4: [0.8]}}
    >>> ax = metric_vs_noise(results).axes[0]
    >>> [text.get_text() for text in ax.get_legend().get_texts()], ax.get_xscale()
    (['ce', 'ls'], 'linear')
    >>> fig = metric_vs_noise({"ce": {0.2: [0.9, 0.92]}, "ls": {0.2: [0.93]}})
    >>> [tick.get_text() for tick in fig.axes[0].get_xticklabels()]
    ['ce', 'ls']
    """
    if xscale not in ("auto", "linear", "symlog"):
        raise fail("xscale", "one of 'auto', 'linear', 'symlog'", xscale)
    summary = _summaries(results)
    xs = sorted({x for rows in summary.values() for x, _, _ in rows})
    with paper_style():
        figure, axes = new_axes(ax, COLUMN_WIDTH * 1.35, COLUMN_WIDTH * 0.75)
        if len(xs) == 1:
            _categorical(axes, summary)
            finish_axes(axes, title=title, xlabel=f"method ({xlabel} {xs[0]:g})", ylabel=metric)
            return figure
        for i, (method, rows) in enumerate(summary.items()):
            x, mean, std = zip(*rows, strict=True)
            yerr = [0.0 if math.isnan(s) else s for s in std]
            axes.errorbar(x, mean, yerr=yerr if any(yerr) else None, capsize=2, label=method,
                          **series_style(i))  # fmt: skip
        _x_axis(axes, xs, "symlog" if xscale == "auto" and xs[0] < 0 else xscale)
        # Outside the panel, so that no line or bar is ever hidden by the legend.
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        finish_axes(axes, title=title, xlabel=xlabel, ylabel=metric)
    return figure


def metric_vs_epoch(
    curves: Sweep,
    *,
    metric: str,
    reference: float | None = None,
    logy: bool = False,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """A quantity along training, one line per method: the mean over seeds in a +- std band.

    Made for measurements taken at checkpoints, such as TSLA's variance ratio
    (:func:`smoothlab.analysis.gradient_variance_ratio`, with ``reference=1.0``: below the line
    smoothing reduces the gradient variance) or the mean logit gap
    (:func:`smoothlab.analysis.model_logit_gaps`, with :func:`smoothlab.theory.optimal_logit_gap`
    as the reference).

    Args:
        curves: method label -> epoch -> the value of each seed.
        metric: the y-axis label.
        reference: draw a dashed horizontal line at this value.
        logy: a logarithmic y axis (for ratios spanning decades).
        ax, title: as in :func:`metric_vs_noise`.

    >>> fig = metric_vs_epoch({"ls": {1: [0.5, 0.7], 2: [0.4, 0.5]}}, metric="delta", reference=1.0)
    >>> ax = fig.axes[0]
    >>> [[float(y) for y in line.get_ydata()] for line in ax.get_lines()]  # the mean, the reference
    [[0.6, 0.45], [1.0, 1.0]]
    """
    summary = _summaries(curves, "curves", "epoch")
    with paper_style():
        figure, axes = new_axes(ax, COLUMN_WIDTH * 1.35, COLUMN_WIDTH * 0.75)
        for i, (method, rows) in enumerate(summary.items()):
            x, mean, std = zip(*rows, strict=True)
            style = series_style(i)
            axes.plot(x, mean, label=method, **style)
            if not any(math.isnan(v) for v in std):
                low = [m - v for m, v in zip(mean, std, strict=True)]
                high = [m + v for m, v in zip(mean, std, strict=True)]
                axes.fill_between(x, low, high, color=style["color"], alpha=0.2, lw=0)
        if reference is not None:
            axes.axhline(check_real("reference", reference), color="0.4", ls="--", lw=0.8)
        if check_bool("logy", logy):
            axes.set_yscale("log")
            # Plain tick labels (0.1, 1, 10), not mathtext powers of ten.
            plain = require("matplotlib.ticker").FuncFormatter(lambda value, _: f"{value:g}")
            axes.yaxis.set_major_formatter(plain)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        finish_axes(axes, title=title, xlabel="epoch", ylabel=metric)
    return figure


def _categorical(ax: Axes, summary: dict[str, list[tuple[float, float, float]]]) -> None:
    """One point per method on a categorical axis, for a grid with a single rate.

    Points, not bars: the y axis spans the data rather than starting at 0, and a bar cut off
    at the bottom would exaggerate the differences.
    """
    names = list(summary)
    for i, name in enumerate(names):
        _, mean, std = summary[name][0]
        ax.errorbar([i], [mean], yerr=None if math.isnan(std) else [std], capsize=3,
                    **{**series_style(i), "linestyle": "none"})  # fmt: skip
    # Long or many names are slanted so that neighbours never overlap.
    slant = len(names) > 4 or max(len(name) for name in names) > 8
    ax.set_xticks(range(len(names)), names, rotation=25 if slant else 0,
                  ha="right" if slant else "center", rotation_mode="anchor")  # fmt: skip
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.margins(y=0.15)


def _x_axis(ax: Axes, xs: list[float], scale: str) -> None:
    """The x scale, with ticks at the swept values written plainly (no ``2x10^-1``)."""
    if scale == "symlog":
        # Linear up to |x| = 1, where rates are evenly spaced (0.2, 0.4, ...), logarithmic beyond
        # (-2, -4, -8): every swept value gets room for its label.
        ax.set_xscale("symlog", linthresh=min(1.0, max(abs(x) for x in xs) or 1.0), linscale=1.5)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.minorticks_off()
