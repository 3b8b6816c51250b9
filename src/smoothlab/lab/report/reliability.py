"""The report's reliability diagrams: one panel per noise setting and method, each method's
seeds pooled, laid out by :func:`_panel_grid` (a row per setting, or a row per method when the
methods are many, or one setting's methods wrapped into rows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from smoothlab.lab.report import drawing
from smoothlab.lab.report.drawing import Rendered
from smoothlab.lab.report.order import RunOrder
from smoothlab.lab.run.store import RunRow

__all__ = ["RELIABILITY_COLUMNS", "RELIABILITY_WRAP", "reliability_plot"]


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
    plt = drawing.pyplot()
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
    return drawing.render(figure)
