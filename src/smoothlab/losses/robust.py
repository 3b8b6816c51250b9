"""Noise-robust baselines: loss correction, peer loss, GCE and SCE.

The losses that noisy-label tables (e.g. Table 5 of Wei et al., "To Smooth or Not?", ICML 2022)
compare label smoothing with. GCE and SCE have a fused path (``gce_job``, ``sce_job``: kinds of
the C and Triton row kernels, loss and gradient in one sweep of a row) beside their composition
of torch operations, their specification, which runs wherever the kernels do not (``fused=False``,
float64, spatial positions on the CPU). All take class-index targets (the observed, possibly noisy
labels), PyTorch's ``weight`` (each position's loss scaled by :math:`w_{\tilde y}`, a ``mean``
divided by the total weight), ``ignore_index`` and ``reduction``. Transition matrices are
row-stochastic, ``T[i, j] = P(noisy = j | clean = i)``, as in :mod:`smoothlab.noise`, so
:func:`smoothlab.noise.estimate_transition` feeds them directly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab._checks import (
    assert_on_device,
    check_generator,
    check_real,
    check_same_shape,
    fail,
    host_reads,
    reduce_loss,
)
from smoothlab.losses._common import Batch, example_weight, finish_weighted, prepare
from smoothlab.losses._fused import Job, use_fused
from smoothlab.losses._native_rows import GCE, SCE, NativeRows
from smoothlab.losses._served import run_or_compose
from smoothlab.noise.matrices import check_transition

__all__ = [
    "backward_corrected_cross_entropy",
    "forward_corrected_cross_entropy",
    "generalized_cross_entropy",
    "peer_loss",
    "symmetric_cross_entropy",
]

# Above this condition number T^{-1} amplifies float64 rounding past any useful precision.
_MAX_CONDITION = 1e12


def _indices(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    upcast: bool = True,
) -> Batch:
    return prepare(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        allow_probs=False,
        upcast=upcast,
    )


def _transition(transition: object, batch: Batch) -> Tensor:
    """A checked ``(C, C)`` row-stochastic matrix in float64 (C from the input); one on a GPU
    is checked there (``check_transition(on_device=True)``)."""
    matrix = check_transition(transition, on_device=True)
    k = batch.num_classes
    check_same_shape("transition", matrix, (k, k), "one row and column per class of the input")
    return matrix.to(device=batch.logits.device, dtype=torch.float64)


def _rows_at_labels(matrix: Tensor, batch: Batch) -> Tensor:
    """``matrix[y_n, :]`` laid out as ``(N, C, d1, ...)``."""
    assert batch.index is not None
    return matrix.to(batch.logits.dtype)[batch.index].movedim(-1, 1)


def forward_corrected_cross_entropy(
    input: Tensor,
    target: Tensor,
    transition: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Forward loss correction: cross-entropy of the noisy label under ``T``-corrupted predictions.

    .. math::
        \ell = -\log \sum_i p_i\, T_{i \tilde y}, \qquad p = \mathrm{softmax}(z)

    The prediction of the clean label is pushed through the noise process before it meets the
    noisy label :math:`\tilde y` (Patrini et al., Thm. 2: minimising it over noisy data gives the
    clean minimiser). Computed as ``logsumexp(log p + log T[:, y])``; an identity ``T`` is
    cross-entropy.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: noisy class indices ``(N, d1, ...)``.
        transition: ``(C, C)`` row-stochastic ``T[clean, noisy]``.
        weight: per-class weights ``(C,)``, applied as :math:`w_{\tilde y}`.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)``; transition: ``(C, C)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> T = torch.tensor([[0.8, 0.2], [0.1, 0.9]])
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> forward_corrected_cross_entropy(logits, torch.tensor([1, 1]), T, reduction="none")
    tensor([1.2607, 0.3400])

    Reference: G. Patrini, A. Rozza, A. K. Menon, R. Nock, L. Qu, "Making Deep Neural Networks
    Robust to Label Noise: a Loss Correction Approach", CVPR 2017.
    """
    batch = _indices(input, target, weight, ignore_index, reduction)
    matrix = _transition(transition, batch)
    log_p = torch.log_softmax(batch.logits, dim=1)
    # Column y of T for each position: P(noisy = y | clean = i) over i.
    log_column = _rows_at_labels(matrix.T.log(), batch)
    loss = -torch.logsumexp(log_p + log_column, dim=1)
    return finish_weighted(batch, loss)


def backward_corrected_cross_entropy(
    input: Tensor,
    target: Tensor,
    transition: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Backward loss correction: the cross-entropies of all labels mixed by row ``y`` of ``T^-1``.

    .. math::
        \ell = \sum_j (T^{-1})_{\tilde y j}\, \big(-\log p_j\big)

    Its expectation over the noisy label given the clean label :math:`y` is the clean
    cross-entropy :math:`-\log p_y` (Patrini et al., Thm. 1): the loss is unbiased, but
    :math:`T^{-1}` has negative entries, so a single example's loss can be negative and is
    unbounded below. ``T`` must be invertible (condition number at most 1e12); it is inverted
    in float64.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: noisy class indices ``(N, d1, ...)``.
        transition: ``(C, C)`` row-stochastic, invertible ``T[clean, noisy]``.
        weight: per-class weights ``(C,)``, applied as :math:`w_{\tilde y}`.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)``; transition: ``(C, C)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> T = torch.tensor([[0.8, 0.2], [0.1, 0.9]])
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> backward_corrected_cross_entropy(logits, torch.tensor([1, 1]), T, reduction="none")
    tensor([2.4126, 0.1704])

    Reference: G. Patrini, A. Rozza, A. K. Menon, R. Nock, L. Qu, "Making Deep Neural Networks
    Robust to Label Noise: a Loss Correction Approach", CVPR 2017.
    """
    batch = _indices(input, target, weight, ignore_index, reduction)
    matrix = _transition(transition, batch)
    expected = f"invertible for backward correction (condition number <= {_MAX_CONDITION:.0e})"
    if not host_reads(matrix):
        assert_on_device(torch.linalg.cond(matrix) <= _MAX_CONDITION, "transition", expected)
    elif not (condition := float(torch.linalg.cond(matrix))) <= _MAX_CONDITION:
        raise fail("transition", expected, f"!a condition number of {condition:.3g}")
    mix = _rows_at_labels(torch.linalg.inv(matrix), batch)
    log_p = torch.log_softmax(batch.logits, dim=1)
    loss = -torch.where(mix != 0, mix * log_p, 0.0).sum(dim=1)
    return finish_weighted(batch, loss)


def peer_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Peer loss: cross-entropy minus ``alpha`` times the cross-entropy of a random peer pair.

    .. math::
        \ell_n = \mathrm{CE}(z_n, \tilde y_n)
               - \alpha\, \mathrm{CE}(z_{\sigma(n)}, \tilde y_{\rho(n)})

    with :math:`\sigma, \rho` two independent uniform permutations of the batch (dimension 0),
    drawn from ``generator``: the peer term pairs an input with the label of another, independent
    example, which penalises fitting labels that carry no information about the input (Liu &
    Guo). Positions beyond dim 1 keep their place. A peer term whose label is ignored is
    dropped; ``weight`` scales each term by the weight of its label, and ``mean`` divides by the
    total weight (the permutation leaves it unchanged). The loss can be negative.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: noisy class indices ``(N, d1, ...)``.
        alpha: weight of the peer term, ``alpha >= 0`` (0 is cross-entropy).
        generator: source of the two permutations.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> g = torch.Generator().manual_seed(0)
    >>> peer_loss(logits, torch.tensor([0, 1, 0]), alpha=0.5, generator=g)
    tensor(-0.3111)

    Reference: Y. Liu and H. Guo, "Peer Loss Functions: Learning from Noisy Labels without
    Knowing Noise Rates", ICML 2020.
    """
    a = check_real("alpha", alpha, low=0.0)
    gen = check_generator(generator)
    batch = _indices(input, target, weight, ignore_index, reduction)
    assert batch.index is not None
    rows = batch.logits.shape[0]
    sigma = torch.randperm(rows, generator=gen).to(batch.logits.device)
    rho = torch.randperm(rows, generator=gen).to(batch.logits.device)
    log_p = torch.log_softmax(batch.logits, dim=1)
    nll = -batch.gather(log_p)
    peer_nll = -log_p[sigma].gather(1, batch.index[rho].unsqueeze(1)).squeeze(1)
    scale = torch.ones_like(nll) if batch.weight is None else batch.weight[batch.index]
    if batch.valid is not None:
        scale = scale * batch.valid
    # where, not a product: an ignored position's loss may be inf, and 0 * inf is NaN.
    own = torch.where(scale != 0, scale * nll, 0.0)
    peer = torch.where(scale[rho] != 0, scale[rho] * peer_nll, 0.0)
    loss = own - a * peer
    if batch.reduction == "none" and batch.unbatched:
        return loss.squeeze(0)
    return reduce_loss(loss, batch.reduction, scale.sum())


def generalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    fused: bool = True,
    inplace_grad: bool = False,
) -> Tensor:
    r"""Generalized cross-entropy (the :math:`L_q` loss), between CE and MAE.

    .. math::
        \ell = \frac{1 - p_y^{\,q}}{q}, \qquad 0 < q \le 1

    As :math:`q \to 0` it tends to cross-entropy :math:`-\log p_y`; :math:`q = 1` is the mean
    absolute error :math:`1 - p_y` (up to a factor 2), which is robust to symmetric noise but
    slow to train (Zhang & Sabuncu). Computed as ``-expm1(q log p_y) / q``, accurate
    for small ``q``.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)``.
        q: the exponent, ``0 < q <= 1``.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        fused: compute loss and gradient in one sweep of each row (C kernels for float32 or
            half ``(N, C)`` CPU logits, Triton for CUDA); ``False`` (and every other input)
            runs the composition of torch operations, with the same numbers.
        inplace_grad: write the gradient into ``input``'s storage (the fused path only).

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> generalized_cross_entropy(logits, torch.tensor([0, 2]), q=0.7, reduction="none")
    tensor([0.2205, 0.9463])

    Reference: Z. Zhang and M. R. Sabuncu, "Generalized Cross Entropy Loss for Training Deep
    Neural Networks with Noisy Labels", NeurIPS 2018.
    """
    exponent = check_real("q", q, low=0.0, high=1.0, low_open=True)
    fast = use_fused(fused, inplace_grad, weight)
    batch = _indices(input, target, weight, ignore_index, reduction, upcast=not fast)

    def composition(batch: Batch) -> Tensor:
        log_p_y = batch.gather(torch.log_softmax(batch.logits, dim=1))
        return finish_weighted(batch, -torch.expm1(exponent * log_p_y) / exponent)

    if fast:
        return run_or_compose(gce_job(batch, exponent), batch, inplace_grad, composition)
    return composition(batch)


def gce_job(batch: Batch, q: float) -> Job:
    """The fused job: ``w_y (1 - p_y^q) / q``, the ``GCE`` kind with ``strength = q``."""
    return Job.of(batch, None, False, NativeRows(GCE, example_weight(batch), strength=q))


def symmetric_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = -4.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    fused: bool = True,
    inplace_grad: bool = False,
) -> Tensor:
    r"""Symmetric cross-entropy: cross-entropy plus reverse cross-entropy.

    .. math::
        \ell = \alpha\,(-\log p_y) + \beta\,\Big(-\sum_j p_j \log q_j\Big)
             = \alpha\,(-\log p_y) - \beta A\,(1 - p_y)

    where :math:`q` is the one-hot label whose :math:`\log 0` is clipped to :math:`A` =
    ``log_zero`` (Wang et al. use :math:`A = -4`). The reverse term is a scaled
    mean absolute error, robust to noise; ``beta = 0`` is ``alpha`` times cross-entropy.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)``.
        alpha: weight of cross-entropy, ``alpha >= 0``.
        beta: weight of reverse cross-entropy, ``beta >= 0``.
        log_zero: the value :math:`A < 0` that stands for :math:`\log 0`.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        fused: as :func:`generalized_cross_entropy`.
        inplace_grad: as :func:`generalized_cross_entropy`.

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> symmetric_cross_entropy(logits, torch.tensor([0, 2]), reduction="none")
    tensor([0.8760, 3.3074])

    Reference: Y. Wang, X. Ma, Z. Chen, Y. Luo, J. Yi, J. Bailey, "Symmetric Cross Entropy for
    Robust Learning with Noisy Labels", ICCV 2019.
    """
    a = check_real("alpha", alpha, low=0.0)
    b = check_real("beta", beta, low=0.0)
    big_a = check_real("log_zero", log_zero, high=0.0, high_open=True)
    fast = use_fused(fused, inplace_grad, weight)
    batch = _indices(input, target, weight, ignore_index, reduction, upcast=not fast)

    def composition(batch: Batch) -> Tensor:
        log_p_y = batch.gather(torch.log_softmax(batch.logits, dim=1))
        loss = a * -log_p_y + b * -big_a * -torch.expm1(log_p_y)
        return finish_weighted(batch, loss)

    if fast:
        return run_or_compose(sce_job(batch, a, -b * big_a), batch, inplace_grad, composition)
    return composition(batch)


def sce_job(batch: Batch, alpha: float, reverse: float) -> Job:
    """The fused job: ``w_y (-alpha log p_y + reverse (1 - p_y))`` with ``reverse = -beta A``,
    the ``SCE`` kind with ``strength = alpha`` and ``param = reverse``."""
    native = NativeRows(SCE, example_weight(batch), strength=alpha, param=reverse)
    return Job.of(batch, None, False, native)
