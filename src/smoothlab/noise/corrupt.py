r"""Corrupting labels with a transition matrix, and measuring the noise that results.

A clean label ``y`` becomes ``j`` with probability ``T[y, j]`` (row-stochastic, ``T[clean,
noisy]``). :func:`corrupt_labels` draws each label independently by default; ``exact=True`` instead
flips exactly the expected number of labels of each class, so the realised noise matches the
matrix as closely as whole counts allow (useful for small data sets and for reproducing tables).
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import (
    check_bool,
    check_class_indices,
    check_generator,
    check_int,
    check_tensor,
    fail,
)
from smoothlab.noise.matrices import _check_dtype, check_transition

__all__ = ["corrupt_labels", "estimate_transition", "realised_noise_rate"]


def _check_labels(name: str, labels: object) -> Tensor:
    tensor = check_tensor(name, labels)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise fail(name, "an integer tensor of class indices", tensor, kind=TypeError)
    return tensor


def _check_pair(clean: object, noisy: object) -> tuple[Tensor, Tensor]:
    clean_t, noisy_t = _check_labels("clean", clean), _check_labels("noisy", noisy)
    if clean_t.shape != noisy_t.shape:
        raise fail("noisy", f"of the same shape as `clean` {tuple(clean_t.shape)}", noisy_t)
    return clean_t, noisy_t


def _largest_remainder(quotas: Tensor, total: int) -> Tensor:
    """Whole int64 counts summing to ``total`` closest to float64 ``quotas`` (Hamilton's method).

    Each class gets the floor of its quota; the remaining units go to the largest fractional
    parts, ties to the lower class index. Also the per-class rounding of
    :func:`smoothlab.datasets.split_indices`.
    """
    counts = quotas.floor()
    leftover = total - int(counts.sum())
    order = torch.argsort(quotas - counts, descending=True, stable=True)
    counts[order[:leftover]] += 1
    return counts.long()


def corrupt_labels(
    labels: Tensor,
    transition: Tensor,
    *,
    generator: torch.Generator | None = None,
    exact: bool = False,
) -> Tensor:
    r"""Noisy labels drawn from a class-conditional transition matrix.

    .. math::
        P(\tilde y_n = j \mid y_n = i) = T_{ij}

    By default every label is drawn independently (``torch.multinomial`` on row ``T[y_n]``), so
    the number of class-``i`` labels that become ``j`` is binomial with mean :math:`n_i T_{ij}`.
    With ``exact=True`` that number is instead exactly :math:`n_i T_{ij}` rounded by the largest
    remainder method (floors first, the spare units to the largest fractional parts, ties to the
    lower class index), and a random permutation from ``generator`` chooses which samples of class
    ``i`` receive which noisy label. Classes are processed in index order, so the same generator
    state gives the same labels.

    Args:
        labels: clean class indices, any shape, integer dtype, values in ``[0, K)``.
        transition: row-stochastic ``(K, K)`` matrix (see :func:`check_transition`).
        generator: source of randomness (``None``: PyTorch's global generator).
        exact: flip exactly the expected number of labels per class.

    Returns:
        Noisy labels with the shape, dtype and device of ``labels``.

    >>> from smoothlab.noise import pairflip
    >>> clean = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    >>> seed = torch.Generator().manual_seed(0)
    >>> noisy = corrupt_labels(clean, pairflip(2, 0.4), generator=seed, exact=True)
    >>> realised_noise_rate(clean, noisy)  # exactly 2 of 5 in each class
    0.4
    >>> noisy = corrupt_labels(torch.zeros(10000, dtype=torch.long), pairflip(2, 0.4),
    ...                        generator=torch.Generator().manual_seed(0))
    >>> float((noisy == 1).double().mean())  # binomial: about 0.4
    0.4049
    """
    clean = _check_labels("labels", labels)
    matrix = check_transition(transition)
    num_classes = matrix.shape[0]
    check_class_indices("labels", clean, num_classes)
    check_bool("exact", exact)
    generator = check_generator(generator)
    flat = clean.reshape(-1)
    noisy = flat.clone()
    rows = matrix.detach().double().cpu()
    sizes = torch.bincount(flat.cpu(), minlength=num_classes).tolist()
    groups = torch.split(torch.argsort(flat.cpu(), stable=True), sizes)
    for label, (members, size) in enumerate(zip(groups, sizes, strict=True)):
        if size == 0:
            continue
        if exact:
            # Renormalised, so that a row summing to 1 within tolerance still yields ``size``.
            counts = _largest_remainder(size * (rows[label] / rows[label].sum()), size)
            draws = torch.repeat_interleave(torch.arange(num_classes), counts)
            draws = draws[torch.randperm(size, generator=generator)]
        else:
            draws = torch.multinomial(rows[label], size, replacement=True, generator=generator)
        noisy[members.to(flat.device)] = draws.to(device=flat.device, dtype=flat.dtype)
    return noisy.reshape(clean.shape)


def realised_noise_rate(clean: Tensor, noisy: Tensor) -> float:
    r"""The fraction of labels that differ, :math:`\frac1N \sum_n [\tilde y_n \ne y_n]`.

    Args:
        clean: class indices, any shape, integer dtype, at least one element.
        noisy: class indices of the same shape.

    Returns:
        The realised flip rate as a Python float.

    >>> realised_noise_rate(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2, 2, 0]))
    0.5
    """
    clean_t, noisy_t = _check_pair(clean, noisy)
    if clean_t.numel() == 0:
        raise fail("clean", "non-empty", clean_t)
    return float((clean_t != noisy_t).double().mean())


def estimate_transition(
    clean: Tensor, noisy: Tensor, num_classes: int, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    r"""The empirical transition matrix of a pair of label sets.

    .. math::
        \hat T_{ij} = \frac{\#\{n : y_n = i,\ \tilde y_n = j\}}{\#\{n : y_n = i\}}

    The maximum-likelihood estimate of ``T`` when the clean labels are known. A class with no clean
    example has no estimate: its row is NaN.

    Args:
        clean: class indices, any shape, integer dtype, values in ``[0, K)``.
        noisy: class indices of the same shape.
        num_classes: ``K >= 1``.
        dtype: floating dtype of the result.

    Returns:
        ``(K, K)`` matrix, rows summing to 1 (or NaN for absent classes).

    >>> estimate_transition(torch.tensor([0, 0, 0, 0, 1]), torch.tensor([0, 0, 0, 1, 1]), 3)
    tensor([[0.7500, 0.2500, 0.0000],
            [0.0000, 1.0000, 0.0000],
            [   nan,    nan,    nan]], dtype=torch.float64)
    """
    k = check_int("num_classes", num_classes, low=1)
    clean_t, noisy_t = _check_pair(clean, noisy)
    check_class_indices("clean", clean_t, k)
    check_class_indices("noisy", noisy_t, k)
    checked = _check_dtype(dtype)
    pairs = clean_t.reshape(-1).long() * k + noisy_t.reshape(-1).long()
    counts = torch.bincount(pairs, minlength=k * k).view(k, k).double()
    return (counts / counts.sum(dim=1, keepdim=True)).to(checked)
