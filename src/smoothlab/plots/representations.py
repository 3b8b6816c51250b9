"""Müller et al.'s three-class projection of penultimate-layer activations.

Reference: R. Müller, S. Kornblith, G. Hinton, "When Does Label Smoothing Help?", NeurIPS 2019,
Section 2 and Figure 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch  # noqa: F401 (the doctests' namespace)
from torch import Tensor

from smoothlab._checks import check_class_indices, check_tensor, fail
from smoothlab.analysis import template_projection
from smoothlab.plots._base import COLUMN_WIDTH, finish_axes, new_axes, paper_style

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["penultimate_projection"]


def penultimate_projection(
    features: Tensor,
    target: Tensor,
    weight: Tensor,
    classes: tuple[int, int, int] = (0, 1, 2),
    *,
    class_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    r"""Examples of three classes in the plane through their templates (Müller et al., Fig. 1).

    The examples of classes :math:`(a, b, c)` are projected onto the orthonormal basis of the
    plane through the templates :math:`w_a, w_b, w_c` (rows of the last layer's weight) by
    :func:`smoothlab.analysis.template_projection`; each class is a colour and its template a
    black-edged star. Cross-entropy gives broad clusters, label smoothing tight ones at equal
    distances from each other.

    Args:
        features: penultimate activations ``(N, D)`` (e.g. from a forward hook).
        target: ``(N,)`` class indices; examples of other classes are left out.
        weight: the last layer's ``(K, D)`` weight.
        classes: the three classes to show.
        class_names: the legend's names for the three classes; default ``class <k>``.
        ax: draw into these axes; default a new figure.
        title: the panel's title.

    >>> w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    >>> h = torch.tensor([[2.0, 0.1, 0.0], [0.0, 2.0, 0.2], [0.1, 0.0, 2.0], [1.0, 1.0, 1.0]])
    >>> fig = penultimate_projection(h, torch.tensor([0, 1, 2, 3]), w)
    >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    ['class 0', 'class 1', 'class 2']
    """
    coordinates = template_projection(features, weight, classes)
    check_tensor("target", target)
    if tuple(target.shape) != (features.shape[0],):
        raise fail("target", f"of shape ({features.shape[0]},)", f"!shape {tuple(target.shape)}")
    check_class_indices("target", target, weight.shape[0])
    if class_names is not None and (isinstance(class_names, str) or len(class_names) != 3):
        raise fail("class_names", "three names", class_names)
    names = list(class_names) if class_names is not None else [f"class {k}" for k in classes]
    templates = template_projection(weight[list(classes)], weight, classes)
    with paper_style():
        figure, axes = new_axes(ax, COLUMN_WIDTH, COLUMN_WIDTH)
        for i, (k, name) in enumerate(zip(classes, names, strict=True)):
            points = coordinates[target == k].detach().cpu()
            axes.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5, color=f"C{i}", lw=0,
                         label=name, rasterized=len(points) > 2000)  # fmt: skip
        spots = templates.detach().cpu()
        axes.scatter(spots[:, 0], spots[:, 1], marker="*", s=90, c=["C0", "C1", "C2"],
                     edgecolors="black", linewidths=0.6, zorder=3)  # fmt: skip
        axes.set_aspect("equal", adjustable="datalim")
        legend = axes.legend(loc="best", markerscale=3)
        for handle in legend.legend_handles:
            if handle is not None:
                handle.set_alpha(1.0)
        finish_axes(axes, title=title, xlabel="plane axis 1", ylabel="plane axis 2")
    return figure
