r"""Losses over the three-class probability simplex: the barycentric maps of Lienen & Hüllermeier.

Their Fig. 1 (supplement A.3) colours every prediction :math:`p` of a three-class problem by its
loss for a fixed true class: label smoothing has one best prediction, the smoothed target
:math:`q = (1 - r) e_y + r/K`, while label relaxation is zero on the whole credal set
:math:`Q^\alpha = \{p : p_y \ge 1 - \alpha\}`. :func:`simplex_loss_grid` computes such a map
with smoothlab's own losses; :func:`smoothlab.plots.simplex_loss_map` draws it.

Reference: J. Lienen, E. Hüllermeier, "From Label Smoothing to Label Relaxation", AAAI 2021.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from smoothlab._checks import check_int, check_real, fail
from smoothlab.losses import label_relaxation_loss, label_smoothing_cross_entropy

__all__ = ["SimplexLoss", "SimplexLossName", "simplex_grid", "simplex_loss_grid"]

SimplexLossName = Literal["ls", "relaxation"]


@dataclass(frozen=True, eq=False)
class SimplexLoss:
    """A loss evaluated on a lattice of the three-class simplex (float64 tensors).

    Attributes:
        points: ``(M, 3)`` predictions :math:`p`, every entry positive, rows summing to 1.
        loss: ``(M,)`` the loss of each prediction for the true class ``true_class``.
        true_class: the class whose one-hot label the loss is computed against.
    """

    points: Tensor
    loss: Tensor
    true_class: int


def simplex_grid(resolution: int) -> Tensor:
    r"""The interior lattice :math:`\{(i, j, k)/n : i, j, k \ge 1,\ i + j + k = n\}` of the simplex.

    Boundary points are left out because both losses are infinite where a class the target
    needs has probability 0. There are :math:`(n - 1)(n - 2)/2` points.

    Args:
        resolution: :math:`n \ge 3`.

    Shape:
        - returns ``(M, 3)`` float64.

    >>> simplex_grid(4)
    tensor([[0.2500, 0.2500, 0.5000],
            [0.2500, 0.5000, 0.2500],
            [0.5000, 0.2500, 0.2500]], dtype=torch.float64)
    """
    n = check_int("resolution", resolution, low=3)
    i, j = torch.meshgrid(torch.arange(1, n - 1), torch.arange(1, n - 1), indexing="ij")
    keep = (i + j) <= n - 1
    counts = torch.stack([i[keep], j[keep], n - i[keep] - j[keep]], 1)
    return counts.double() / n


def simplex_loss_grid(
    loss: SimplexLossName,
    *,
    rate: float = 0.25,
    true_class: int = 0,
    resolution: int = 60,
) -> SimplexLoss:
    r"""Label smoothing or label relaxation loss at every point of :func:`simplex_grid`.

    For a prediction :math:`p` and the one-hot label of ``true_class`` :math:`y`:

    - ``"ls"``: :math:`-\sum_k q_k \log p_k` with :math:`q = (1 - r) e_y + r/3`
      (:func:`smoothlab.label_smoothing_cross_entropy`); minimal, equal to the entropy of
      :math:`q`, at :math:`p = q` only.
    - ``"relaxation"``: :func:`smoothlab.label_relaxation_loss` with :math:`\alpha = r`, that is
      :math:`(1-\alpha)\log\frac{1-\alpha}{p_y} + \alpha\log\frac{\alpha}{1-p_y}` outside
      :math:`Q^\alpha` and 0 anywhere inside it (:math:`p_y \ge 1 - \alpha`; on its border up
      to rounding).

    Args:
        loss: ``"ls"`` or ``"relaxation"``.
        rate: the smoothing rate :math:`r` or the relaxation :math:`\alpha`, in ``(0, 1)``
            (the paper's figure uses 0.25 for both).
        true_class: :math:`y \in \{0, 1, 2\}`.
        resolution: lattice resolution :math:`n` of :func:`simplex_grid`.

    >>> out = simplex_loss_grid("ls", rate=0.25, resolution=12)
    >>> out.points[out.loss.argmin()].tolist()  # (1 - r) e_0 + r / 3 = (10, 1, 1) / 12
    [0.8333333333333334, 0.08333333333333333, 0.08333333333333333]
    >>> out = simplex_loss_grid("relaxation", rate=0.25, resolution=12)
    >>> bool(((out.loss < 1e-12) == (out.points[:, 0] >= 0.75)).all())  # rounding at the border
    True
    """
    if loss not in ("ls", "relaxation"):
        raise fail("loss", "one of 'ls', 'relaxation'", loss)
    r = check_real("rate", rate, low=0.0, high=1.0, low_open=True, high_open=True)
    y = check_int("true_class", true_class, low=0)
    if y > 2:
        raise fail("true_class", "a class index in [0, 2]", true_class)
    points = simplex_grid(resolution)
    logits, target = points.log(), torch.full((points.shape[0],), y, dtype=torch.long)
    if loss == "ls":
        values = label_smoothing_cross_entropy(logits, target, r, reduction="none")
    else:
        values = label_relaxation_loss(logits, target, r, reduction="none")
    return SimplexLoss(points, values, y)
