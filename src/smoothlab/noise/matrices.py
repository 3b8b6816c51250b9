r"""Class-conditional label-noise transition matrices.

Every matrix here is row-stochastic, ``T[i, j] = P(noisy = j | clean = i)`` (house convention; use
:func:`to_column_stochastic` for tools that want ``P[noisy, clean]``). Matrices are built in
float64 with the diagonal set to one minus the off-diagonal row sum, so rows sum to 1 within
1e-12 before the cast to ``dtype``.

Noise "rate" means the probability that a label changes. With :math:`e_i = 1 - T_{ii}` the
per-class flip probability, the expected flip rate of a data set with class frequencies
:math:`\pi_i` is :math:`\sum_i \pi_i e_i`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import (
    assert_on_device,
    check_floating,
    check_generator,
    check_int,
    check_real,
    fail,
    host_reads,
)

__all__ = [
    "CIFAR10_CLASSES",
    "asymmetric_cifar10",
    "check_transition",
    "class_dependent",
    "from_column_stochastic",
    "pairflip",
    "random_transition",
    "symmetric",
    "to_column_stochastic",
    "uniform",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Patrini et al. (2017)'s confusions of similar CIFAR-10 classes, as (clean, noisy) index pairs:
# truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
_CIFAR10_FLIPS = ((9, 1), (2, 0), (4, 7), (3, 5), (5, 3))


def _check_rate(name: str, rate: object) -> float:
    return check_real(name, rate, low=0.0, high=1.0, high_open=True)


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise fail("dtype", "a floating-point torch.dtype", dtype, kind=TypeError)
    return dtype


def _with_diagonal(off: Tensor, dtype: object) -> Tensor:
    """Fill the diagonal of a float64 off-diagonal matrix so each row sums to 1, then cast."""
    checked = _check_dtype(dtype)
    matrix = off.clone()
    matrix.fill_diagonal_(0.0)
    matrix += torch.diag(1.0 - matrix.sum(dim=1))
    return matrix.to(checked)


def _check_stochastic(
    transition: object, *, atol: float, dim: int, on_device: bool = False
) -> Tensor:
    """Check a square, finite, non-negative matrix summing to 1 along ``dim`` (1: rows); with
    ``on_device``, where reading its values would synchronise (``host_reads``), its values are
    asserted on the device in one message that names no entry."""
    matrix = check_floating("transition", transition)
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise fail("transition", "a square (K, K) matrix with K >= 1", matrix)
    what = "row" if dim == 1 else "column"
    if on_device and not host_reads(matrix):
        sums = (matrix.sum(dim=dim, dtype=torch.float64) - 1).abs() <= atol
        fine = torch.all(torch.isfinite(matrix) & (matrix >= 0)) & torch.all(sums)
        expected = f"{what}-stochastic: finite, non-negative, {what}s summing to 1"
        assert_on_device(fine, "transition", expected)
        return matrix
    if not bool(torch.isfinite(matrix).all()):
        raise fail("transition", "finite", "!a matrix containing NaN or inf")
    if bool((matrix < 0).any()):
        row, col = (matrix < 0).nonzero()[0].tolist()
        raise fail(
            "transition", "non-negative", f"!T[{row}, {col}] = {float(matrix[row, col]):.6g}"
        )
    sums = matrix.sum(dim=dim, dtype=torch.float64)
    worst = int((sums - 1).abs().argmax())
    if abs(float(sums[worst]) - 1) > atol:
        expected = f"{what}-stochastic ({what}s summing to 1)"
        raise fail("transition", expected, f"!{what} {worst} summing to {float(sums[worst]):.6g}")
    return matrix


def symmetric(num_classes: int, rate: float, *, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Symmetric noise: keep the label with probability ``1 - rate``, else a uniform other class.

    .. math::
        T_{ii} = 1 - e, \qquad T_{ij} = \frac{e}{K - 1} \quad (j \ne i)

    so the realised flip rate is exactly ``e`` whatever the class frequencies. This is the
    "symmetric flipping" of Co-teaching (Han et al., NeurIPS 2018) and of Yang et al. (2025,
    Sec. 4.3.1); :func:`uniform` is the variant that spreads ``e / K`` over every class.

    Args:
        num_classes: ``K >= 2``.
        rate: flip probability ``e`` in ``[0, 1)``.
        dtype: floating dtype of the result.

    Returns:
        ``(K, K)`` row-stochastic matrix.

    >>> symmetric(3, 0.3)
    tensor([[0.7000, 0.1500, 0.1500],
            [0.1500, 0.7000, 0.1500],
            [0.1500, 0.1500, 0.7000]], dtype=torch.float64)
    """
    k = check_int("num_classes", num_classes, low=2)
    e = _check_rate("rate", rate)
    return _with_diagonal(torch.full((k, k), e / (k - 1), dtype=torch.float64), dtype)


def uniform(num_classes: int, rate: float, *, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Uniform noise: with probability ``rate`` the label is redrawn uniformly over all classes.

    .. math::
        T = (1 - e)\,I + \frac{e}{K}\,\mathbf{1}\mathbf{1}^\top, \qquad
        T_{ii} = 1 - e + \frac{e}{K}, \quad T_{ij} = \frac{e}{K} \quad (j \ne i)

    A redraw can land on the true class, so the realised flip rate is ``e (K - 1) / K``, not ``e``
    (the convention of PyTorch's ``label_smoothing``; :func:`symmetric` is the other one).

    Args:
        num_classes: ``K >= 2``.
        rate: redraw probability ``e`` in ``[0, 1)``.
        dtype: floating dtype of the result.

    Returns:
        ``(K, K)`` row-stochastic matrix.

    >>> uniform(4, 0.4)
    tensor([[0.7000, 0.1000, 0.1000, 0.1000],
            [0.1000, 0.7000, 0.1000, 0.1000],
            [0.1000, 0.1000, 0.7000, 0.1000],
            [0.1000, 0.1000, 0.1000, 0.7000]], dtype=torch.float64)
    """
    k = check_int("num_classes", num_classes, low=2)
    e = _check_rate("rate", rate)
    return _with_diagonal(torch.full((k, k), e / k, dtype=torch.float64), dtype)


def pairflip(num_classes: int, rate: float, *, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Pair-flip noise: class ``i`` becomes class ``i + 1`` (cyclically) with probability ``rate``.

    .. math::
        T_{ii} = 1 - e, \qquad T_{i,\,(i + 1) \bmod K} = e

    The cyclic order is the class-index order; for CIFAR-10 it is airplane -> automobile -> bird
    -> cat -> deer -> dog -> frog -> horse -> ship -> truck -> airplane (Yang et al., 2025,
    App. C.2). Introduced as "pair flipping" by Co-teaching (Han et al., NeurIPS 2018). The
    realised flip rate is ``e``; for ``e >= 0.5`` the wrong class is the majority label.

    Args:
        num_classes: ``K >= 2``.
        rate: flip probability ``e`` in ``[0, 1)``.
        dtype: floating dtype of the result.

    Returns:
        ``(K, K)`` row-stochastic matrix.

    >>> pairflip(3, 0.2)
    tensor([[0.8000, 0.2000, 0.0000],
            [0.0000, 0.8000, 0.2000],
            [0.2000, 0.0000, 0.8000]], dtype=torch.float64)
    """
    k = check_int("num_classes", num_classes, low=2)
    e = _check_rate("rate", rate)
    off = torch.zeros(k, k, dtype=torch.float64)
    off[torch.arange(k), (torch.arange(k) + 1) % k] = e
    return _with_diagonal(off, dtype)


def asymmetric_cifar10(rate: float, *, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Asymmetric CIFAR-10 noise: similar classes are confused with probability ``rate``.

    .. math::
        T_{\text{truck},\text{automobile}} = T_{\text{bird},\text{airplane}} =
        T_{\text{deer},\text{horse}} = T_{\text{cat},\text{dog}} = T_{\text{dog},\text{cat}} = e

    with ``1 - e`` on those five diagonal entries and 1 on the other five (airplane, automobile,
    frog, horse, ship keep their labels). Classes are in the canonical CIFAR-10 order
    :data:`CIFAR10_CLASSES`. With balanced classes the realised flip rate is ``e / 2``.
    Patrini et al., "Making deep neural networks robust to label noise: a loss correction
    approach", CVPR 2017.

    Args:
        rate: flip probability ``e`` in ``[0, 1)`` of the five confused classes.
        dtype: floating dtype of the result.

    Returns:
        ``(10, 10)`` row-stochastic matrix.

    >>> T = asymmetric_cifar10(0.4)
    >>> T[9, 1].item(), T[9, 9].item(), T[3, 5].item(), T[0, 0].item()
    (0.4, 0.6, 0.4, 1.0)
    """
    e = _check_rate("rate", rate)
    off = torch.zeros(10, 10, dtype=torch.float64)
    for clean, noisy in _CIFAR10_FLIPS:
        off[clean, noisy] = e
    return _with_diagonal(off, dtype)


def class_dependent(
    num_classes: int, kappa: float, beta: float, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    r"""Class-dependent noise: class ``i`` (1-based) flips with probability ``kappa + beta * i``.

    .. math::
        T_{ii} = 1 - (\kappa + \beta i), \qquad
        T_{ij} = \frac{\kappa + \beta i}{K - 1} \quad (j \ne i), \qquad i, j \in \{1, \dots, K\}

    Yang, Liu, Marconi & Khan, "Variational Learning Induces Adaptive Label Smoothing" (2025),
    Eq. 21-22: ``kappa`` is the starting noise level and ``beta`` its increase per class. The paper
    writes ``y' = P y``, but its rows (not columns) sum to 1, so ``i`` indexes the clean class,
    as here. With 0-based tensor indices row ``r`` has rate ``kappa + beta * (r + 1)``. Every
    per-class rate must lie in ``[0, 1]``: the paper's largest setting (``kappa = 0.5``,
    ``beta = 0.05``, ``K = 10``) gives the last class rate 1, which is allowed.

    Args:
        num_classes: ``K >= 2``.
        kappa: starting noise level.
        beta: increase per class (may be negative).
        dtype: floating dtype of the result.

    Returns:
        ``(K, K)`` row-stochastic matrix.

    >>> class_dependent(3, 0.1, 0.1)
    tensor([[0.8000, 0.1000, 0.1000],
            [0.1500, 0.7000, 0.1500],
            [0.2000, 0.2000, 0.6000]], dtype=torch.float64)
    """
    k = check_int("num_classes", num_classes, low=2)
    start = check_real("kappa", kappa)
    step = check_real("beta", beta)
    rates = start + step * torch.arange(1, k + 1, dtype=torch.float64)
    for i, rate in enumerate(rates.tolist(), start=1):
        # 1e-12 forgives rounding such as 0.5 + 0.05 * 10 on the boundary.
        if not -1e-12 <= rate <= 1 + 1e-12:
            raise fail(
                "kappa + beta * i",
                "in [0, 1] for every class i = 1..K",
                f"!{rate:.6g} for class i = {i} (kappa={start}, beta={step}, K={k})",
            )
    rates = rates.clamp(0.0, 1.0)
    return _with_diagonal((rates / (k - 1)).unsqueeze(1).expand(k, k), dtype)


def random_transition(
    num_classes: int,
    rate: float,
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    r"""A random diagonally dominant transition matrix whose mean flip rate is exactly ``rate``.

    Construction: per-row rates :math:`e_i = e + \min(e, 1 - e)\,(u_i - \bar u)` with
    :math:`u_i \sim U[0, 1)` (so :math:`e_i \in [0, 1)` and :math:`\frac1K\sum_i e_i = e`);
    row ``i`` of a random matrix ``R`` spreads :math:`e_i` over the other classes in proportions
    drawn from a flat Dirichlet. The result mixes it with :func:`symmetric`,

    .. math::
        T = (1 - \alpha)\,S_e + \alpha R, \qquad
        \alpha = \min\Bigl(1, \frac{g/2}{g - \delta}\Bigr), \quad g = 1 - \frac{eK}{K - 1}, \quad
        \delta = \min_{i \ne j} (R_{ii} - R_{ij}),

    which keeps :math:`\frac1K \sum_i \sum_{j \ne i} T_{ij} = e` (exact up to rounding: this is
    the expected flip rate when classes are balanced) and makes every row diagonally dominant in
    the sense that matters for noisy labels, :math:`T_{ii} - T_{ij} \ge g/2 > 0` for
    :math:`j \ne i`: the clean class stays the most likely noisy label. That needs
    :math:`e < (K - 1)/K`. ``rate = 0`` gives the identity.

    Args:
        num_classes: ``K >= 2``.
        rate: mean flip probability ``e`` in ``[0, (K - 1) / K)``.
        generator: source of randomness (``None``: PyTorch's global generator).
        dtype: floating dtype of the result.

    Returns:
        ``(K, K)`` row-stochastic matrix.

    >>> T = random_transition(4, 0.3, generator=torch.Generator().manual_seed(0))
    >>> round(float(1 - T.diagonal().mean()), 12)
    0.3
    >>> margin = T.diagonal().unsqueeze(1) - T + torch.eye(4, dtype=T.dtype)
    >>> bool((margin >= 0.3 - 1e-12).all())  # g / 2 = (1 - 0.3 * 4 / 3) / 2
    True
    """
    k = check_int("num_classes", num_classes, low=2)
    e = _check_rate("rate", rate)
    if e >= (k - 1) / k:
        raise fail("rate", f"< (K - 1) / K = {(k - 1) / k:.6g} for a diagonally dominant matrix", e)
    generator = check_generator(generator)
    u = torch.rand(k, generator=generator, dtype=torch.float64)
    row_rates = e + min(e, 1 - e) * (u - u.mean())
    shares = torch.empty(k, k, dtype=torch.float64).exponential_(generator=generator)
    shares.fill_diagonal_(0.0)
    shares /= shares.sum(dim=1, keepdim=True)
    random = _with_diagonal(row_rates.unsqueeze(1) * shares, torch.float64)
    gap = 1 - e * k / (k - 1)
    worst = float((random.diagonal().unsqueeze(1) - random + 2 * torch.eye(k)).min())
    alpha = 1.0 if worst >= gap / 2 else (gap / 2) / (gap - worst)
    mixed = (1 - alpha) * symmetric(k, e) + alpha * random
    return _with_diagonal(mixed, dtype)


def check_transition(transition: object, *, atol: float = 1e-6, on_device: bool = False) -> Tensor:
    r"""Check that ``transition`` is a square row-stochastic matrix and return it.

    .. math::
        T \in [0, 1]^{K \times K}, \qquad \Bigl|\sum_j T_{ij} - 1\Bigr| \le \text{atol}

    Args:
        transition: floating tensor of shape ``(K, K)``, ``K >= 1``, finite, non-negative.
        atol: allowed deviation of each row sum from 1.
        on_device: for a loss's per-call matrix on a GPU, assert the values there instead of
            reading them (:func:`smoothlab._checks.host_reads`).

    Returns:
        ``transition`` unchanged.

    >>> check_transition(torch.tensor([[0.9, 0.1], [0.0, 1.0]]))
    tensor([[0.9000, 0.1000],
            [0.0000, 1.0000]])
    >>> check_transition(torch.tensor([[0.9, 0.2], [0.0, 1.0]]))
    Traceback (most recent call last):
    ...
    ValueError: `transition` must be row-stochastic (rows summing to 1), got row 0 summing to 1.1
    """
    return _check_stochastic(transition, atol=atol, dim=1, on_device=on_device)


def to_column_stochastic(transition: Tensor) -> Tensor:
    r"""The column-stochastic form ``C = T^T``, ``C[j, i] = P(noisy = j | clean = i)``.

    .. math::
        C_{ji} = T_{ij}, \qquad \sum_j C_{ji} = 1

    For tools that write the noise process as ``y_noisy = C y_clean`` on one-hot column vectors.

    Args:
        transition: row-stochastic ``(K, K)`` matrix (checked by :func:`check_transition`).

    Returns:
        ``(K, K)`` matrix whose columns sum to 1 (a transposed copy).

    >>> to_column_stochastic(pairflip(3, 0.2))[:, 0]
    tensor([0.8000, 0.2000, 0.0000], dtype=torch.float64)
    """
    return check_transition(transition).t().contiguous()


def from_column_stochastic(transition: Tensor) -> Tensor:
    r"""The row-stochastic ``T = C^T`` from a column-stochastic ``C[noisy, clean]``.

    .. math::
        T_{ij} = C_{ji}, \qquad \sum_j T_{ij} = 1

    Args:
        transition: ``(K, K)`` matrix whose columns sum to 1.

    Returns:
        ``(K, K)`` row-stochastic matrix (a transposed copy).

    >>> from_column_stochastic(torch.tensor([[0.8, 0.0], [0.2, 1.0]]))
    tensor([[0.8000, 0.2000],
            [0.0000, 1.0000]])
    """
    return _check_stochastic(transition, atol=1e-6, dim=0).t().contiguous()
