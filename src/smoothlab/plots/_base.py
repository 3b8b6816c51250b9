"""What every figure shares: the matplotlib import, a paper style, new axes, and saving.

matplotlib is imported inside functions only, so that ``import smoothlab.plots`` works without it
and only drawing needs the ``lab`` extra. Figures are built from :class:`matplotlib.figure.Figure`
directly, never through ``pyplot``: no global figure list to leak, no GUI backend to pick.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from smoothlab._checks import check_int, fail

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "COLUMN_WIDTH",
    "FONT_SIZE",
    "finish_axes",
    "new_axes",
    "paper_style",
    "require",
    "save_figure",
    "series_style",
]

#: Width of one column of a two-column paper, in inches; figures are sized from it.
COLUMN_WIDTH = 3.4
#: Base font size in points: legible at 100 % in a column-wide figure.
FONT_SIZE = 8.0

_STYLE: dict[str, Any] = {
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE + 1,
    "axes.labelsize": FONT_SIZE,
    "legend.fontsize": FONT_SIZE - 1,
    "xtick.labelsize": FONT_SIZE - 1,
    "ytick.labelsize": FONT_SIZE - 1,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 4.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "svg.fonttype": "none",  # SVG text stays text: editable and searchable in a paper's figure
}


def require(module: str) -> ModuleType:
    """Import ``module`` (a part of matplotlib), or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            "smoothlab.plots needs matplotlib, which the `lab` extra installs: "
            "pip install 'smoothlab[lab]'"
        ) from error


#: Markers and line styles of the rounds of ten series: round ``k`` uses ``_MARKERS[k]`` and
#: ``_LINES[k % 4]``, so no two of the first 80 series share colour, marker and line style.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINES = ("-", "--", ":", "-.")


def series_style(i: int) -> dict[str, Any]:
    """Matplotlib keywords that set series ``i`` apart from series ``0 .. i - 1``.

    Colour ``C{i mod 10}`` (matplotlib's ten-colour cycle); the first ten series are circles on
    solid lines, and each further round of ten changes the marker and the line style, so that
    an eleventh method is not drawn exactly like the first (the colour cycle alone repeats).

    >>> series_style(0)
    {'color': 'C0', 'marker': 'o', 'linestyle': '-'}
    >>> series_style(10)
    {'color': 'C0', 'marker': 's', 'linestyle': '--'}
    """
    index = check_int("i", i, low=0)
    rounds = index // 10
    return {
        "color": f"C{index % 10}",
        "marker": _MARKERS[rounds % len(_MARKERS)],
        "linestyle": _LINES[rounds % len(_LINES)],
    }


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Apply the house figure style (small fonts, thin spines) to what is drawn inside."""
    matplotlib = require("matplotlib")
    with matplotlib.rc_context(_STYLE):
        yield


def new_axes(ax: object, width: float, height: float) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new constrained-layout figure of ``width x height`` inches."""
    axes_module = require("matplotlib.axes")
    if ax is not None:
        if not isinstance(ax, axes_module.Axes):
            raise fail("ax", "a matplotlib Axes or None", f"!{type(ax).__name__}", kind=TypeError)
        # A SubFigure's `figure` is its root Figure (and a Figure's is itself), in every version.
        figure: Figure = getattr(ax.figure, "figure", ax.figure)
        return figure, ax
    figure = require("matplotlib.figure").Figure(figsize=(width, height), layout="constrained")
    return figure, figure.add_subplot()


def finish_axes(ax: Axes, *, title: str | None, xlabel: str, ylabel: str) -> None:
    """Labels, title and tick sizes (ticks are made at draw time, outside the style context)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.tick_params(labelsize=FONT_SIZE - 1, width=0.6)


def save_figure(figure: Figure, path_stem: str | Path, *, dpi: int = 300) -> tuple[Path, Path]:
    """Write ``figure`` as ``<path_stem>.svg`` and ``<path_stem>.png``; return both paths.

    The SVG keeps text as text (for editing in a paper); the PNG is rasterised at ``dpi``
    (300 by default, print resolution). Missing parent folders are created.

    Args:
        figure: a matplotlib Figure (every function of :mod:`smoothlab.plots` returns one).
        path_stem: the path without a suffix, e.g. ``"report/reliability"``.
        dpi: PNG resolution, at least 50.
    """
    if not isinstance(figure, require("matplotlib.figure").Figure):
        raise fail("figure", "a matplotlib Figure", f"!{type(figure).__name__}", kind=TypeError)
    if not isinstance(path_stem, str | Path):
        raise fail("path_stem", "a str or Path", f"!{type(path_stem).__name__}", kind=TypeError)
    stem = Path(path_stem)
    if stem.suffix.lower() in (".svg", ".png", ".pdf", ".jpg", ".jpeg"):
        raise fail("path_stem", "a path without an image suffix (both are written)", str(stem))
    resolution = check_int("dpi", dpi, low=50)
    stem.parent.mkdir(parents=True, exist_ok=True)
    svg, png = stem.with_name(stem.name + ".svg"), stem.with_name(stem.name + ".png")
    with paper_style():
        figure.savefig(svg, format="svg")
        figure.savefig(png, format="png", dpi=resolution)
    return svg, png
