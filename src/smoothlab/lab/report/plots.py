"""Report figures (matplotlib, Agg backend, constrained layout): each function takes stored runs
and returns the figure rendered as PNG (200 dpi) and SVG (text kept as text), or None when the
grid has nothing to show for that figure. Both renderings are byte for byte the same for the
same runs (no dates, fixed SVG ids: :mod:`~.drawing`). The reliability diagrams are in
:mod:`~.reliability`.

Each sorts its runs with ``order`` (:class:`~.order.RunOrder`) first, so legends,
panels and pooled numbers never depend on the order in which the runs finished."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from smoothlab.lab.report import drawing
from smoothlab.lab.report.drawing import Rendered
from smoothlab.lab.report.order import RunOrder
from smoothlab.lab.report.summary import SummaryRow, summarize
from smoothlab.lab.run.store import RunRow
from smoothlab.plots._base import series_style

__all__ = [
    "curves_plot",
    "metric_vs_noise",
    "noisy_examples_plot",
    "smoothing_sweep",
]


def _kinds(summary: Sequence[SummaryRow], order: RunOrder) -> list[str]:
    kinds = {s.noise_kind for s in summary if s.noise_kind != "none"}
    return sorted(kinds, key=lambda k: (order.kind_rank(k), k)) or ["none"]


def _series(summary: Sequence[SummaryRow], label: str, kind: str, metric: str) -> dict[float, Any]:
    """Noise rate -> cell of one method under one kind, the clean runs included at rate 0
    unless the kind has rate-0 runs of its own (class-dependent noise flips labels at rate 0)."""
    by_rate = {}
    for wanted in ("none", kind):
        for s in summary:
            if s.label == label and s.noise_kind == wanted:
                by_rate[s.noise_rate] = s.cells[metric]
    return by_rate


def _dots(
    axis: Any, summary: Sequence[SummaryRow], every: list[str], kind: str, metric: str
) -> None:
    """One noise rate only: a line over one x would stack every method on a vertical line, so
    each method gets its own x (mean +- std over seeds), in its style of the other panels
    (its place in ``every``, the labels of all panels)."""
    labels = [label for label in every if _series(summary, label, kind, metric)]
    for x, label in enumerate(labels):
        (cell,) = _series(summary, label, kind, metric).values()
        axis.errorbar([x], [cell.mean], [cell.std], capsize=3, label=label,
                      **series_style(every.index(label)))  # fmt: skip
    axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    axis.set_xlim(-0.5, len(labels) - 0.5)


#: The noise-rate figures put at most this many kinds' panels side by side, then wrap (five
#: kinds in one row made a 25-inch strip that the page shrank to unreadable text)
NOISE_PANEL_COLUMNS = 3


def metric_vs_noise(
    rows: Sequence[RunRow], metric: str, title: str, order: RunOrder | None = None
) -> Rendered | None:
    """Mean +- std of ``metric`` against the noise rate, one line per method, one panel per kind
    (in rows of at most :data:`NOISE_PANEL_COLUMNS`); a kind with a single rate shows one point
    per method instead. The legend sits below the panels, where it covers no data.

    Clean runs (kind ``none``, rate 0) appear at rate 0 in every panel.
    """
    order = order or RunOrder()
    summary = [s for s in summarize(rows, order) if metric in s.cells]
    if not summary:
        return None
    plt = drawing.pyplot()
    kinds = _kinds(summary, order)
    width = min(len(kinds), NOISE_PANEL_COLUMNS)
    height = -(-len(kinds) // width)
    figure, grid = plt.subplots(
        height, width, figsize=(5 * width, 4.2 * height), squeeze=False, layout="constrained"
    )
    axes = [axis for line in grid for axis in line]
    for axis in axes[len(kinds) :]:
        axis.axis("off")  # past the last kind
    labels = list(dict.fromkeys(s.label for s in summary))
    for axis, kind in zip(axes, kinds, strict=False):
        rates = {rate for label in labels for rate in _series(summary, label, kind, metric)}
        if len(rates) == 1:
            _dots(axis, summary, labels, kind, metric)
            axis.set(xlabel=f"{kind} noise rate {rates.pop():g}", ylabel=title)
        else:
            for i, label in enumerate(labels):  # a method's style is the same in every panel
                by_rate = _series(summary, label, kind, metric)
                xs = sorted(by_rate)
                axis.errorbar(xs, [by_rate[x].mean for x in xs], [by_rate[x].std for x in xs],
                              capsize=3, label=label, **series_style(i))  # fmt: skip
            axis.set(xlabel=f"{kind} noise rate", ylabel=title)
        axis.set_title(f"{title}: {kind} noise")
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    drawing.legend_below(figure, handles, labels)
    return drawing.render(figure)


def _highest_noise(rows: Sequence[RunRow]) -> tuple[float, str, list[RunRow]]:
    """The highest (noise rate, kind) setting of ``rows`` (not empty) and the runs under it."""
    rate, kind = max((r.noise_rate, r.noise_kind) for r in rows)
    return rate, kind, [r for r in rows if (r.noise_rate, r.noise_kind) == (rate, kind)]


def smoothing_sweep(
    rows: Sequence[RunRow], metric: str = "accuracy", order: RunOrder | None = None
) -> Rendered | None:
    """``metric`` against the smoothing rate (ls and nls pooled: r from negative to positive),
    one line per noise setting; None unless at least three rates were run. The x axis is
    symmetric-log when a rate is negative (nls rates span decades: -8 ... 0.8), else linear;
    the legend sits below the panel."""
    order = order or RunOrder()
    swept = [r for r in order.sort(rows) if r.method in ("ls", "nls", "ce")]
    rates = {r.config["params"].get("smoothing", 0.0) for r in swept}
    if len(rates) < 3:
        return None
    plt = drawing.pyplot()
    figure, axis = plt.subplots(figsize=(6, 4), layout="constrained")
    settings = sorted(
        {(r.noise_kind, r.noise_rate) for r in swept},
        key=lambda s: (order.kind_rank(s[0]), s[0], s[1]),
    )
    for i, (kind, noise) in enumerate(settings):
        by_rate: dict[float, list[float]] = {}
        for r in swept:
            if (r.noise_kind, r.noise_rate) == (kind, noise) and metric in r.metrics:
                by_rate.setdefault(r.config["params"].get("smoothing", 0.0), []).append(
                    r.metrics[metric]
                )
        xs = sorted(by_rate)
        axis.plot(xs, [sum(by_rate[x]) / len(by_rate[x]) for x in xs], label=f"{kind} {noise:g}",
                  **series_style(i))  # fmt: skip
    negative = min(rates) < 0
    if negative:
        axis.axvline(0.0, color="grey", lw=0.8)
        # symmetric-log axis, linear up to the smallest rate run
        nonzero = [abs(r) for r in rates if r != 0]
        axis.set_xscale("symlog", linthresh=min(nonzero) if nonzero else 1.0)
    what = "r < 0: negative smoothing; " if negative else ""
    axis.set(xlabel=f"smoothing rate r ({what}ce is r = 0)", ylabel=metric)
    # ticks at the rates run, written plainly
    axis.set_xticks(sorted(rates), [f"{r:g}" for r in sorted(rates)], rotation=45, fontsize=7)
    axis.minorticks_off()
    axis.grid(alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    drawing.legend_below(figure, handles, [f"noise: {label}" for label in labels])
    return drawing.render(figure)


#: Curves of at most this many epochs mark each epoch's point
CURVE_MARKERS = 30


def curves_plot(
    rows: Sequence[RunRow], curve: str = "test_accuracy", order: RunOrder | None = None
) -> Rendered | None:
    """Per-epoch ``curve`` of every method at the highest noise setting, first seed; the legend
    below the panel, where it hides no curve."""
    if not rows:
        return None
    rows = (order or RunOrder()).sort(rows)
    rate, kind, at_highest = _highest_noise(rows)
    chosen = [r for r in at_highest if curve in r.curves]
    if not chosen:
        return None
    plt = drawing.pyplot()
    figure, axis = plt.subplots(figsize=(6, 4), layout="constrained")
    every = list(dict.fromkeys(r.label for r in rows))  # each method's style, as elsewhere
    for label in dict.fromkeys(r.label for r in chosen):
        first = min((r for r in chosen if r.label == label), key=lambda r: r.replicate)
        style = series_style(every.index(label))
        if len(first.curves[curve]) > CURVE_MARKERS:  # markers would merge into a thick line
            style["marker"] = None
        axis.plot(range(1, len(first.curves[curve]) + 1), first.curves[curve], label=label,
                  **style)  # fmt: skip
    axis.xaxis.set_major_locator(drawing.ticker().MaxNLocator(integer=True))  # epochs, not 1.25
    axis.set(xlabel="epoch", ylabel=curve.replace("_", " "), title=f"{kind} noise {rate:g}")
    axis.grid(alpha=0.3)
    drawing.legend_below(figure, *axis.get_legend_handles_labels())  # inside, it hid a dozen curves
    return drawing.render(figure)


def noisy_examples_plot(rows: Sequence[RunRow], order: RunOrder | None = None) -> Rendered | None:
    """The training examples with the most and least IVON-induced label noise (Yang et al. 2025,
    Fig. 3), from the IVON run with the lowest noise rate; None without an IVON run."""
    found = [r for r in (order or RunOrder()).sort(rows) if "noisy_examples" in r.extras]
    if not found:
        return None
    run = min(found, key=lambda r: (r.noise_rate, r.replicate))
    data = run.extras["noisy_examples"]
    shape = data["shape"]
    side = math.isqrt(math.prod(shape[-2:])) if len(shape) >= 2 else 0
    plt = drawing.pyplot()
    count = len(data["most"]["x"])
    figure, axes = plt.subplots(
        2, count, figsize=(1.3 * count, 3.2), squeeze=False, layout="constrained"
    )
    for line, name in enumerate(("most", "least")):
        part = data[name]
        for axis, x, label, noise in zip(axes[line], part["x"], part["label"], part["noise"],
                                         strict=True):  # fmt: skip
            if len(shape) >= 2 and len(x) == side * side:
                axis.imshow([x[i * side : (i + 1) * side] for i in range(side)], cmap="gray_r")
            else:
                axis.bar(range(len(x)), x)
            axis.set_title(f"y={label} |ε|={noise:.2f}", fontsize=7)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[line][0].set_ylabel(f"{name} noisy", fontsize=8)
    where = "clean labels" if run.noise_rate == 0 else f"{run.noise_kind} noise {run.noise_rate:g}"
    figure.suptitle(f"Label noise induced by IVON on training examples ({where})")
    return drawing.render(figure)
