"""The report's post-hoc calibration section: one table per metric, methods x calibrators.

Every calibrator of a config's ``[calibration]`` is fitted on a run's validation split and
measured on its test set under its own suffix (``ece_iso``, :mod:`smoothlab.lab.plan.calibrators`).
Each table has one line per method variant and noise setting, a column for the uncalibrated
model and one per calibrator found in the runs, mean ± std over seeds; the best of each line is
in bold: which calibrator suits that method. When temperature scaling is the only calibrator
(the default), only the metrics the main table lacks get a table (smooth ECE, classwise ECE,
AURC): the main table shows the others before and after it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from smoothlab.lab.plan.calibrators import CALIBRATORS, Calibrator
from smoothlab.lab.report.summary import Cell, SummaryRow

__all__ = ["CALIBRATION_METRICS", "calibration_section", "calibration_table", "calibrators_in"]

# (metric, table title, which value is best: "max" or "min", shown with temperature scaling
# alone, i.e. not in the main table)
CALIBRATION_METRICS = (
    ("ece", "ECE (15 equal-width bins)", "min", False),
    ("smooth_ece", "Smooth ECE (Błasiok & Nakkiran)", "min", True),
    ("classwise_ece", "Classwise ECE (15 bins per class)", "min", True),
    ("nll", "NLL", "min", False),
    ("brier", "Brier score", "min", False),
    ("accuracy", "Accuracy (all but TS can change the arg-max)", "max", False),
    ("aurc", "AURC (selective classification by the top probability)", "min", True),
)


def calibrators_in(summary: Sequence[SummaryRow]) -> list[Calibrator]:
    """The registry's calibrators that some row has metrics of, in registry order.

    >>> rows = [SummaryRow("ce", "ce", "none", 0.0, 1, {"ece_iso": Cell(0.1, 0, 1)})]
    >>> [c.name for c in calibrators_in(rows)]
    ['isotonic']
    """
    return [c for c in CALIBRATORS if any(f"ece{c.suffix}" in row.cells for row in summary)]


def _best(cells: Sequence[Cell | None], direction: str) -> float | None:
    means = [c.mean for c in cells if c is not None and math.isfinite(c.mean)]
    if len(means) < 2:
        return None  # nothing to compare with
    return max(means) if direction == "max" else min(means)


def _text(cell: Cell | None, best: float | None) -> str:
    if cell is None:
        return "-"
    text = html.escape(str(cell))
    if cell.flagged:
        text = f"<span class='flag' title='past 1e4 or not finite'>{text} ⚠</span>"
    return f"<b>{text}</b>" if best is not None and cell.mean == best else text


def calibration_table(
    summary: Sequence[SummaryRow], metric: str, direction: str, calibrators: Sequence[Calibrator]
) -> str:
    """One metric: a line per method variant and noise setting, a column per calibrator.

    >>> rows = [SummaryRow("ce", "ce", "none", 0.0, 2, {"ece": Cell(0.2, 0.01),
    ...                                                 "ece_iso": Cell(0.05, 0.01)})]
    >>> table = calibration_table(rows, "ece", "min", calibrators_in(rows))
    >>> table.count("<tr>"), "<td><b>0.050 ± 0.010</b></td>" in table
    (2, True)
    """
    titles = ("method", "noise", "rate", "seeds", "none", *(c.title for c in calibrators))
    head = "".join(f"<th>{html.escape(t)}</th>" for t in titles)
    body = []
    for s in summary:
        cells = [s.cells.get(metric + c.suffix) for c in calibrators]
        cells.insert(0, s.cells.get(metric))
        best = _best(cells, direction)
        where = (s.label, s.noise_kind, f"{s.noise_rate:g}", str(s.seeds))
        texts = [html.escape(t) for t in where] + [_text(cell, best) for cell in cells]
        body.append("<tr>" + "".join(f"<td>{t}</td>" for t in texts) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def calibration_section(summary: Sequence[SummaryRow]) -> str:
    """The HTML section: a table per metric; "" for runs stored before these metrics."""
    calibrators = calibrators_in(summary)
    only_ts = all(c.name == "temperature" for c in calibrators)
    shown = [
        (metric, title, direction)
        for metric, title, direction, always in CALIBRATION_METRICS
        if (always or not only_ts) and any(metric in s.cells for s in summary)
    ]
    if not shown:
        return ""
    names = ", ".join(f"{c.title} = {c.name} ({c.paper})" for c in calibrators)
    if calibrators:
        parts = [
            "<h2>Post-hoc calibration (test set, mean ± std over seeds)</h2>",
            "<p>Each calibrator of the config's [calibration] table is fitted on the run's "
            "validation split (noisy labels) after training and measured on the clean test set; "
            f"none = the trained model; {names}. Best of each line in bold; ⚠ = a mean past 1e4 "
            "or not finite. Histogram binning and isotonic regression give some true classes "
            "probability 0, floored at the smallest float, so their NLL can be large.</p>",
        ]
    else:  # e.g. no validation split: the section holds the main table's missing metrics
        parts = [
            "<h2>More calibration metrics (test set, mean ± std over seeds)</h2>",
            "<p>No calibrator was fitted: calibrators need a validation split "
            "(data.val_fraction &gt; 0) and train.temperature_scaling = true. none = the trained "
            "model; ⚠ = a mean past 1e4 or not finite.</p>",
        ]
    for metric, title, direction in shown:
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.append(calibration_table(summary, metric, direction, calibrators))
    return "\n".join(parts)
