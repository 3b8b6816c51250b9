"""The report page fit for a paper (issue 13, section 4): provenance and every metric on the page,
the best of each noise setting marked, exploding numbers readable and flagged, one seed without a
spread, labels that show what differs, and plots that hold for one-rate and sweep grids."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("rich")

import smoothlab.lab.report.drawing as drawing
import smoothlab.lab.report.plots as plots
import smoothlab.lab.report.reliability as reliability
from smoothlab.lab.report.html import write_report
from smoothlab.lab.report.summary import summarize
from smoothlab.lab.run.provenance import collect_provenance
from smoothlab.lab.run.store import ResultsStore, RunRow

ALL_METRICS = {
    "accuracy": 0.9, "top5_accuracy": 0.99, "nll": 0.3, "brier": 0.15, "ece": 0.05,
    "temperature": 1.2, "nll_ts": 0.28, "brier_ts": 0.14, "ece_ts": 0.02,
    "realised_noise_rate": 0.2,
}  # fmt: skip


def _row(method: str, params: dict[str, Any], rate: float, seed: int, **metrics: float) -> RunRow:
    label = method + "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    return RunRow(
        f"{label}-{rate}-{seed}", "unit", method, label, "symmetric", rate, seed,
        {"params": params}, {**ALL_METRICS, **metrics}, {}, {}, 1.0, "e1",
    )  # fmt: skip


def _figure_of(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Keep the matplotlib figures that the plot functions would encode as PNG."""
    figures: list[Any] = []
    real = drawing.render

    def keep(figure: Any) -> drawing.Rendered:
        figures.append(figure)
        return real(figure)

    monkeypatch.setattr(drawing, "render", keep)
    return figures


def test_the_page_has_provenance_every_metric_the_best_marked_and_flags(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.save_experiment("unit", {"name": "unit"})
    store.add_run(_row("ls", {"smoothing": 0.1}, 0.2, 0, accuracy=0.95))
    store.add_run(_row("nls", {"smoothing": -8.0}, 0.2, 0, nll=2548852702118334075095056646144.0))
    info = collect_provenance("cpu", ["smoothlab", "run", "x.toml"])
    store.save_provenance("e1", {**info, "executor": "auto (stacked)"})
    store.close()
    page = write_report(tmp_path).read_text()
    assert "<tr><th>executor</th><td><code>auto (stacked)</code></td></tr>" in page
    for text in ("loss kernels", "torch", "smoothlab run x.toml", "device", "wall time" * 0):
        assert text in page
    for title in ("accuracy", "top-5", "NLL", "Brier", "ECE", "<th>T</th>", "NLL (TS)",
                  "Brier (TS)", "ECE (TS)", "noise realised"):  # fmt: skip
        assert title in page
    assert "<b>0.950</b>" in page and "<b>0.300</b>" in page  # best accuracy, best NLL
    assert "2.549e+30 ⚠" in page and "2548852702118334075095056646144" not in page
    assert "±" not in re.sub(r"<p>.*?</p>|<h2>.*?</h2>", "", page)  # one seed: no spread


def test_one_seed_has_no_spread_and_labels_show_what_differs(tmp_path: Path) -> None:
    rows = [_row("sam", {"rho": 0.05, "adaptive": a}, 0.2, 0) for a in (False, True)]
    rows.append(_row("ivon", {"lr": 0.2, "weight_decay": 0.001, "warmup_epochs": 1}, 0.2, 0))
    (first, *_) = summarize(rows)
    assert str(first.cells["accuracy"]) == "0.900"
    store = ResultsStore(tmp_path)
    for row in rows:
        store.add_run(row)
    store.close()
    write_report(tmp_path)
    labels = (tmp_path / "report" / "summary.csv").read_text()
    assert "sam(rho=0.05, adaptive=False)" in labels and "sam(rho=0.05, adaptive=True)" in labels
    assert "\nivon," in labels and "weight_decay" not in labels


def test_one_noise_rate_draws_one_point_per_method(monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _figure_of(monkeypatch)
    rows = [_row("ce", {}, 0.3, s, accuracy=0.8 + s / 100) for s in (0, 1)]
    rows += [_row("ls", {"smoothing": 0.1}, 0.3, s, accuracy=0.85) for s in (0, 1)]
    assert plots.metric_vs_noise(rows, "accuracy", "test accuracy") is not None
    (axis,) = figures[0].axes
    xs = [container.lines[0].get_xdata()[0] for container in axis.containers]
    assert sorted(xs) == [0, 1]  # not every method on one vertical line
    assert [t.get_text() for t in axis.get_xticklabels()] == ["ce()", "ls(smoothing=0.1)"]
    assert axis.get_legend() is None and figures[0].legends  # the legend sits below the panels


def test_a_smoothing_sweep_has_a_symmetric_log_axis_with_plain_ticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures = _figure_of(monkeypatch)
    rates = (-0.4, -0.22, 0.1, 0.3)
    rows = [_row("ls" if r > 0 else "nls", {"smoothing": r}, 0.2, 0) for r in rates]
    rows.append(_row("ce", {}, 0.2, 0))
    assert plots.smoothing_sweep(rows) is not None
    (axis,) = figures[0].axes
    assert axis.get_xscale() == "symlog"
    ticks = [t.get_text() for t in axis.get_xticklabels()]
    assert ticks == ["-0.4", "-0.22", "0", "0.1", "0.3"]


def test_reliability_diagrams_for_every_noise_setting_with_pooled_ece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures = _figure_of(monkeypatch)

    def bins(accuracy: float, confidence: float, count: int) -> dict[str, list[float]]:
        edges = [k / 4 for k in range(5)]
        return {"edges": edges, "accuracy": [0, 0, 0, accuracy],
                "confidence": [0, 0, 0, confidence], "count": [0, 0, 0, count]}  # fmt: skip

    rows = []
    for rate in (0.0, 0.2, 0.4):
        for method, params in (("ce", {}), ("ls", {"smoothing": 0.1})):
            for seed, (acc, conf, n) in enumerate(((0.9, 0.8, 10), (0.5, 0.8, 30))):
                row = _row(method, params, rate, seed)
                rows.append(dataclasses.replace(row, extras={"reliability": bins(acc, conf, n)}))
    assert reliability.reliability_plot(rows) is not None
    panels = [axis for axis in figures[0].axes if axis.axison]
    assert len(panels) == 3 * 2  # noise settings x methods
    # pooled over the two seeds: (10 * 0.1 + 30 * 0.3) / 40 = 0.25
    texts = {t.get_text() for axis in panels for t in axis.texts}
    assert texts == {"ECE 0.250"}
    assert [axis.get_ylabel().split("\n")[0] for axis in panels[::2]] == [
        "symmetric 0",
        "symmetric 0.2",
        "symmetric 0.4",
    ]


def test_one_noise_settings_reliability_panels_wrap_and_show_the_share_on_top(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures = _figure_of(monkeypatch)
    edges = [k / 4 for k in range(5)]
    bins = {"edges": edges, "accuracy": [0, 0, 0.2, 0.9], "confidence": [0, 0, 0.6, 0.9],
            "count": [0, 0, 30, 10]}  # fmt: skip
    rows = [
        dataclasses.replace(_row("ls", {"smoothing": r / 10}, 0.2, 0), extras={"reliability": bins})
        for r in range(1, 8)
    ]
    assert reliability.reliability_plot(rows) is not None
    figure = figures[0]
    width, height = figure.get_size_inches()
    assert width < 2.5 * height  # two rows of four, not a strip of seven
    grid = [axis.get_subplotspec() for axis in figure.axes]
    assert {(s.rowspan.start, s.colspan.start) for s in grid} == {
        (i, j) for i in range(2) for j in range(4)
    }
    panels = [axis for axis in figure.axes if axis.axison]
    assert [axis.get_title() for axis in panels] == [f"ls(smoothing={r / 10})" for r in range(1, 8)]
    # the lowest panel of each column is labelled, the last cell stays empty
    labelled = {
        axis.get_subplotspec().colspan.start: axis.get_subplotspec().rowspan.start
        for axis in panels
        if axis.get_xlabel() == "confidence"
    }
    assert labelled == {0: 1, 1: 1, 2: 1, 3: 0}
    for axis in panels:
        accuracy, share = axis.patches  # drawn in this order: the share line is on top
        assert accuracy.get_fill() and not share.get_fill()
        assert share.get_edgecolor()[:3] == pytest.approx((0.25, 0.25, 0.25))
        top = max(y for _, y in share.get_path().vertices)
        assert top == pytest.approx(30 / 40)  # the share of the bin with 30 of 40 samples


def test_without_calibrators_the_section_says_none_was_fitted(tmp_path: Path) -> None:
    no_ts = {k: v for k, v in ALL_METRICS.items() if not k.endswith("_ts") and k != "temperature"}
    store = ResultsStore(tmp_path)
    row = _row("ls", {"smoothing": 0.1}, 0.2, 0)
    store.add_run(dataclasses.replace(row, metrics={**no_ts, "smooth_ece": 0.04}))
    store.close()
    page = write_report(tmp_path).read_text()
    assert "Post-hoc calibration" not in page and "fitted on the run's validation" not in page
    assert "TS = " not in page  # the summary's caption names no column it lacks
    assert "<h2>More calibration metrics (test set, mean ± std over seeds)</h2>" in page
    assert "No calibrator was fitted" in page and "<h3>Smooth ECE" in page
