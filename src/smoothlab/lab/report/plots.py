"""Report figures (matplotlib, Agg backend, constrained layout): each function takes stored runs
and returns the figure rendered as PNG (200 dpi) and SVG (text kept as text), or None when the
grid has nothing to show for that figure. Both renderings are byte for byte the same for the
same runs (no dates, fixed SVG ids).

Each sorts its runs with ``order`` (:class:`~.order.RunOrder`) first, so legends,
panels and pooled numbers never depend on the order in which the runs finished."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from smoothlab.lab.report.order import RunOrder
from smoothlab.lab.report.summary import SummaryRow, summarize
from smoothlab.lab.run.store import RunRow
from smoothlab.plots._base import series_style

__all__ = [
    "Rendered",
    "curves_plot",
    "metric_vs_noise",
    "noisy_examples_plot",
    "reliability_plot",
    "smoothing_sweep",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ticker() -> Any:
    import matplotlib.ticker

    return matplotlib.ticker


class Rendered(NamedTuple):
    """One figure as PNG and as SVG bytes."""

    png: bytes
    svg: bytes


def _render(figure: Any) -> Rendered:
    import matplotlib

    out = []
    with matplotlib.rc_context({"svg.hashsalt": "smoothlab", "svg.fonttype": "none"}):
        for fmt, extra in (("png", {"dpi": 200}), ("svg", {"metadata": {"Date": None}})):
            buffer = io.BytesIO()
            # every figure is laid out by matplotlib's constrained layout, which keeps labels,
            # legends and titles inside it: a tight bounding box would cost one more drawing
            figure.savefig(buffer, format=fmt, **extra)
            out.append(buffer.getvalue())
            # the PNG's layout serves the SVG too (the positions are fractions of the figure:
            # they move by at most 0.1 % of it), where laying out again costs half the time of
            # a 55-panel reliability grid's SVG
            figure.set_layout_engine("none")
    _pyplot().close(figure)
    return Rendered(*out)


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


def _dots(axis: Any, summary: Sequence[SummaryRow], kind: str, metric: str) -> None:
    """One noise rate only: a line over one x would stack every method on a vertical line, so
    each method gets its own x (mean +- std over seeds), in its style of the other panels."""
    every = list(dict.fromkeys(s.label for s in summary))
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
    plt = _pyplot()
    kinds = _kinds(summary, order)
    width = min(len(kinds), NOISE_PANEL_COLUMNS)
    height = -(-len(kinds) // width)
    figure, grid = plt.subplots(
        height, width, figsize=(5 * width, 4.2 * height), squeeze=False, layout="constrained"
    )
    axes = [axis for line in grid for axis in line]
    for axis in axes[len(kinds) :]:
        axis.axis("off")  # past the last kind
    for axis, kind in zip(axes, kinds, strict=False):
        labels = list(dict.fromkeys(s.label for s in summary))
        rates = {rate for label in labels for rate in _series(summary, label, kind, metric)}
        if len(rates) == 1:
            _dots(axis, summary, kind, metric)
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
    _legend_below(figure, handles, labels)
    return _render(figure)


def _legend_below(figure: Any, handles: list[Any], labels: list[str]) -> None:
    """A figure legend below the panels in as many columns (at most 4) as fit the figure's
    width (one column where none does), the figure taller by the legend's height: the
    constrained layout makes room for it below the panels, not beside them, so a wider legend
    would be cut at the figure's edges (long labels such as ``bcorrect(transition=estimated)``)
    and a taller one would shrink the panels."""
    renderer = figure.canvas.get_renderer()
    legend = None
    for columns in range(min(4, max(1, len(labels))), 0, -1):
        if legend is not None:
            legend.remove()
        legend = figure.legend(
            handles, labels, loc="outside lower center", ncols=columns, fontsize=7
        )
        if legend.get_window_extent(renderer).width <= 0.98 * figure.bbox.width:
            break
    assert legend is not None  # the loop runs at least once (one column)
    height = legend.get_window_extent(renderer).height / figure.dpi
    figure.set_figheight(figure.get_figheight() + height)


def _highest_noise(rows: Sequence[RunRow]) -> tuple[float, str, list[RunRow]]:
    """The highest (noise rate, kind) setting of ``rows`` (not empty) and the runs under it."""
    rate, kind = max((r.noise_rate, r.noise_kind) for r in rows)
    return rate, kind, [r for r in rows if (r.noise_rate, r.noise_kind) == (rate, kind)]


class _Pooled(NamedTuple):
    """A method's reliability bins under one noise setting, over its seeds."""

    edges: list[float]
    accuracy: list[float]  # per bin, weighted by each seed's count in the bin
    share: list[float]  # of the test samples, per bin
    ece: float  # the seeds' ECEs, weighted by their sample counts


def _pooled(members: Sequence[RunRow]) -> _Pooled | None:
    """The stored reliability bins of ``members`` pooled over seeds, or None without any."""
    bins = [row.extras["reliability"] for row in members if "reliability" in row.extras]
    if not bins:
        return None
    edges, total = bins[0]["edges"], sum(sum(b["count"]) for b in bins) or 1
    accuracy, share = [], []
    for k in range(len(edges) - 1):
        count = sum(b["count"][k] for b in bins)
        accuracy.append(sum(b["accuracy"][k] * b["count"][k] for b in bins) / count if count else 0)
        share.append(count / total)
    gaps = (
        count * abs(acc - conf)
        for b in bins
        for acc, conf, count in zip(b["accuracy"], b["confidence"], b["count"], strict=True)
    )
    return _Pooled(edges, accuracy, share, sum(gaps) / total)


#: One noise setting's reliability panels wrap into rows of at most this many
RELIABILITY_WRAP = 4
#: Several noise settings: a column per method up to this many methods; past it, and with
#: fewer settings than methods, a row per method and a column per setting (eleven methods in
#: a row drew 5 pt text once the page scaled the figure to its width)
RELIABILITY_COLUMNS = 6


def _panel_grid(settings: int, methods: int) -> tuple[int, int, bool]:
    """Rows and columns of the reliability panels, and whether the methods run down the rows:
    a row per noise setting and a column per method; for many methods (more than
    :data:`RELIABILITY_COLUMNS`, and more than settings) a row per method and a column per
    setting; for one setting the methods wrapped into rows of at most
    :data:`RELIABILITY_WRAP` (a single row of many panels shrinks to a strip on the page).

    >>> _panel_grid(3, 6), _panel_grid(5, 11), _panel_grid(12, 11)
    ((3, 6, False), (11, 5, True), (12, 11, False))
    >>> _panel_grid(1, 3), _panel_grid(1, 7), _panel_grid(1, 9)
    ((1, 3, False), (2, 4, False), (3, 3, False))
    """
    if settings > 1:
        if methods > RELIABILITY_COLUMNS and settings < methods:
            return methods, settings, True
        return settings, methods, False
    if methods <= RELIABILITY_WRAP:
        return settings, methods, False
    rows = -(-methods // RELIABILITY_WRAP)
    return rows, -(-methods // rows), False


def reliability_plot(rows: Sequence[RunRow], order: RunOrder | None = None) -> Rendered | None:
    """Reliability diagrams for every noise setting and method (:func:`_panel_grid` lays them
    out), pooled over seeds: accuracy per confidence bin (blue), the share of test samples per
    bin (a grey line on top), and in each panel the seeds' ECEs averaged with their sample
    counts."""
    if not rows:
        return None
    order = order or RunOrder()
    rows = order.sort(rows)
    settings = sorted(
        {(r.noise_kind, r.noise_rate) for r in rows},
        key=lambda s: (s[0] != "none", order.kind_rank(s[0]), s[0], s[1]),
    )
    labels = list(dict.fromkeys(r.label for r in rows))
    height, width, by_method = _panel_grid(len(settings), len(labels))
    cells = (  # row-major
        [(setting, label) for label in labels for setting in settings]
        if by_method
        else [(setting, label) for setting in settings for label in labels]
    )
    plt = _pyplot()
    # no sharex / sharey: every panel has the same limits anyway, and shared axes propagate
    # each limit to all their siblings (a 20 x 10 grid of a 2000-run sweep: 90 % of a
    # 150-second report); the inner panels hide their tick labels below instead
    figure, axes = plt.subplots(
        height, width, figsize=(2.1 * width + 0.4, 2.1 * height + 0.5),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for index in range(height * width):
        i, j = divmod(index, width)
        axis = axes[i][j]
        if index >= len(cells):
            axis.axis("off")  # past the last wrapped method
            continue
        (kind, rate), label = cells[index]
        members = [r for r in rows if (r.noise_kind, r.noise_rate, r.label) == (kind, rate, label)]
        pooled = _pooled(members)
        if pooled is None:
            axis.axis("off")
            continue
        edges, accuracy, share, ece = pooled
        axis.stairs(accuracy, edges, fill=True, alpha=0.6, color="C0")
        axis.stairs(share, edges, color="0.25", lw=1.0)  # on top: hides no accuracy bar
        axis.plot([0, 1], [0, 1], "k--", lw=0.8)
        axis.text(0.04, 0.92, f"ECE {ece:.3f}", fontsize=7)
        # three ticks a side: small panels read better, and each tick label is text that
        # the layout measures (a 55-panel grid: 11 % of its drawing)
        axis.set(xlim=(0, 1), ylim=(0, 1), xticks=(0, 0.5, 1), yticks=(0, 0.5, 1))
        axis.tick_params(labelsize=6)
        setting = f"{kind} {rate:g}"
        if i == 0 or len(settings) == 1:
            axis.set_title(setting if by_method else label, fontsize=7)
        if j == 0:
            axis.set_ylabel(f"{label if by_method else setting}\naccuracy", fontsize=7)
        else:
            axis.tick_params(labelleft=False)
        if index + width >= len(cells):  # the lowest panel of its column
            axis.set_xlabel("confidence", fontsize=7)
        else:
            axis.tick_params(labelbottom=False)
    figure.suptitle(
        "reliability on the clean test set (blue: accuracy; grey line: share of samples per bin)",
        fontsize=9,
    )
    return _render(figure)


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
    plt = _pyplot()
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
    _legend_below(figure, handles, [f"noise: {label}" for label in labels])
    return _render(figure)


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
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4), layout="constrained")
    every = list(dict.fromkeys(r.label for r in rows))  # each method's style, as elsewhere
    for label in dict.fromkeys(r.label for r in chosen):
        first = min((r for r in chosen if r.label == label), key=lambda r: r.replicate)
        style = series_style(every.index(label))
        if len(first.curves[curve]) > CURVE_MARKERS:  # markers would merge into a thick line
            style["marker"] = None
        axis.plot(range(1, len(first.curves[curve]) + 1), first.curves[curve], label=label,
                  **style)  # fmt: skip
    axis.xaxis.set_major_locator(_ticker().MaxNLocator(integer=True))  # epochs, not 1.25
    axis.set(xlabel="epoch", ylabel=curve.replace("_", " "), title=f"{kind} noise {rate:g}")
    axis.grid(alpha=0.3)
    _legend_below(figure, *axis.get_legend_handles_labels())  # inside, it hid a dozen curves
    return _render(figure)


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
    plt = _pyplot()
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
    return _render(figure)
