"""004's Fig. 4: the smoothed labels of IVON, label smoothing and online label smoothing.

The matrices come from :func:`smoothlab.analysis.class_smoothed_labels` (tested there); this
module only draws their noise, side by side on one signed logarithmic colour scale, so that the
uniform noise of label smoothing and the class-dependent noise of the adaptive methods read at a
glance.

Reference: S.-H. Yang, Z. Liu, G. M. Marconi, M. E. Khan, "Variational Learning Induces Adaptive
Label Smoothing", 2025, Fig. 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from smoothlab._checks import check_floating, check_real, fail
from smoothlab.plots._base import COLUMN_WIDTH, paper_style, require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["smoothed_label_maps"]


def _check_matrices(matrices: object) -> tuple[list[str], list[Tensor]]:
    if not isinstance(matrices, Mapping) or not matrices:
        raise fail("matrices", "a non-empty mapping of name -> (K, K) tensor", matrices,
                   kind=TypeError)  # fmt: skip
    names: list[str] = []
    values: list[Tensor] = []
    for name, matrix in matrices.items():
        check_floating(f"matrices[{name!r}]", matrix)
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise fail(f"matrices[{name!r}]", "a square (K, K) matrix", matrix)
        if values and matrix.shape != values[0].shape:
            raise fail(f"matrices[{name!r}]", f"of shape {tuple(values[0].shape)} like the first",
                       matrix)  # fmt: skip
        names.append(str(name))
        values.append(matrix.detach().to("cpu", torch.float64))
    return names, values


def smoothed_label_maps(
    matrices: Mapping[str, Tensor],
    *,
    class_names: Sequence[str] | None = None,
    linear_below: float = 1e-3,
    title: str | None = None,
) -> Figure:
    r"""Heat maps of the average label noise :math:`S - I` per class, one panel per method
    (004, Fig. 4).

    Row :math:`c` of each ``(K, K)`` matrix :math:`S` is the label class-:math:`c` examples are
    trained on, on average (:func:`smoothlab.analysis.class_smoothed_labels`). What is drawn is
    the signed noise :math:`S - I`, on one symmetric logarithmic scale shared by all panels
    (linear within ``linear_below`` of 0), because the noise has either sign: smoothing takes
    mass off the diagonal (blue) and puts it elsewhere (red), while IVON's noise is positive on
    the diagonal for confidently classified examples (Eq. 10: :math:`\sigma(f(m))` exceeds its
    posterior mean there). NaN rows (absent classes) stay blank.

    Args:
        matrices: method name -> ``(K, K)`` matrix, drawn left to right in the mapping's order.
        class_names: tick labels (``K`` of them); default the class indices.
        linear_below: the half-width of the linear band around 0, ``> 0``.
        title: the figure's title.

    >>> S = torch.tensor([[0.9, 0.1], [0.05, 0.95]])
    >>> fig = smoothed_label_maps({"ls": S, "ivon": S.flip(0).flip(1)})
    >>> [ax.get_title() for ax in fig.axes[:2]], len(fig.axes)  # two maps and a colour bar
    (['ls', 'ivon'], 3)
    """
    names, values = _check_matrices(matrices)
    band = check_real("linear_below", linear_below, low=0.0, low_open=True)
    k = values[0].shape[0]
    if class_names is not None and len(class_names) != k:
        raise fail("class_names", f"{k} names", len(class_names))
    ticks = [str(c) for c in (class_names if class_names is not None else range(k))]
    noises = [matrix - torch.eye(k, dtype=matrix.dtype) for matrix in values]
    top = max([band * 10] + [float(n.nan_to_num(0.0).abs().max()) for n in noises])
    norm = require("matplotlib.colors").SymLogNorm(linthresh=band, vmin=-top, vmax=top, base=10)
    with paper_style():
        figure: Figure = require("matplotlib.figure").Figure(
            figsize=(COLUMN_WIDTH * 0.75 * len(names) + 0.6, COLUMN_WIDTH * 0.8),
            layout="constrained",
        )
        axes = figure.subplots(1, len(names), squeeze=False)[0]
        for ax, name, noise in zip(axes, names, noises, strict=True):
            image = ax.imshow(noise.numpy(), norm=norm, cmap="RdBu_r")
            ax.set_title(name)
            ax.set_xticks(range(k), ticks, rotation=90)
            ax.set_yticks(range(k), ticks if ax is axes[0] else [])
            ax.set_xlabel("class j")
        axes[0].set_ylabel("true class c")
        figure.colorbar(image, ax=list(axes), label="average label noise $S_{cj} - [c = j]$",
                        shrink=0.8)  # fmt: skip
        if title is not None:
            figure.suptitle(title)
    return figure
