"""Target transforms: every smoothing method is ``(1 - r) * onehot + r * prior`` (house rule 2).

Uniform smoothing (Szegedy et al., 2016), prior smoothing, teacher smoothing ("LSR-pre" of Xu et
al.'s two-stage smoothing) and negative / generalized smoothing (Wei et al., ICML 2022) differ only
in the prior and the sign of ``r``, so they share this one function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import (
    assert_on_device,
    check_bool,
    check_class_indices,
    check_distribution,
    check_int,
    check_real,
    check_tensor,
    fail,
    host_reads,
)

__all__ = [
    "check_exclusive_mass",
    "check_prior",
    "exclusive_prior",
    "exclusive_split",
    "mix_targets",
    "smooth_targets",
]


def check_prior(prior: object, num_classes: int, shape: tuple[int, ...]) -> Tensor:
    """Validate a prior: ``(C,)`` for a class prior or ``shape`` ``(N, C, ...)`` per example.

    Returns the prior broadcastable against ``(N, C, ...)`` tensors: a ``(C,)`` prior comes back
    viewed as ``(1, C, 1, ...)``.
    """
    tensor = check_tensor("prior", prior)
    if not tensor.is_floating_point():
        raise fail("prior", "a floating-point tensor", tensor, kind=TypeError)
    if tensor.dim() == 1:
        if tensor.shape[0] != num_classes:
            raise fail(
                "prior", f"of shape ({num_classes},) or {shape}", f"!shape {tuple(tensor.shape)}"
            )
        check_distribution("prior", tensor, dim=0, on_device=True)
        return tensor.view(1, num_classes, *([1] * (len(shape) - 2)))
    if tuple(tensor.shape) != tuple(shape):
        raise fail(
            "prior", f"of shape ({num_classes},) or {shape}", f"!shape {tuple(tensor.shape)}"
        )
    check_distribution("prior", tensor, dim=1, on_device=True)
    return tensor


def smooth_targets(
    target: Tensor,
    num_classes: int,
    smoothing: float,
    *,
    prior: Tensor | None = None,
    exclusive: bool = False,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Smoothed target distributions ``(1 - r) * onehot(y) + r * prior``.

    .. math::
        q_{ij} = (1 - r)\,[j = y_i] + r\,\pi_{ij}

    where :math:`\pi` is the prior: uniform :math:`1/K` when ``prior`` is ``None`` (PyTorch's
    convention: the true class also receives :math:`r/K`), a class prior of shape ``(C,)``, or a
    per-example distribution of shape ``(N, C, ...)`` such as a teacher's predictions ("LSR-pre",
    Xu et al., 2020). ``exclusive=True`` spreads :math:`r` over the other classes only,
    :math:`\pi_{ij} = p_j / (1 - p_{y_i})` for :math:`j \ne y_i` (uniform: :math:`r/(K-1)` each).
    A negative ``r`` gives generalized (negative) label smoothing (Wei et al., ICML 2022): the
    true class gets more than 1 and the others negative mass; rows still sum to 1.

    Args:
        target: class indices of shape ``(N, ...)`` (any integer dtype), or probabilities of shape
            ``(N, C, ...)`` that are smoothed the same way (``exclusive`` needs class indices).
        num_classes: ``K >= 2``.
        smoothing: ``r <= 1``; ``r = 0`` returns the one-hot (or the given) distribution.
        prior: ``None``, ``(C,)`` or ``(N, C, ...)``; each must sum to 1 over classes.
        exclusive: spread ``r`` over the ``K - 1`` wrong classes only.
        dtype: floating dtype of the result; by default the prior's (or probability target's)
            dtype, else the default float dtype.

    Returns:
        Tensor of shape ``(N, C, ...)``.

    >>> smooth_targets(torch.tensor([0, 2]), 3, 0.3)
    tensor([[0.8000, 0.1000, 0.1000],
            [0.1000, 0.1000, 0.8000]])
    >>> smooth_targets(torch.tensor([0]), 3, 0.3, exclusive=True)
    tensor([[0.7000, 0.1500, 0.1500]])
    >>> smooth_targets(torch.tensor([1]), 2, -0.5)  # negative smoothing
    tensor([[-0.2500,  1.2500]])
    """
    check_int("num_classes", num_classes, low=2)
    rate = check_real("smoothing", smoothing, high=1.0)
    check_bool("exclusive", exclusive)
    check_tensor("target", target)
    if dtype is None and isinstance(prior, Tensor) and prior.is_floating_point():
        dtype = prior.dtype
    if dtype is None and target.is_floating_point():
        dtype = target.dtype
    dtype = dtype or torch.get_default_dtype()
    if target.is_floating_point():
        if exclusive:
            raise fail("target", "class indices when exclusive=True", target, kind=TypeError)
        if target.dim() < 2 or target.shape[1] != num_classes:
            raise fail("target", f"of shape (N, {num_classes}, ...)", target)
    elif host_reads(target):
        check_class_indices("target", target, num_classes)
    else:
        check_class_indices("target", target[:0], num_classes)  # its dtype (a read of nothing)
        inside = (target >= 0) & (target < num_classes)
        assert_on_device(inside, "target", f"class indices in [0, {num_classes - 1}]")
    index = not target.is_floating_point()
    if index and target.dim() == 0:  # one example: a (1, C) row, as for a (1,) target
        target = target.unsqueeze(0)
    shape = (target.shape[0], num_classes, *target.shape[1:]) if index else tuple(target.shape)
    if prior is None:
        pi = torch.full((1, num_classes) + (1,) * (len(shape) - 2), 1.0 / num_classes, dtype=dtype)
        pi = pi.to(target.device)
    else:
        pi = check_prior(prior, num_classes, shape).to(dtype)
    return mix_targets(target if index else target.to(dtype), rate, pi, exclusive=exclusive)


def mix_targets(
    target: Tensor,
    smoothing: float,
    prior: Tensor,
    *,
    exclusive: bool = False,
    valid: Tensor | None = None,
) -> Tensor:
    r"""The arithmetic of :func:`smooth_targets` on checked inputs: :math:`(1 - r) t + r \pi`.

    ``target``: ``(N, ...)`` int64 class indices (``t`` their one-hot rows, in ``prior``'s
    dtype) or ``(N, C, ...)`` probabilities; ``prior``: broadcastable to ``(N, C, ...)``;
    ``exclusive`` (class indices only) renormalises the prior off the true class
    (:func:`exclusive_prior`); ``valid``: positions whose prior is checked (``None``: all). The
    losses' composition (``fused=False``) is the soft-target cross-entropy of these targets.

    >>> mix_targets(torch.tensor([1]), 0.3, torch.full((1, 3), 1 / 3))
    tensor([[0.1000, 0.8000, 0.1000]])
    """
    if target.is_floating_point():
        return (1.0 - smoothing) * target + smoothing * prior
    shape = (target.shape[0], prior.shape[1], *target.shape[1:])
    index = target.long().unsqueeze(1)
    if exclusive:
        prior = exclusive_prior(prior.expand(shape), index.squeeze(1), valid)
    # r pi everywhere, then 1 - r added at y: (1 - r) onehot + r pi without the one-hot tensor
    q = prior.expand(shape) * smoothing
    return q.scatter_add_(1, index, torch.full_like(index, 1.0 - smoothing, dtype=q.dtype))


def exclusive_split(
    prior: Tensor, index: Tensor, valid: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``prior[n, y_n, ...]`` and the prior's mass on the other classes, checked positive.

    The one place where exclusive smoothing's divisor is computed (the composition and the fused
    kernels' coefficients both call it). ``prior``: ``(N, C, ...)`` (or broadcastable to it);
    ``index``: ``(N, ...)`` int64 class indices; ``valid``: ``(N, ...)`` bool or ``None``,
    positions outside it get a mass of 1 and are not checked. The row sums stay in the prior's
    dtype (a float64 sum of float32 rows costs 6x more); their difference with ``pi_y`` is exact
    in float64.

    >>> exclusive_split(torch.tensor([[0.5, 0.25, 0.25]]), torch.tensor([0]))
    (tensor([0.5000]), tensor([0.5000]))
    """
    shape = (index.shape[0], prior.shape[1], *index.shape[1:])
    pi_y = prior.expand(shape).gather(1, index.unsqueeze(1)).squeeze(1)
    rest = (prior.sum(1).double() - pi_y.double()).to(pi_y.dtype)
    if valid is not None:
        rest = rest.masked_fill(~valid, 1.0)
    check_exclusive_mass(rest)
    return pi_y, rest


def exclusive_prior(prior: Tensor, index: Tensor, valid: Tensor | None = None) -> Tensor:
    """The prior renormalised over the classes other than ``y``: ``pi_j / (1 - pi_y)``, 0 at ``y``.

    (``1 - pi_y`` is the mass of the other classes, summed: exact for a prior that does not sum
    to exactly 1; see :func:`exclusive_split`.)

    >>> exclusive_prior(torch.tensor([[0.5, 0.25, 0.25]]), torch.tensor([0]))
    tensor([[0.0000, 0.5000, 0.5000]])
    """
    _, rest = exclusive_split(prior, index, valid)
    others = prior.scatter(1, index.unsqueeze(1), 0.0)
    return others / rest.unsqueeze(1)


def check_exclusive_mass(rest: Tensor) -> None:
    """Check the prior's mass outside the true class, per position, before dividing by it.

    Exclusive smoothing spreads ``r`` as ``pi_j / rest``; a row with all its mass on the true
    class has nowhere to put it. :func:`smooth_targets` and the losses share this message.
    """
    expected = "positive somewhere outside the true class when exclusive=True"
    if not host_reads(rest):
        assert_on_device(rest > 0, "prior", expected)
    elif bool((rest <= 0).any()):
        raise fail("prior", expected, "!a row with all its mass on the true class")
