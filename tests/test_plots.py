"""smoothlab.plots: figures carry the numbers smoothlab.metrics and analysis compute, grids of every
shape draw sensibly, saving writes SVG and PNG, and matplotlib stays optional."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from smoothlab.analysis import logistic_noise_curve, template_projection  # noqa: E402
from smoothlab.metrics import expected_calibration_error, reliability_bins  # noqa: E402
from smoothlab.plots import (  # noqa: E402
    confidence_histogram,
    label_noise_vs_mean_logit,
    metric_vs_epoch,
    metric_vs_noise,
    penultimate_projection,
    reliability_diagram,
    reliability_grid,
    save_figure,
    simplex_loss_map,
    smoothed_label_maps,
)


def _data(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, 4, generator=gen)
    return torch.softmax(logits, 1), torch.randint(0, 4, (n,), generator=gen)


def _texts(fig: Figure, index: int = 0) -> list[str]:
    return [t.get_text() for t in fig.axes[index].texts]


# ----------------------------------------------------------------------------------- reliability
def test_reliability_diagram_shows_the_metrics_bins_counts_and_ece() -> None:
    probs, target = _data()
    fig = reliability_diagram(probs, target, n_bins=10, title="clean")
    bins = reliability_bins(probs, target, n_bins=10)
    ece = float(expected_calibration_error(probs, target, n_bins=10))
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and ax.get_title() == "clean"
    assert len(ax.patches) == 2 * 10  # an accuracy bar and a gap bar per bin
    heights = [float(p.get_height()) for p in ax.patches[:10]]
    assert heights == pytest.approx(torch.nan_to_num(bins.accuracy).tolist())
    counts = [str(n) for n in bins.count.tolist() if n > 0]
    assert _texts(fig) == [*counts, f"ECE = {ece:.4f}"]
    assert ax.title.get_fontsize() == 9.0  # the paper style applied


def test_reliability_diagram_draws_into_given_axes_and_can_hide_counts() -> None:
    probs, target = _data()
    fig = Figure()
    ax = fig.add_subplot()
    assert reliability_diagram(probs, target, ax=ax, show_counts=False) is fig
    assert _texts(fig) == [f"ECE = {float(expected_calibration_error(probs, target)):.4f}"]
    assert len(ax.patches) == 2 * 15


def test_reliability_diagram_errors() -> None:
    probs, target = _data()
    with pytest.raises(
        TypeError, match=re.escape("`ax` must be a matplotlib Axes or None, got str")
    ):
        reliability_diagram(probs, target, ax="left")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("`n_bins` must be >= 1, got 0")):
        reliability_diagram(probs, target, n_bins=0)


def test_confidence_histogram_shares_and_lines() -> None:
    probs, target = _data()
    fig = confidence_histogram(probs, target, n_bins=10, title="conf")
    ax = fig.axes[0]
    bins = reliability_bins(probs, target, n_bins=10)
    shares = [float(p.get_height()) for p in ax.patches]
    assert shares == pytest.approx((bins.count / len(target)).tolist())
    accuracy = float((probs.argmax(1) == target).double().mean())
    confidence = float(probs.max(1).values.double().mean())
    lines = [float(line.get_xdata()[0]) for line in ax.get_lines()]
    assert lines == pytest.approx([accuracy, confidence], abs=1e-6)
    assert ax.get_title() == "conf"


def test_reliability_grid_small_multiples() -> None:
    panels = {f"noise {r}": _data(200, seed=i) for i, r in enumerate((0.0, 0.2, 0.4, 0.6, 0.8))}
    fig = reliability_grid(panels, n_bins=8, ncols=3, title="by noise")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 6 and [ax.get_title() for ax in visible] == list(panels)
    for ax, (probs, target) in zip(visible, panels.values(), strict=True):
        ece = float(expected_calibration_error(probs, target, n_bins=8))
        assert ax.texts[-1].get_text() == f"ECE = {ece:.4f}"
    assert fig.get_suptitle() == "by noise"
    # x labels where no panel is below: the bottom row and the panels above the empty slot
    assert [ax.get_xlabel() for ax in visible] == ["", "", "confidence", "confidence", "confidence"]
    assert len(reliability_grid({"one": _data()}).axes) == 1


@pytest.mark.parametrize(
    ("panels", "kwargs", "kind", "message"),
    [
        (
            {},
            {},
            ValueError,
            "`panels` must be a non-empty mapping of title -> (probs, target), got {}",
        ),
        (
            [1],
            {},
            TypeError,
            "`panels` must be a non-empty mapping of title -> (probs, target), got [1]",
        ),
        ({"a": _data()}, {"ncols": 0}, ValueError, "`ncols` must be >= 1, got 0"),
    ],
)
def test_reliability_grid_errors(
    panels: object, kwargs: dict[str, object], kind: type[Exception], message: str
) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        reliability_grid(panels, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- metric vs noise
RESULTS = {
    "ce": {0.0: [0.95, 0.97], 0.2: [0.90, 0.88], 0.4: [0.70, 0.74]},
    "ls": {0.0: [0.96], 0.2: [0.91], 0.4: [0.80]},
}


def test_metric_vs_noise_lines_means_and_spread() -> None:
    fig = metric_vs_noise(RESULTS, metric="accuracy", title="acc")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ce", "ls"]
    ce, ls = ax.containers
    assert ce.lines[0].get_ydata().tolist() == pytest.approx([0.96, 0.89, 0.72])
    assert ls.lines[0].get_xdata().tolist() == [0.0, 0.2, 0.4]
    assert ce.has_yerr and not ls.has_yerr  # one seed: no spread is drawn
    assert ax.get_xscale() == "linear" and ax.get_title() == "acc" and ax.get_ylabel() == "accuracy"
    fig.draw_without_rendering()
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= frame.x1  # outside the panel: it never hides data


def test_metric_vs_noise_with_a_single_rate_lays_methods_side_by_side() -> None:
    fig = metric_vs_noise({"ce": {0.3: [0.8, 0.82]}, "ls": {0.3: [0.85]}}, metric="ECE")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ce", "ls"]
    assert ax.get_xlabel() == "method (noise rate 0.3)"
    assert [c.lines[0].get_ydata()[0] for c in ax.containers] == pytest.approx([0.81, 0.85])
    assert ax.get_xlim() == (-0.5, 1.5)


def _looks(lines: list[Any]) -> list[tuple[str, str, str]]:
    import matplotlib.colors

    return [(matplotlib.colors.to_hex(x.get_color()), x.get_marker(), x.get_linestyle())
            for x in lines]  # fmt: skip


def test_more_methods_than_colours_are_still_told_apart() -> None:
    # matplotlib's colour cycle has ten colours: the eleventh method must differ otherwise
    many = {f"m{i}": {0.0: [0.9 - i / 100], 0.2: [0.8 - i / 100]} for i in range(12)}
    lines = _looks([c.lines[0] for c in metric_vs_noise(many).axes[0].containers])
    assert len(set(lines)) == 12 and lines[0][1:] == ("o", "-") and lines[10][1:] == ("s", "--")
    assert lines[10][0] == lines[0][0]  # the colour repeats, marker and line style do not
    epochs = {name: {1: values[0.0], 2: values[0.2]} for name, values in many.items()}
    assert _looks(metric_vs_epoch(epochs, metric="accuracy").axes[0].get_lines()) == lines
    single = {name: {0.3: values[0.0]} for name, values in many.items()}
    dots = _looks([c.lines[0] for c in metric_vs_noise(single).axes[0].containers])
    assert len({look[:2] for look in dots}) == 12  # points only: colour and marker differ


def test_metric_vs_noise_symlog_for_negative_smoothing_rates() -> None:
    rates = [0.8, 0.4, 0.0, -0.4, -1.0, -2.0, -8.0]
    fig = metric_vs_noise({"nls": {r: [0.9] for r in rates}}, xlabel="smoothing rate")
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog"
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "-8",
        "-2",
        "-1",
        "-0.4",
        "0",
        "0.4",
        "0.8",
    ]
    linear = metric_vs_noise({"nls": {r: [0.9] for r in rates}}, xscale="linear").axes[0]
    assert linear.get_xscale() == "linear"


@pytest.mark.parametrize(
    ("results", "kwargs", "kind", "message"),
    [
        (
            {},
            {},
            ValueError,
            "`results` must be a non-empty mapping method -> {rate: [value per seed]}, got {}",
        ),
        (
            [],
            {},
            TypeError,
            "`results` must be a non-empty mapping method -> {rate: [value per seed]}, got []",
        ),
        (
            {"ce": {}},
            {},
            ValueError,
            "`results['ce']` must be a non-empty mapping rate -> values, got {}",
        ),
        (
            {"ce": {0.1: []}},
            {},
            ValueError,
            "`results['ce'][0.1]` must be at least one value, got []",
        ),
        (
            RESULTS,
            {"xscale": "log"},
            ValueError,
            "`xscale` must be one of 'auto', 'linear', 'symlog', got 'log'",
        ),
    ],
)
def test_metric_vs_noise_errors(
    results: object, kwargs: dict[str, object], kind: type[Exception], message: str
) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        metric_vs_noise(results, **kwargs)  # type: ignore[arg-type]


def test_metric_vs_epoch_bands_reference_and_log_axis() -> None:
    curves = {"uniform": {0: [0.2, 0.4], 3: [0.1, 0.3]}, "smoothed": {0: [0.9], 3: [0.8]}}
    fig = metric_vs_epoch(curves, metric="delta", reference=1.0, logy=True, title="TSLA")
    ax = fig.axes[0]
    uniform, smoothed, reference = ax.get_lines()
    assert list(uniform.get_ydata()) == pytest.approx([0.3, 0.2])
    assert list(smoothed.get_ydata()) == pytest.approx([0.9, 0.8])
    assert list(reference.get_ydata()) == [1.0, 1.0] and reference.get_linestyle() == "--"
    assert len(ax.collections) == 1  # a std band for the two-seed curve only
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    spread = math.sqrt(0.02)  # the std of (0.2, 0.4) and of (0.1, 0.3)
    assert band.min() == pytest.approx(0.2 - spread) and band.max() == pytest.approx(0.3 + spread)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch" and ax.get_title() == "TSLA"
    fig.draw_without_rendering()
    assert {t.get_text() for t in ax.get_yticklabels()} & {"0.1", "1"}  # plain, not 10^-1
    assert metric_vs_epoch(curves, metric="delta").axes[0].get_yscale() == "linear"


@pytest.mark.parametrize(
    ("curves", "kwargs", "kind", "message"),
    [
        (
            {},
            {},
            ValueError,
            "`curves` must be a non-empty mapping method -> {epoch: [value per seed]}, got {}",
        ),
        (
            {"a": {1: [0.5]}},
            {"reference": "one"},
            TypeError,
            "`reference` must be a real number, got 'one'",
        ),
        ({"a": {1: [0.5]}}, {"logy": 1}, TypeError, "`logy` must be a bool, got 1"),
    ],
)
def test_metric_vs_epoch_errors(
    curves: object, kwargs: dict[str, object], kind: type[Exception], message: str
) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        metric_vs_epoch(curves, metric="m", **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the seeds' figures
def test_simplex_loss_map_marks_the_ls_target_and_the_credal_border() -> None:
    fig = simplex_loss_map("ls", rate=0.3, true_class=1, resolution=30)
    ax = fig.axes[0]
    assert len(fig.axes) == 2 and ax.get_title() == "label smoothing, r = 0.3"
    point = ax.get_lines()[1]  # after the outline
    # true class 1 in the lower right corner (1, 0), class 0 lower left, class 2 on top
    q = [0.1, 0.8, 0.1]
    assert point.get_xdata()[0] == pytest.approx(q[1] + q[2] * 0.5)
    assert point.get_ydata()[0] == pytest.approx(q[2] * math.sqrt(3) / 2)
    fig = simplex_loss_map("relaxation", rate=0.25, resolution=30, title="LR")
    ax = fig.axes[0]
    border = ax.get_lines()[1]
    assert border.get_linestyle() == "--" and ax.get_title() == "LR"
    assert border.get_xdata().tolist() == pytest.approx([0.75, 0.75 + 0.25 * 0.5])
    with pytest.raises(
        ValueError, match=re.escape("`loss` must be one of 'ls', 'relaxation', got 'ce'")
    ):
        simplex_loss_map("ce")  # type: ignore[arg-type]


def test_label_noise_curve_plot_draws_the_analysis_curve() -> None:
    fig = label_noise_vs_mean_logit(logit_std=2.0, limit=3.0, title="Fig. 2")
    line = fig.axes[0].get_lines()[0]
    x = torch.as_tensor(line.get_xdata(), dtype=torch.float64)
    expected = logistic_noise_curve(x, logit_std=2.0)
    assert line.get_ydata().tolist() == pytest.approx(expected.tolist())
    assert fig.axes[0].get_title() == "Fig. 2"
    with pytest.raises(ValueError, match=re.escape("`limit` must be > 0.0, got -1.0")):
        label_noise_vs_mean_logit(limit=-1.0)


def test_smoothed_label_maps_draw_the_signed_noise_on_one_shared_scale() -> None:
    ls = 0.8 * torch.eye(3) + 0.2 / 3
    ivon = torch.tensor([[1.2, -0.1, -0.1], [0.2, 0.8, 0.0], [math.nan] * 3], dtype=torch.float64)
    fig = smoothed_label_maps({"LS": ls, "IVON": ivon}, class_names=["a", "b", "c"],
                              linear_below=1e-2, title="Fig. 4")  # fmt: skip
    maps = [ax.images[0] for ax in fig.axes[:2]]
    assert [ax.get_title() for ax in fig.axes[:2]] == ["LS", "IVON"]
    assert all(m.norm is maps[0].norm for m in maps)  # one scale for every panel
    assert (maps[0].norm.vmin, maps[0].norm.vmax) == pytest.approx((-0.2, 0.2))  # max |S - I|
    assert maps[0].norm.linthresh == 1e-2
    drawn = torch.as_tensor(maps[0].get_array())
    torch.testing.assert_close(drawn, (ls - torch.eye(3)).double())
    ivon_drawn = torch.as_tensor(maps[1].get_array())
    assert ivon_drawn[0, 0] == pytest.approx(0.2) and ivon_drawn[2].isnan().all()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b", "c"]
    assert fig.get_suptitle() == "Fig. 4"


@pytest.mark.parametrize(
    ("matrices", "kwargs", "error", "message"),
    [
        ({}, {}, TypeError, "`matrices` must be a non-empty mapping"),
        ({"a": torch.eye(2).long()}, {}, TypeError, "`matrices['a']` must be a floating-point"),
        ({"a": torch.ones(2, 3)}, {}, ValueError, "`matrices['a']` must be a square (K, K)"),
        ({"a": torch.eye(2), "b": torch.eye(3)}, {}, ValueError, "`matrices['b']` must be of"),
        ({"a": torch.eye(2)}, {"class_names": ["x"]}, ValueError, "`class_names` must be 2 names"),
        ({"a": torch.eye(2)}, {"linear_below": 0.0}, ValueError, "`linear_below` must be > 0.0"),
    ],
)
def test_smoothed_label_maps_errors(
    matrices: dict[str, torch.Tensor], kwargs: dict[str, object], error: type, message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        smoothed_label_maps(matrices, **kwargs)  # type: ignore[arg-type]


def test_penultimate_projection_plots_the_three_classes_only() -> None:
    gen = torch.Generator().manual_seed(0)
    weight, features = torch.randn(5, 6, generator=gen), torch.randn(40, 6, generator=gen)
    target = torch.arange(40) % 5
    fig = penultimate_projection(features, target, weight, (4, 0, 2), class_names=["d", "a", "c"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["d", "a", "c"]
    *classes, templates = ax.collections
    expected = template_projection(features, weight, (4, 0, 2))
    for collection, k in zip(classes, (4, 0, 2), strict=True):
        offsets = torch.as_tensor(collection.get_offsets().data, dtype=torch.float32)
        assert torch.allclose(offsets, expected[target == k], atol=1e-6)
    assert len(templates.get_offsets()) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"target": torch.zeros(3, dtype=torch.long)},
            "`target` must be of shape (4,), got shape (3,)",
        ),
        ({"class_names": ["a", "b"]}, "`class_names` must be three names, got ['a', 'b']"),
        (
            {"classes": (0, 1, 1)},
            "`classes` must be three distinct indices in [0, 2], got (0, 1, 1)",
        ),
    ],
)
def test_penultimate_projection_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "features": torch.randn(4, 3),
        "target": torch.tensor([0, 1, 2, 0]),
        "weight": torch.eye(3),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        penultimate_projection(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- saving
def test_save_figure_writes_svg_and_png(tmp_path: Path) -> None:
    fig = reliability_diagram(*_data())
    svg, png = save_figure(fig, tmp_path / "deep" / "reliability", dpi=100)
    assert (svg.name, png.name) == ("reliability.svg", "reliability.png")
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert "ECE = " in svg.read_text()  # text stays text in the SVG
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(header[16:20], "big")
    assert width == round(fig.get_figwidth() * 100)


@pytest.mark.parametrize(
    ("args", "kind", "message"),
    [
        (
            (Figure(), "out/fig.png"),
            ValueError,
            "`path_stem` must be a path without an image suffix (both are written), got 'out/fig.png'",
        ),
        (("figure", "out/fig"), TypeError, "`figure` must be a matplotlib Figure, got str"),
        ((Figure(), 3), TypeError, "`path_stem` must be a str or Path, got int"),
    ],
)
def test_save_figure_errors(
    args: tuple[object, object], kind: type[Exception], message: str
) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        save_figure(*args)  # type: ignore[arg-type]


def test_save_figure_dpi_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("`dpi` must be >= 50, got 10")):
        save_figure(Figure(), tmp_path / "x", dpi=10)


# ------------------------------------------------------------------------ matplotlib is optional
def test_importing_plots_does_not_import_matplotlib() -> None:
    code = "import sys, smoothlab.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_names_the_lab_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.axes", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)
    message = "smoothlab.plots needs matplotlib, which the `lab` extra installs: pip install 'smoothlab[lab]'"
    with pytest.raises(ImportError, match=re.escape(message)):
        reliability_diagram(*_data())
