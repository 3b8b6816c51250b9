"""The results store and the report: rows round-trip, duplicates are ignored, temporary files never
survive, and the report's CSV, PNGs and HTML hold what they should."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import re
import typing
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("rich")

from matplotlib.figure import Figure

from smoothlab.lab.report.summary import print_table, summarize
from smoothlab.lab.run.store import ResultsStore, RunRow
from smoothlab.lab.train.checkpoint import TMP_PREFIX, atomic_write

METHODS = {"ce": {}, "ls": {"smoothing": 0.1}, "nls": {"smoothing": -0.4}, "ivon": {"lr": 0.2}}


def _reliability(confidence: float) -> dict[str, list[float]]:
    edges = [i / 15 for i in range(16)]
    count = [0.0] * 15
    count[int(confidence * 15)] = 50.0
    return {"edges": edges, "confidence": [confidence] * 15, "accuracy": [0.8] * 15, "count": count}


def _row(method: str, params: dict[str, Any], rate: float, replicate: int) -> RunRow:
    label = (
        method
        if not params
        else f"{method}(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    )
    accuracy = 0.95 - rate / 2 + 0.01 * replicate
    extras: dict[str, object] = {"reliability": _reliability(0.9 - rate)}
    if method == "ivon":
        extras["noisy_examples"] = {
            "shape": [1, 8, 8],
            "most": {
                "x": [[float(i % 8) for i in range(64)]] * 8,
                "label": [1] * 8,
                "clean": [1] * 8,
                "noise": [0.9] * 8,
            },
            "least": {
                "x": [[0.0] * 64] * 8,
                "label": [2] * 8,
                "clean": [2] * 8,
                "noise": [0.1] * 8,
            },
        }
    return RunRow(
        key=f"{label}-{rate}-{replicate}",
        experiment="unit",
        method=method,
        label=label,
        noise_kind="none" if rate == 0 else "symmetric",
        noise_rate=rate,
        replicate=replicate,
        config={"method": method, "params": params},
        metrics={"accuracy": accuracy, "ece": 0.1 + rate, "ece_ts": 0.05, "nll": 0.3 + rate},
        curves={"test_accuracy": [0.5, accuracy]},
        extras=extras,
        wall_time=1.0,
    )


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    store = ResultsStore(folder)
    store.save_experiment("unit", {"name": "unit", "seeds": 2})
    for method, params in METHODS.items():
        for rate in (0.0, 0.2, 0.4):
            for replicate in (0, 1):
                store.add_run(_row(method, params, rate, replicate), b"weights")
    for r in (0.2, 0.6):  # a smoothing sweep: ce (r = 0), ls at 0.1, 0.2, 0.6, nls at -0.4
        store.add_run(_row("ls", {"smoothing": r}, 0.2, 0))
    store.close()
    return folder


def test_store_round_trip_and_duplicates_ignored(store_dir: Path) -> None:
    store = ResultsStore(store_dir)
    rows = list(store.runs())
    assert len(rows) == 4 * 3 * 2 + 2
    store.add_run(_row("ce", {}, 0.2, 0))  # same key again: ignored, not duplicated
    assert len(list(store.runs())) == len(rows)
    assert rows[0].metrics["accuracy"] == pytest.approx(0.95)
    assert store.weights_path("ce-0.0-0").read_bytes() == b"weights"
    assert store.experiments() == {"unit": {"name": "unit", "seeds": 2}}
    assert len(list(store.runs({"ce-0.0-0", "nope"}))) == 1
    store.close()


def test_atomic_write_leaves_no_temporary_files_and_stale_ones_are_removed(tmp_path: Path) -> None:
    atomic_write(tmp_path / "a" / "w.bin", b"123")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["w.bin"]
    stale = tmp_path / "weights" / (TMP_PREFIX + "abc")
    stale.parent.mkdir()
    stale.write_bytes(b"half a file")
    ResultsStore(tmp_path).close()
    assert not stale.exists()


def test_summary_mean_and_std_over_seeds(store_dir: Path) -> None:
    store = ResultsStore(store_dir)
    summary = summarize(store.runs())
    store.close()
    ce = next(s for s in summary if s.label == "ce" and s.noise_rate == 0.4)
    assert ce.seeds == 2
    assert ce.cells["accuracy"].mean == pytest.approx(0.755)
    assert ce.cells["accuracy"].std == pytest.approx(0.01 / 2**0.5)
    out = io.StringIO()
    print_table(summary, out, title="unit")
    text = out.getvalue()
    assert "0.755 ± 0.007" in text
    assert "nls(smoothing=-0.4)" in text
    assert "\x1b[" not in text and "bold" not in text  # a file gets plain text


def test_on_a_terminal_the_table_bolds_the_best_of_each_noise_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for name in ("NO_COLOR", "TERM", "FORCE_COLOR", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    rows = [_row("ce", {}, 0.2, 0), _row("ls", {"smoothing": 0.1}, 0.2, 0)]
    rows[1] = dataclasses.replace(rows[1], metrics={**rows[1].metrics, "accuracy": 0.99})
    out = Terminal()
    print_table(summarize(rows), out)
    text = out.getvalue()
    bold = [cell.strip() for cell in re.findall(r"\x1b\[1m([^\x1b]*)\x1b\[0m", text)]
    assert "0.990" in bold and "0.850" not in bold  # ls's accuracy is the best, ce's is not
    assert "bold = best of its noise setting" in text


def test_report_writes_csv_pngs_and_a_self_contained_html(store_dir: Path) -> None:
    import matplotlib.image

    from smoothlab.lab.report.html import write_report

    page = write_report(store_dir)
    folder = page.parent
    expected = {
        "accuracy_vs_noise.png",
        "ece_vs_noise.png",
        "ece_ts_vs_noise.png",
        "reliability.png",
        "smoothing_sweep.png",
        "curves.png",
        "noisy_examples.png",
    }
    assert expected <= {p.name for p in folder.glob("*.png")}
    # every figure also as SVG for a paper, its text kept as text
    assert {p.stem for p in folder.glob("*.svg")} == {p.stem for p in folder.glob("*.png")}
    svg = (folder / "accuracy_vs_noise.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<text" in svg and "dc:date" not in svg
    for png in folder.glob("*.png"):
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    with (folder / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert len(runs) == 26 and {"accuracy", "ece", "noise_rate", "label"} <= set(runs[0])
    with (folder / "summary.csv").open() as handle:
        summary = list(csv.DictReader(handle))
    assert {"accuracy_mean", "accuracy_std"} <= set(summary[0])
    html = page.read_text()
    # one IVON variant: its label shows no parameter (nothing tells it apart)
    for label in ("ce", "ls(smoothing=0.1)", "nls(smoothing=-0.4)", "ivon"):
        assert f">{label}<" in html
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == len(expected)
    # each figure links to its SVG beside the page, which is there
    links = re.findall(r"<a href='([a-z_]+\.svg)'[^>]*><img alt='([a-z_]+)\.png'", html)
    assert len(links) == len(expected) and all(svg == f"{png}.svg" for svg, png in links)
    assert all((folder / svg).is_file() for svg, _ in links)
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data in images)
    assert "src='http" not in html and "<script" not in html  # nothing fetched from elsewhere


def test_report_without_sweep_or_ivon_skips_those_figures(tmp_path: Path) -> None:
    from smoothlab.lab.report.html import write_report

    store = ResultsStore(tmp_path)
    store.add_run(_row("ce", {}, 0.2, 0))
    # class-dependent noise has rate-0 runs of its own, next to the clean ones
    for rate in (0.0, 0.2):
        row = _row("ce", {}, rate, 0)
        store.add_run(dataclasses.replace(row, key=f"cd-{rate}", noise_kind="class-dependent"))
    store.close()
    folder = write_report(tmp_path, tmp_path / "out").parent
    names = {p.name for p in folder.glob("*.png")}
    assert "smoothing_sweep.png" not in names and "noisy_examples.png" not in names
    assert "accuracy_vs_noise.png" in names


def test_report_on_a_folder_without_results(tmp_path: Path) -> None:
    from smoothlab.lab.report.html import write_report

    with pytest.raises(FileNotFoundError, match=r"no results in .*results.sqlite"):
        write_report(tmp_path)


def test_summary_survives_an_infinite_metric() -> None:
    rows = [_row("ce", {}, 0.2, 0), _row("ce", {}, 0.2, 1)]
    rows[0].metrics["nll"] = float("inf")
    cell = summarize(rows)[0].cells["nll"]
    assert cell.mean == float("inf")


def _look(line: Any) -> tuple[str, str, str]:
    """What tells a drawn series apart: colour, marker and line style."""
    import matplotlib.colors

    return matplotlib.colors.to_hex(line.get_color()), line.get_marker(), line.get_linestyle()


def test_every_method_is_drawn_unlike_the_others_and_alike_in_every_figure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # twelve methods: matplotlib's ten-colour cycle alone drew the eleventh like the first
    from smoothlab.lab.report import drawing, plots

    drawn: list[object] = []
    monkeypatch.setattr(drawing, "render", drawn.append)
    methods = [("ce", {})] + [("ls", {"smoothing": i / 20}) for i in range(1, 12)]
    rows = [_row(m, p, rate, 0) for m, p in methods for rate in (0.0, 0.2, 0.4)]
    # a kind with runs at rate 0 only (as class-dependent noise can have): its panel lays the
    # methods side by side
    rows += [dataclasses.replace(r, noise_kind="human", noise_rate=0.0, key=r.key + "h")
             for r in rows if r.noise_rate == 0.4]  # fmt: skip
    plots.metric_vs_noise(rows, "accuracy", "test accuracy")
    plots.curves_plot(rows)
    noise, curves = typing.cast(list[Figure], drawn)
    labels = list(dict.fromkeys(r.label for r in rows))
    assert [a.get_xlabel() for a in noise.axes] == ["human noise rate 0", "symmetric noise rate"]
    for axis in noise.axes:
        looks = {c.get_label(): _look(c.lines[0]) for c in axis.containers}
        assert list(looks) == labels and len(set(looks.values())) == 12
        assert looks["ce"][1:] == ("o", "-") and looks[labels[10]][1:] == ("s", "--")
        if axis is noise.axes[0]:
            first = looks
        assert looks == first  # the same method looks the same in every panel
    assert curves.axes[0].get_legend() is None and len(curves.legends) == 1  # below the panel
    lines = {line.get_label(): _look(line) for line in curves.axes[0].get_lines()}
    assert {k: v[0::2] for k, v in lines.items()} == {k: v[0::2] for k, v in first.items()}


def test_reliability_panels_run_methods_down_the_rows_when_they_are_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smoothlab.lab.report import drawing, reliability

    drawn: list[object] = []
    monkeypatch.setattr(drawing, "render", drawn.append)
    for count in (6, 8):  # a column per method up to RELIABILITY_COLUMNS, then a row per method
        methods = [("ce", {})] + [("ls", {"smoothing": i / 20}) for i in range(1, count)]
        reliability.reliability_plot(
            [_row(m, p, rate, 0) for m, p in methods for rate in (0, 0.2, 0.4)]
        )
    few, many = typing.cast(list[Figure], drawn)
    assert few.axes[0].get_gridspec().get_geometry() == (3, 6)
    assert many.axes[0].get_gridspec().get_geometry() == (8, 3)
    top = [a.get_title() for a in many.axes[:3]]
    side = [a.get_ylabel() for a in many.axes[::3]]
    assert top == ["none 0", "symmetric 0.2", "symmetric 0.4"]
    assert side[:2] == ["ce\naccuracy", "ls(smoothing=0.05)\naccuracy"] and len(side) == 8
    # the panel of ls(smoothing=0.1) at rate 0.2: its own runs' ECE (|0.7 - 0.8| in every bin)
    assert many.axes[2 * 3 + 1].texts[0].get_text() == "ECE 0.100"
    assert [a.get_title() for a in few.axes[:2]] == ["ce", "ls(smoothing=0.05)"]
    # tick labels on the outer panels only; no shared axes, whose limits propagate to every
    # sibling (quadratic: a 200-panel grid took 90 % of a 150-second report)
    many.draw_without_rendering()
    for index, axis in enumerate(many.axes):
        assert axis.get_shared_x_axes().get_siblings(axis) == [axis]
        left = any(t.get_text() for t in axis.get_yticklabels())
        bottom = any(t.get_text() for t in axis.get_xticklabels())
        assert (left, bottom) == (index % 3 == 0, index >= 7 * 3), index


def test_the_smoothing_sweep_axis_and_the_curves_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    from smoothlab.lab.report import drawing, plots

    drawn: list[object] = []
    monkeypatch.setattr(drawing, "render", drawn.append)
    positive = [("ce", {})] + [("ls", {"smoothing": r}) for r in (0.1, 0.3, 0.5)]
    negative = [*positive, ("nls", {"smoothing": -2.0})]
    for methods in (positive, negative):
        plots.smoothing_sweep([_row(m, p, rate, 0) for m, p in methods for rate in (0, 0.4)])
    plots.curves_plot([_row(m, p, 0.4, 0) for m, p in positive])
    linear, symlog, curves = typing.cast(list[Figure], drawn)
    assert linear.axes[0].get_xscale() == "linear" and symlog.axes[0].get_xscale() == "symlog"
    assert "negative smoothing" not in linear.axes[0].get_xlabel()
    assert "negative smoothing" in symlog.axes[0].get_xlabel()
    for figure in (linear, symlog):  # the legend below the panel, where it hides no line
        assert figure.axes[0].get_legend() is None
        texts = [t.get_text() for t in figure.legends[0].get_texts()]
        assert texts == ["noise: none 0", "noise: symmetric 0.4"]
    axis = curves.axes[0]
    curves.draw_without_rendering()
    assert all(float(t).is_integer() for t in axis.get_xticks())  # epochs: no 1.25
    assert {line.get_marker() for line in axis.get_lines()} == {"o"}  # two epochs: marked


def test_many_noise_kinds_wrap_into_rows_of_three(monkeypatch: pytest.MonkeyPatch) -> None:
    from smoothlab.lab.report import drawing, plots

    drawn: list[object] = []
    monkeypatch.setattr(drawing, "render", drawn.append)
    kinds = ["symmetric", "pairflip", "uniform", "instance", "class-dependent"]
    rows = [dataclasses.replace(_row(m, p, rate, 0), noise_kind=kind, key=f"{m}{kind}{rate}")
            for m, p in METHODS.items() for kind in kinds for rate in (0.2, 0.4)]  # fmt: skip
    plots.metric_vs_noise(rows, "accuracy", "test accuracy")
    (figure,) = typing.cast(list[Figure], drawn)
    assert figure.axes[0].get_gridspec().get_geometry() == (2, 3)
    titles = [a.get_title() for a in figure.axes if a.axison]
    assert len(titles) == 5 and not figure.axes[5].axison  # the sixth cell is empty
    assert {t.split(": ")[1] for t in titles} == {f"{k} noise" for k in kinds}


def test_the_legend_below_the_panels_fits_the_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    # the constrained layout makes room below the panels, not beside them: long labels take
    # fewer columns instead of being cut at the figure's edges, and the figure grows taller
    from smoothlab.lab.report import drawing, plots

    drawn: list[object] = []
    monkeypatch.setattr(drawing, "render", drawn.append)
    long = {f"bcorrect{i}": {"transition": "estimated-" + "x" * 12} for i in range(6)}
    rows = [_row(m, p, rate, 0) for m, p in long.items() for rate in (0.2, 0.4)]
    plots.metric_vs_noise(rows, "accuracy", "test accuracy")
    short = [_row("ce", {}, rate, 0) for rate in (0.2, 0.4)]
    plots.metric_vs_noise(short, "accuracy", "test accuracy")
    wide, narrow = typing.cast(list[Figure], drawn)
    for figure in (wide, narrow):
        (legend,) = figure.legends
        box = legend.get_window_extent(figure.canvas.get_renderer())  # type: ignore[attr-defined]
        assert box.x0 >= 0 and box.x1 <= figure.bbox.width
    assert wide.get_figheight() > narrow.get_figheight() > 4.2
