r"""What label smoothing does to logits and penultimate features (Müller et al., 2019).

Label smoothing pulls every wrong logit of an example to the same value, a fixed gap below the
true one (:func:`smoothlab.theory.optimal_logit_gap` at the optimum), which makes the
penultimate-layer clusters of each class tight and equidistant from the other classes'
templates. :func:`logit_gaps` and :func:`model_logit_gaps` measure the gap of trained models;
:func:`template_projection` gives the coordinates of Müller et al.'s three-class plot
(:func:`smoothlab.plots.penultimate_projection` draws it).

Reference: R. Müller, S. Kornblith, G. Hinton, "When Does Label Smoothing Help?", NeurIPS 2019.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smoothlab._checks import check_class_indices, check_floating, check_int, check_tensor, fail

__all__ = ["logit_gaps", "model_logit_gaps", "template_projection"]


def logit_gaps(logits: Tensor, target: Tensor) -> Tensor:
    r"""Per-example gap between the true logit and the mean of the others.

    .. math:: g_i = z_{i, y_i} - \frac{1}{K - 1} \sum_{j \ne y_i} z_{ij}

    At the minimum of label-smoothed cross-entropy every wrong logit is equal and :math:`g_i`
    is :func:`smoothlab.theory.optimal_logit_gap`; a one-hot trained model's gaps keep growing.

    Args:
        logits: ``(N, K)``, ``K >= 2``.
        target: ``(N,)`` class indices.

    Shape:
        - returns ``(N,)`` in the dtype of ``logits``.

    >>> logit_gaps(torch.tensor([[3.0, 1.0, 0.0], [0.5, 0.5, 2.0]]), torch.tensor([0, 1]))
    tensor([ 2.5000, -0.7500])
    """
    check_floating("logits", logits)
    check_tensor("target", target)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise fail("logits", "of shape (N, K) with K >= 2", logits)
    if tuple(target.shape) != (logits.shape[0],):
        raise fail("target", f"of shape ({logits.shape[0]},)", f"!shape {tuple(target.shape)}")
    k = logits.shape[1]
    check_class_indices("target", target, k)
    true = logits.gather(1, target.long().unsqueeze(1)).squeeze(1)
    return true - (logits.sum(1) - true) / (k - 1)


@torch.no_grad()
def model_logit_gaps(
    model: nn.Module, inputs: Tensor, target: Tensor, *, batch_size: int = 1024
) -> Tensor:
    """:func:`logit_gaps` of ``model``'s logits on a data set, in batches, without gradients.

    Put the model in ``eval()`` mode first if it has dropout or batch norm.

    Args:
        model: maps ``(B, ...)`` inputs to ``(B, K)`` logits.
        inputs: ``(N, ...)``.
        target: ``(N,)`` class indices.
        batch_size: examples per forward pass.

    Shape:
        - returns ``(N,)``.

    >>> model = nn.Linear(2, 3, bias=False)
    >>> _ = model.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    >>> model_logit_gaps(model, torch.tensor([[4.0, 2.0], [0.0, 2.0]]), torch.tensor([0, 1]))
    tensor([3., 2.])
    """
    check_tensor("inputs", inputs)
    size = check_int("batch_size", batch_size, low=1)
    if inputs.dim() == 0:
        raise fail("inputs", "a batch of shape (N, ...)", inputs)
    logits = torch.cat([model(inputs[i : i + size]) for i in range(0, inputs.shape[0], size)])
    return logit_gaps(logits, target)


def template_projection(features: Tensor, weight: Tensor, classes: tuple[int, int, int]) -> Tensor:
    r"""Coordinates of features in the plane through three class templates (Müller et al.).

    The templates are the rows :math:`w_a, w_b, w_c` of the last layer's weight (logit
    :math:`z_k = w_k^\top h + b_k`). With :math:`Q` an orthonormal basis of the plane's
    directions :math:`(w_b - w_a, w_c - w_a)` (Gram-Schmidt, so the first axis points from
    :math:`w_a` to :math:`w_b`) and :math:`c` the templates' centroid,

    .. math:: u_i = Q^\top (h_i - c) \in \mathbb R^2 .

    Distances inside the plane are kept, the component orthogonal to it is dropped: the
    templates themselves land on a triangle with the same side lengths.

    Args:
        features: penultimate activations :math:`h`, ``(N, D)``.
        weight: the last layer's ``(K, D)`` weight (``nn.Linear.weight``).
        classes: three distinct class indices :math:`(a, b, c)`.

    Shape:
        - returns ``(N, 2)`` float coordinates.

    >>> w = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    >>> template_projection(torch.tensor([[2.0, 0.0, 5.0]]), w, (0, 1, 2))
    tensor([[ 1.3333, -1.0000]])
    """
    check_floating("features", features)
    check_floating("weight", weight)
    if weight.dim() != 2:
        raise fail("weight", "of shape (K, D)", weight)
    if features.dim() != 2 or features.shape[1] != weight.shape[1]:
        raise fail("features", f"of shape (N, {weight.shape[1]})", features)
    picked = _check_classes(classes, weight.shape[0])
    templates = weight[list(picked)].to(torch.promote_types(features.dtype, weight.dtype))
    directions = torch.stack([templates[1] - templates[0], templates[2] - templates[0]], 1)
    basis, upper = torch.linalg.qr(directions)
    if bool((upper.diagonal().abs() <= 1e-7 * upper.abs().max().clamp_min(1e-30)).any()):
        raise fail(
            "weight", f"rows {picked} that span a plane (not on one line)", "!collinear rows"
        )
    # QR's sign convention is arbitrary; fixing R's diagonal positive makes the first axis point
    # from w_a to w_b and w_c lie in the upper half.
    basis = basis * upper.diagonal().sign()
    coordinates: Tensor = (features.to(basis.dtype) - templates.mean(0)) @ basis
    return coordinates


def _check_classes(classes: object, num_classes: int) -> tuple[int, int, int]:
    """Return ``classes`` if it is three distinct indices in ``[0, num_classes)``."""
    if not isinstance(classes, tuple | list) or len(classes) != 3:
        raise fail("classes", "a tuple of three class indices", classes, kind=TypeError)
    picked = tuple(check_int("classes", c, low=0) for c in classes)
    if max(picked) >= num_classes or len(set(picked)) != 3:
        raise fail("classes", f"three distinct indices in [0, {num_classes - 1}]", classes)
    return picked[0], picked[1], picked[2]
