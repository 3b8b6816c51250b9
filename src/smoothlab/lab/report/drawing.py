"""What every report figure shares: matplotlib (Agg backend) imported on first use, the
rendering of a figure as PNG (200 dpi) and SVG (text kept as text, no dates, fixed ids: the
same runs give the same bytes), and a legend below the panels.

The figure functions (:mod:`~.plots`, :mod:`~.reliability`) call :func:`render` through this
module, so a test can replace it to keep the figures."""

from __future__ import annotations

import io
from typing import Any, NamedTuple

__all__ = ["Rendered", "legend_below", "pyplot", "render", "ticker"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ticker() -> Any:
    """``matplotlib.ticker`` (tick locators and formatters)."""
    import matplotlib.ticker

    return matplotlib.ticker


class Rendered(NamedTuple):
    """One figure as PNG and as SVG bytes."""

    png: bytes
    svg: bytes


def render(figure: Any) -> Rendered:
    """``figure`` as PNG (200 dpi) and SVG bytes, the same bytes for the same figure; closes it."""
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
    pyplot().close(figure)
    return Rendered(*out)


def legend_below(figure: Any, handles: list[Any], labels: list[str]) -> None:
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
