"""The report page's tables: every metric per method and noise setting with the best of each
noise setting marked (and the means that seeds cannot tell from it), and the provenance block
that heads the page.

A cell whose mean is past :data:`~.summary.LARGE` or not finite prints in scientific notation
and is flagged (a run that blew up, e.g. negative smoothing's NLL on Twonorm), and a one-seed
cell prints its mean alone: there is no spread to show.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from smoothlab.lab.report.summary import Cell, SummaryRow, best_cells

__all__ = [
    "PAGE_METRICS",
    "TIE_LEVEL",
    "metrics_table",
    "provenance_table",
    "tied_cells",
    "welch_p",
]

# (metric, column title); which value is best: :data:`~.summary.BETTER`
PAGE_METRICS = (
    ("accuracy", "accuracy"),
    ("top5_accuracy", "top-5"),
    ("nll", "NLL"),
    ("brier", "Brier"),
    ("ece", "ECE"),
    ("temperature", "T"),
    ("nll_ts", "NLL (TS)"),
    ("brier_ts", "Brier (TS)"),
    ("ece_ts", "ECE (TS)"),
    ("realised_noise_rate", "noise realised"),
)


#: Two-sided p-value at or above which a mean counts as tied with its noise setting's best
TIE_LEVEL = 0.05


def welch_p(a: Cell, b: Cell) -> float:
    r"""Two-sided p-value of Welch's t-test (unequal variances) from two cells' means, sample
    standard deviations and seed counts (at least 2 each, not both without spread):

    .. math:: t = \frac{\bar a - \bar b}{\sqrt{s_a^2/n_a + s_b^2/n_b}},\qquad
              \nu = \frac{(s_a^2/n_a + s_b^2/n_b)^2}
                         {\frac{(s_a^2/n_a)^2}{n_a - 1} + \frac{(s_b^2/n_b)^2}{n_b - 1}},
              \qquad p = 2\,F_\nu(-|t|),

    :math:`F_\nu` the CDF of Student's t with :math:`\nu` degrees of freedom.

    >>> round(welch_p(Cell(0.82, 0.01, 3), Cell(0.81, 0.02, 3)), 3)
    0.496
    """
    from scipy.special import stdtr  # the t distribution's CDF (scipy.stats: 0.7 s to import)

    va, vb = a.std**2 / a.n, b.std**2 / b.n
    t = abs(a.mean - b.mean) / math.sqrt(va + vb)
    nu = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return 2 * float(stdtr(nu, -t))


def tied_cells(
    summary: Sequence[SummaryRow], best: set[tuple[int, str]] | None = None
) -> set[tuple[int, str]]:
    """(row index, metric) of the means that the seeds cannot tell from their noise setting's
    best (:func:`best_cells`): :func:`welch_p` at least :data:`TIE_LEVEL`. A cell or best of a
    single seed has no spread to test, and neither has a pair with no spread at all: neither
    is marked. The best cells themselves are not in the set.

    >>> from smoothlab.lab.report.summary import Cell
    >>> rows = [SummaryRow(m, m, "symmetric", 0.2, 3, {"accuracy": Cell(a, s, 3)})
    ...         for m, a, s in (("ce", 0.78, 0.01), ("ls", 0.81, 0.02), ("nls", 0.90, 0.01))]
    >>> sorted(tied_cells(rows))  # nls's 0.90 +- 0.01 is apart from both
    []
    >>> rows[2].cells["accuracy"] = Cell(0.82, 0.01, 3)
    >>> sorted(tied_cells(rows))  # now ls's 0.81 +- 0.02 is within reach (p = 0.50), ce's not
    [(1, 'accuracy')]
    """
    best = best_cells(summary) if best is None else best
    tops: dict[tuple[str, float, str], int] = {}
    for index, metric in best:
        row = summary[index]
        tops.setdefault((row.noise_kind, row.noise_rate, metric), index)
    tied: set[tuple[int, str]] = set()
    for index, row in enumerate(summary):
        for metric, cell in row.cells.items():
            top = tops.get((row.noise_kind, row.noise_rate, metric))
            if top is None or (index, metric) in best or cell.n < 2 or not math.isfinite(cell.mean):
                continue
            other = summary[top].cells[metric]
            if other.n < 2 or cell.std == other.std == 0:
                continue
            if welch_p(other, cell) >= TIE_LEVEL:
                tied.add((index, metric))
    return tied


def metrics_table(summary: Sequence[SummaryRow]) -> str:
    """Every metric any row has, one line per method variant and noise setting."""
    metrics = [m for m in PAGE_METRICS if any(m[0] in s.cells for s in summary)]
    titles = ("method", "noise", "rate", "seeds", *(title for _, title in metrics))
    head = "".join(f"<th>{html.escape(t)}</th>" for t in titles)
    best = best_cells(summary)
    tied = tied_cells(summary, best)
    body = []
    for index, s in enumerate(summary):
        cells = [html.escape(c) for c in (s.label, s.noise_kind, f"{s.noise_rate:g}", str(s.seeds))]
        for metric, _ in metrics:
            cell = s.cells.get(metric)
            text = html.escape(str(cell)) if cell else "-"
            if cell is not None and cell.flagged:
                text = f"<span class='flag' title='past 1e4 or not finite'>{text} ⚠</span>"
            if (index, metric) in best:
                text = f"<b>{text}</b>"
            elif (index, metric) in tied:
                text = f"<u>{text}</u>"
            cells.append(text)
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def provenance_table(info: Mapping[str, Any]) -> str:
    """The provenance block: one line per item, in a fixed order; "" when nothing was stored."""
    names = (
        ("smoothlab", "smoothlab"), ("commit", "git commit"), ("torch", "torch"),
        ("backend", "loss kernels"), ("device", "device"), ("executor", "executor"),
        ("date", "date"), ("wall_time", "wall time"), ("command", "command"),
    )  # fmt: skip
    lines = [
        f"<tr><th>{title}</th><td><code>{html.escape(str(info[key]))}</code></td></tr>"
        for key, title in names
        if info.get(key)
    ]
    return f"<table class='provenance'>{''.join(lines)}</table>" if lines else ""
