"""``smoothlab report DIR``: CSV files, figures (PNG and SVG) and one self-contained HTML page.

The HTML page embeds every PNG as base64, so it can be mailed or attached on its own.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smoothlab.lab.report.calibration import calibration_section
from smoothlab.lab.report.drawing import Rendered
from smoothlab.lab.report.experiments import Experiment, differences, group_experiments, index_page
from smoothlab.lab.report.labels import short_labels
from smoothlab.lab.report.order import RunOrder
from smoothlab.lab.report.plots import (
    curves_plot,
    metric_vs_noise,
    noisy_examples_plot,
    smoothing_sweep,
)
from smoothlab.lab.report.reliability import reliability_plot
from smoothlab.lab.report.summary import SummaryRow, summarize
from smoothlab.lab.report.tables import metrics_table, provenance_table
from smoothlab.lab.run.store import ResultsStore, RunRow
from smoothlab.lab.train.checkpoint import atomic_write

__all__ = ["write_report"]


def _write_csv(path: Path, header: Sequence[str], lines: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(lines)


def _runs_csv(path: Path, rows: Sequence[RunRow]) -> None:
    metrics = sorted({m for row in rows for m in row.metrics})
    header = [
        "key",
        "experiment",
        "experiment_id",
        "method",
        "label",
        "noise_kind",
        "noise_rate",
        "replicate",
    ]
    lines = [
        [
            row.key,
            row.experiment,
            row.experiment_id,
            row.method,
            row.label,
            row.noise_kind,
            row.noise_rate,
            row.replicate,
            *(row.metrics.get(m, "") for m in metrics),
        ]
        for row in rows
    ]
    _write_csv(path, header + metrics, lines)


def _summary_csv(path: Path, summary: Sequence[SummaryRow]) -> None:
    metrics = sorted({m for s in summary for m in s.cells})
    header = ["label", "method", "noise_kind", "noise_rate", "seeds"]
    header += [f"{m}_{stat}" for m in metrics for stat in ("mean", "std")]
    lines = []
    for s in summary:
        values: list[object] = []
        for m in metrics:
            cell = s.cells.get(m)
            values += [cell.mean, cell.std] if cell else ["", ""]
        lines.append([s.label, s.method, s.noise_kind, s.noise_rate, s.seeds, *values])
    _write_csv(path, header, lines)


def _figures(rows: Sequence[RunRow], order: RunOrder) -> dict[str, tuple[str, Rendered | None]]:
    """File stem -> (caption, the figure as PNG and SVG, or None)."""
    return {
        "accuracy_vs_noise": (
            "Test accuracy against the noise rate (mean ± std over seeds)",
            metric_vs_noise(rows, "accuracy", "test accuracy", order),
        ),
        "ece_vs_noise": (
            "Expected calibration error (15 bins) against the noise rate",
            metric_vs_noise(rows, "ece", "ECE", order),
        ),
        "ece_ts_vs_noise": (
            "ECE after temperature scaling fitted on the validation split",
            metric_vs_noise(rows, "ece_ts", "ECE after TS", order),
        ),
        "reliability": (
            "Reliability diagrams per noise setting and method, pooled over seeds",
            reliability_plot(rows, order),
        ),
        "smoothing_sweep": (
            "Accuracy against the smoothing rate",
            smoothing_sweep(rows, order=order),
        ),
        "curves": (
            "Test accuracy per epoch at the highest noise",
            curves_plot(rows, order=order),
        ),
        "noisy_examples": (
            "Training examples with the most and least IVON-induced label noise",
            noisy_examples_plot(rows, order),
        ),
    }


_STYLE = (
    "body{font-family:sans-serif;max-width:1350px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right;white-space:nowrap}td:first-child,th:first-child{text-align:left}"
    "img{max-width:100%}"
    "pre{background:#f6f6f6;padding:1em;font-size:12px;overflow:auto}"
    "img{display:block;margin:0 auto}.flag{color:#b00020}.note{color:#555;font-size:13px}"
    ".provenance th{text-align:left;background:#f6f6f6}.provenance td,.index td{text-align:left}"
    ".provenance td{white-space:normal;word-break:break-all}"  # a long command wraps
    ".index th{text-align:left;vertical-align:bottom}.index td{vertical-align:top}"
    ".index td:last-child{white-space:normal}"  # what differs: one setting a line, wrapped
)


def _html(
    title: str,
    summary: Sequence[SummaryRow],
    images: dict[str, tuple[str, bytes]],
    configs: Mapping[str, object],
    head: tuple[str, Mapping[str, Any]] = ("", {}),
) -> str:
    note, provenance = head
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style><h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(note)}</p>" if note else "",
        provenance_table(provenance),
        "<h2>Summary (test set, mean ± std over seeds)</h2>",
        "<p>Best of each noise setting in bold, underlined where the seeds cannot tell a mean "
        "from it (Welch's t-test, two-sided p ≥ 0.05); "
        + (
            "TS = after temperature scaling fitted on the validation split; T = the fitted "
            "temperature; "
            if any("ece_ts" in row.cells for row in summary)
            else ""
        )
        + "⚠ = a mean past 1e4 or not finite.</p>",
        metrics_table(summary),
        calibration_section(summary),
    ]
    if images:
        parts.append(
            "<p class='note'>Each figure opens at full size as SVG (beside this page) when "
            "clicked; the page itself carries the PNGs and needs no other file.</p>"
        )
    for name, (caption, png) in images.items():
        data = base64.b64encode(png).decode()
        svg = html.escape(name.removesuffix(".png") + ".svg")
        parts.append(f"<h2>{html.escape(caption)}</h2>")
        parts.append(
            f"<a href='{svg}' title='{svg}: full size'>"
            f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'></a>"
        )
    parts.append("<h2>Resolved configs</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(configs, indent=2))}</pre>")
    return "\n".join(parts)


def _write_experiment(
    target: Path,
    experiment: Experiment | None,
    note: str = "",
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """One experiment's report (CSV, PNGs, ``index.html``) in ``target``; returns the page."""
    stored = experiment.configs if experiment else ()
    configs = {config.get("name", "?"): config for config in stored}
    order = RunOrder.from_configs(stored)
    # labels that show what differs; never the order in which the runs finished
    rows = order.sort(short_labels(experiment.rows if experiment else ()))
    summary = summarize(rows, order)
    _runs_csv(target / "runs.csv", rows)
    _summary_csv(target / "summary.csv", summary)
    images = {}
    for stem, (caption, figure) in _figures(rows, order).items():
        if figure is not None:  # PNG for the page, SVG for a paper
            atomic_write(target / f"{stem}.png", figure.png)
            atomic_write(target / f"{stem}.svg", figure.svg)
            images[f"{stem}.png"] = (caption, figure.png)
    title = f"smoothlab report: {experiment.name}" if experiment else "smoothlab report"
    page = target / "index.html"
    head = (note, provenance or {})
    atomic_write(page, _html(title, summary, images, configs, head).encode())
    return page


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write ``runs.csv``, ``summary.csv``, the PNGs and ``index.html``; return the HTML's path.

    The store is opened read-only, so archived results report from read-only media (``out``
    elsewhere). A folder with several experiments gets a sub-folder per experiment and an index
    (:mod:`~.experiments`); runs of different experiments are never pooled. Every table, CSV
    line and legend follows :class:`~.order.RunOrder` built from the stored configs, so the
    same results give the same files byte for byte.
    """
    folder = Path(folder)
    store = ResultsStore(folder, readonly=True)
    try:
        experiments = group_experiments(list(store.runs()), store.experiment_configs())
        provenance = store.provenance()
    finally:
        store.close()
    target = Path(out) if out is not None else folder / "report"
    if len(experiments) <= 1:
        single = experiments[0] if experiments else None
        return _write_experiment(target, single, "", provenance.get(single.id if single else ""))
    for stale in target.glob("*.*"):  # a single experiment's files would read as the whole
        if stale.suffix in (".csv", ".png", ".svg", ".html"):
            stale.unlink()
    diff = differences(experiments)
    for experiment in experiments:
        what = "; ".join(diff[experiment.id])
        note = f"Experiment {experiment.id} ({what}); the folder's other experiments: ../index.html"
        _write_experiment(
            target / experiment.folder, experiment, note, provenance.get(experiment.id)
        )
    page = target / "index.html"
    atomic_write(page, index_page(experiments, _STYLE).encode())
    return page
