"""Summaries of stored runs: mean +- std over seeds per method and noise setting, as a table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from smoothlab.lab.report.order import GroupKey, RunOrder
from smoothlab.lab.run.store import RunRow

__all__ = [
    "BETTER",
    "LARGE",
    "SUMMARY_METRICS",
    "Cell",
    "SummaryRow",
    "best_cells",
    "number",
    "print_table",
    "summarize",
]

# Metrics in the terminal table, in order: (metric key, column title).
SUMMARY_METRICS = (
    ("accuracy", "accuracy"),
    ("ece", "ECE"),
    ("ece_ts", "ECE (TS)"),
    ("nll", "NLL"),
)


LARGE = 1e4  # past this a mean prints in scientific notation and its cell is flagged

#: Which value of a metric is best; metrics not here have no best (the fitted temperature,
#: the realised noise rate)
BETTER = {
    "accuracy": "max",
    "top5_accuracy": "max",
    "nll": "min",
    "brier": "min",
    "ece": "min",
    "nll_ts": "min",
    "brier_ts": "min",
    "ece_ts": "min",
}


def number(value: float) -> str:
    """Three decimals, or scientific notation past :data:`LARGE` (an exploding NLL stays a
    readable width).

    >>> number(0.91234), number(-2548852702118334075095056646144.0), number(float("nan"))
    ('0.912', '-2.549e+30', 'nan')
    """
    return f"{value:.3e}" if math.isfinite(value) and abs(value) >= LARGE else f"{value:.3f}"


@dataclass(frozen=True)
class Cell:
    """Mean and sample standard deviation of one metric over ``n`` seeds (std 0 for one)."""

    mean: float
    std: float
    n: int = 2

    @property
    def flagged(self) -> bool:
        """Whether the mean is past :data:`LARGE` or not finite: a run that blew up."""
        return not math.isfinite(self.mean) or abs(self.mean) >= LARGE

    def __str__(self) -> str:
        """``mean ± std``; one seed has no spread to show, so just the mean.

        >>> str(Cell(0.9121, 0.0042)), str(Cell(0.9121, 0.0, 1)), str(Cell(3e30, 1e30))
        ('0.912 ± 0.004', '0.912', '3.000e+30 ± 1.000e+30')
        """
        return number(self.mean) + (f" ± {number(self.std)}" if self.n > 1 else "")


@dataclass(frozen=True)
class SummaryRow:
    """One method variant under one noise setting."""

    method: str
    label: str
    noise_kind: str
    noise_rate: float
    seeds: int
    cells: dict[str, Cell]


def _cell(values: Sequence[float]) -> Cell:
    """Plain arithmetic (not ``statistics``) so that an infinite value gives inf/nan, not an
    exception."""
    mean = sum(values) / len(values)
    if len(values) == 1:
        return Cell(mean, 0.0, 1)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return Cell(mean, spread, len(values))


def summarize(rows: Iterable[RunRow], order: RunOrder | None = None) -> list[SummaryRow]:
    """Group runs by (method variant, noise kind, noise rate); average every metric over seeds.

    Rows come out in the display ``order`` (:class:`~.order.RunOrder`; by default
    the methods registry's order), never in the order the runs finished; seeds are averaged in
    replicate order, so the numbers do not depend on it either.

    >>> from smoothlab.lab.run.store import RunRow
    >>> def run(method, rate, seed, accuracy):
    ...     return RunRow(f"{method}{rate}{seed}", "x", method, method, "symmetric", rate, seed,
    ...                   {}, {"accuracy": accuracy}, {}, {}, 1.0)
    >>> rows = [run("ls", 0.2, 0, 0.8), run("ce", 0.2, 1, 0.7), run("ce", 0.2, 0, 0.6)]
    >>> for s in summarize(rows, RunOrder(methods=("ls", "ce"))):
    ...     print(s.label, s.noise_rate, s.seeds, s.cells["accuracy"])
    ls 0.2 1 0.800
    ce 0.2 2 0.650 ± 0.071
    """
    order = order or RunOrder()
    groups: dict[GroupKey, list[RunRow]] = {}
    for row in order.sort(rows):
        groups.setdefault(order.group_key(row), []).append(row)
    summary = []
    for members in groups.values():
        first = members[0]
        names = sorted({m for row in members for m in row.metrics})
        cells = {
            name: _cell([row.metrics[name] for row in members if name in row.metrics])
            for name in names
        }
        summary.append(
            SummaryRow(
                first.method, first.label, first.noise_kind, first.noise_rate, len(members), cells
            )
        )
    return summary


def _shown(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    return f"{cell} !" if cell.flagged else str(cell)


def best_cells(summary: Sequence[SummaryRow]) -> set[tuple[int, str]]:
    """(row index, metric) of the best finite mean (:data:`BETTER`) of each metric within each
    noise setting of more than one row; equal bests are all in the set.

    >>> rows = [SummaryRow(m, m, "symmetric", 0.2, 2, {"accuracy": Cell(a, 0), "nll": Cell(n, 0)})
    ...         for m, a, n in (("ce", 0.8, 0.5), ("ls", 0.9, float("nan")))]
    >>> sorted(best_cells(rows))
    [(0, 'nll'), (1, 'accuracy')]
    """
    best: set[tuple[int, str]] = set()
    settings: dict[tuple[str, float], list[int]] = {}
    for index, row in enumerate(summary):
        settings.setdefault((row.noise_kind, row.noise_rate), []).append(index)
    for members in settings.values():
        if len(members) < 2:
            continue
        for metric, direction in BETTER.items():
            values = {
                i: summary[i].cells[metric].mean
                for i in members
                if metric in summary[i].cells and math.isfinite(summary[i].cells[metric].mean)
            }
            if values:
                top = (max if direction == "max" else min)(values.values())
                best |= {(i, metric) for i, value in values.items() if value == top}
    return best


def print_table(summary: Sequence[SummaryRow], stream: TextIO, *, title: str = "") -> None:
    """Print the summary as a rich table (plain box characters when not a terminal).

    A metric that no row has (``ece_ts`` without a validation split) gets no column; one that
    some rows lack shows ``-`` there. On a terminal the best mean of each noise setting is bold
    (as on the report page, :func:`best_cells`) and the caption says so; a file or pipe
    gets plain text.

    >>> import io
    >>> cells = {"accuracy": Cell(0.912, 0.004), "ece": Cell(0.031, 0.002)}
    >>> rows = [SummaryRow("ls", "ls(smoothing=0.2)", "symmetric", 0.2, 2, cells),
    ...         SummaryRow("ce", "ce", "none", 0.0, 2, {**cells, "ece_ts": Cell(0.02, 0.01)})]
    >>> out = io.StringIO()
    >>> print_table(rows, out)
    >>> for line in out.getvalue().splitlines()[1:]:  # the first is a blank border
    ...     print(line.rstrip())
     method              noise       rate   seeds        accuracy             ECE        ECE (TS)
    ──────────────────────────────────────────────────────────────────────────────────────────────
     ls(smoothing=0.2)   symmetric    0.2       2   0.912 ± 0.004   0.031 ± 0.002               -
    <BLANKLINE>
     ce                  none           0       2   0.912 ± 0.004   0.031 ± 0.002   0.020 ± 0.010
    <BLANKLINE>
    mean ± std over seeds; TS = after temperature scaling on the validation split
    >>> out = io.StringIO()
    >>> print_table(rows[:1], out)
    >>> print(out.getvalue().splitlines()[1].rstrip())
     method              noise       rate   seeds        accuracy             ECE
    >>> print(out.getvalue().splitlines()[-1].rstrip())
    mean ± std over seeds
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, width=200)
    metrics = [(m, t) for m, t in SUMMARY_METRICS if any(m in row.cells for row in summary)]
    best = best_cells(summary) if console.is_terminal else set()
    caption = "mean ± std over seeds"
    if best:
        caption += "; bold = best of its noise setting"
    if any(m == "ece_ts" for m, _ in metrics):
        caption += "; TS = after temperature scaling on the validation split"
    if any(c.flagged for row in summary for c in row.cells.values()):
        caption += f"; ! = a mean past {LARGE:g} or not finite (a run blew up)"
    table = Table(
        title=title or None,
        caption=caption,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
    )
    for name in ("method", "noise", "rate", "seeds"):
        left = name in ("method", "noise")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for _, heading in metrics:
        table.add_column(heading, justify="right", no_wrap=True)
    previous = ""
    for index, row in enumerate(summary):
        cells = [Text(_shown(row.cells.get(m)), style="bold" if (index, m) in best else "")
                 for m, _ in metrics]  # fmt: skip
        label = row.label if row.label != previous else ""
        if label and previous:
            table.add_section()
        previous = row.label
        table.add_row(label, row.noise_kind, f"{row.noise_rate:g}", str(row.seeds), *cells)
    console.print(table)
