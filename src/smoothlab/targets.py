"""Target transforms: every smoothing method is ``(1 - r) * onehot + r * prior`` (house rule 2).

Uniform smoothing (Szegedy et al., 2016), prior smoothing, teacher smoothing ("LSR-pre" of Xu et
al.'s two-stage smoothing) and negative / generalized smoothing (Wei et al., ICML 2022) differ only
in the prior and the sign of ``r``, so they share this one function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import (
    check_bool,
    check_class_indices,
    check_distribution,
    check_int,
    check_real,
    check_tensor,
    fail,
)

__all__ = ["check_exclusive_mass", "check_prior", "smooth_targets"]


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
        check_distribution("prior", tensor, dim=0)
        return tensor.view(1, num_classes, *([1] * (len(shape) - 2)))
    if tuple(tensor.shape) != tuple(shape):
        raise fail(
            "prior", f"of shape ({num_classes},) or {shape}", f"!shape {tuple(tensor.shape)}"
        )
    check_distribution("prior", tensor, dim=1)
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
        onehot = target.to(dtype)
    else:
        check_class_indices("target", target, num_classes)
        onehot = torch.nn.functional.one_hot(target.long(), num_classes).to(dtype)
        onehot = onehot.movedim(-1, 1) if onehot.dim() > 2 else onehot
    shape = tuple(onehot.shape)
    if prior is None:
        pi = torch.full((1, num_classes) + (1,) * (len(shape) - 2), 1.0 / num_classes, dtype=dtype)
        pi = pi.to(onehot.device)
    else:
        pi = check_prior(prior, num_classes, shape).to(dtype)
    if exclusive:
        pi = _exclusive_prior(pi.expand(shape), onehot)
    return (1.0 - rate) * onehot + rate * pi


def check_exclusive_mass(rest: Tensor) -> None:
    """Check the prior's mass outside the true class, per position, before dividing by it.

    Exclusive smoothing spreads ``r`` as ``pi_j / rest``; a row with all its mass on the true
    class has nowhere to put it. :func:`smooth_targets` and the losses share this message.
    """
    if bool((rest <= 0).any()):
        raise fail(
            "prior",
            "positive somewhere outside the true class when exclusive=True",
            "!a row with all its mass on the true class",
        )


def _exclusive_prior(pi: Tensor, onehot: Tensor) -> Tensor:
    """Renormalise ``pi`` over the classes other than the true one: ``pi_j / (1 - pi_y)``."""
    others = pi * (1 - onehot)
    mass = others.sum(dim=1, keepdim=True)
    check_exclusive_mass(mass)
    return others / mass
