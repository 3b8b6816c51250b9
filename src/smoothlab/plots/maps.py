"""Two of the seeds' figures: 000's barycentric loss maps and 004's label noise curve (Fig. 2).

The numbers come from :mod:`smoothlab.analysis` (:func:`~smoothlab.analysis.simplex_loss_grid`,
:func:`~smoothlab.analysis.logistic_noise_curve`), where they are tested; this module only draws.

References: J. Lienen, E. Hüllermeier, "From Label Smoothing to Label Relaxation", AAAI 2021,
supplement Fig. 1. S.-H. Yang, Z. Liu, G. M. Marconi, M. E. Khan, "Variational Learning Induces
Adaptive Label Smoothing", 2025, Fig. 2.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from smoothlab._checks import check_real
from smoothlab.analysis import SimplexLossName, logistic_noise_curve, simplex_loss_grid
from smoothlab.plots._base import COLUMN_WIDTH, finish_axes, new_axes, paper_style

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["label_noise_vs_mean_logit", "simplex_loss_map"]

_HEIGHT = math.sqrt(3) / 2


def _corners(true_class: int) -> Tensor:
    """Cartesian corners per class: the true class lower right (as in the paper), then the
    other two lower left and on top, in class order."""
    others = [k for k in range(3) if k != true_class]
    corners = torch.zeros(3, 2, dtype=torch.float64)
    corners[true_class] = torch.tensor([1.0, 0.0])
    corners[others[1]] = torch.tensor([0.5, _HEIGHT])
    return corners


def simplex_loss_map(
    loss: SimplexLossName = "ls",
    *,
    rate: float = 0.25,
    true_class: int = 0,
    resolution: int = 90,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    r"""The loss of every three-class prediction, drawn on the probability simplex (000, Fig. 1).

    Colours are :func:`smoothlab.analysis.simplex_loss_grid` (the loss for the one-hot label of
    ``true_class``, whose corner is the lower right one). Label smoothing (``"ls"``) has one
    minimum, the smoothed target :math:`(1 - r) e_y + r/3`, drawn as a black point; label
    relaxation (``"relaxation"``) is zero on the whole credal set
    :math:`p_y \ge 1 - \alpha`, whose border is drawn dashed.

    Args:
        loss, rate, true_class, resolution: as in :func:`smoothlab.analysis.simplex_loss_grid`.
        ax: draw into these axes; default a new figure.
        title: the panel's title; default the loss and its rate.

    >>> fig = simplex_loss_map("relaxation", rate=0.25, resolution=20)
    >>> fig.axes[0].get_title(), len(fig.axes)  # the map and its colour bar
    ('label relaxation, alpha = 0.25', 2)
    """
    grid = simplex_loss_grid(loss, rate=rate, true_class=true_class, resolution=resolution)
    corners = _corners(grid.true_class)
    xy = grid.points @ corners
    with paper_style():
        figure, axes = new_axes(ax, COLUMN_WIDTH, COLUMN_WIDTH * 0.8)
        filled = axes.tricontourf(xy[:, 0].numpy(), xy[:, 1].numpy(), grid.loss.numpy(),
                                  levels=24, cmap="viridis")  # fmt: skip
        figure.colorbar(filled, ax=axes, label="loss", shrink=0.8)
        outline = corners[[0, 1, 2, 0]]
        axes.plot(outline[:, 0], outline[:, 1], color="0.2", lw=0.8)
        y = grid.true_class
        if loss == "ls":
            target = torch.full((3,), rate / 3, dtype=torch.float64)
            target[y] += 1 - rate
            point = target @ corners
            axes.plot([point[0]], [point[1]], "o", color="black", label="smoothed target")
        else:
            # The border p_y = 1 - alpha joins the two edges that leave the true class's corner;
            # the set is hatched because one colour level cannot single out the zero loss.
            ends = [(1 - rate) * corners[y] + rate * corners[k] for k in range(3) if k != y]
            border = torch.stack(ends)
            axes.plot(border[:, 0], border[:, 1], "--", color="black")
            region = torch.stack([corners[y], *ends])
            axes.fill(region[:, 0], region[:, 1], facecolor="none", edgecolor="white", hatch="...",
                      lw=0, label=r"credal set $p_y \geq 1 - \alpha$ (loss 0)")  # fmt: skip
        for k in range(3):
            name = f"class {k}" + (" (true)" if k == y else "")
            x, z = float(corners[k, 0]), float(corners[k, 1])
            axes.annotate(name, (x, z), xytext=(0, -9 if z == 0 else 4), textcoords="offset points",
                          ha="center")  # fmt: skip
        axes.set_aspect("equal")
        axes.set_axis_off()
        # Below the triangle, where no corner label or contour is.
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06))
        name = "label smoothing, r" if loss == "ls" else "label relaxation, alpha"
        axes.set_title(title if title is not None else f"{name} = {rate:g}")
    return figure


def label_noise_vs_mean_logit(
    *,
    logit_std: float = 1.0,
    limit: float = 6.0,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    r"""IVON's label noise magnitude against the mean logit at a fixed logit spread (004, Fig. 2).

    Draws :func:`smoothlab.analysis.logistic_noise_curve` over :math:`\mu \in [-L, L]`: zero at
    the decision boundary, two peaks near it, flat far from it.

    Args:
        logit_std: :math:`s > 0` (the paper's figure: 1).
        limit: :math:`L > 0`, the half-width of the x axis.
        ax: draw into these axes; default a new figure.
        title: the panel's title.

    >>> fig = label_noise_vs_mean_logit(limit=4.0)
    >>> xs = fig.axes[0].get_lines()[0].get_xdata()
    >>> float(xs.min()), float(xs.max())
    (-4.0, 4.0)
    """
    s = check_real("logit_std", logit_std, low=0.0, low_open=True)
    half = check_real("limit", limit, low=0.0, low_open=True)
    mu = torch.linspace(-half, half, 801, dtype=torch.float64)
    magnitude = logistic_noise_curve(mu, logit_std=s)
    with paper_style():
        figure, axes = new_axes(ax, COLUMN_WIDTH, COLUMN_WIDTH * 0.6)
        axes.plot(mu.numpy(), magnitude.numpy(), color="C0", label=f"logit std {s:g}")
        axes.axvline(0.0, color="0.6", lw=0.6, ls=":")
        axes.set_xlim(-half, half)
        axes.set_ylim(0, None)
        axes.legend(loc="upper right")
        finish_axes(axes, title=title, xlabel=r"mean logit $\mu$",
                    ylabel=r"label noise $|\epsilon|$")  # fmt: skip
    return figure
