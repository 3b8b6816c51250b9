"""Label-smoothing cross-entropy: uniform, prior, teacher and negative (generalized) smoothing.

This module is the whole loss, one hop from each backend: the public function, its
specification (``_composition``: soft-target cross-entropy of
:func:`smoothlab.targets.mix_targets`, the arithmetic of ``smooth_targets``), and the
coefficient rule of the fused kernels (``index_job``, ``soft_job``), which
:mod:`smoothlab.losses._fused` dispatches to the Triton, C or PyTorch row kernels. In their one
notation (the header of ``smoothlab/_native/losses.c``) class-index smoothing in every variant is
``q = a e_y + b pi``:

=====================  ===========================  ======================  ==============
variant                a                            b                       pi
=====================  ===========================  ======================  ==============
uniform / negative     ``1 - r``                    ``r``                   ``1 / C``
class or example pi    ``1 - r``                    ``r``                   ``pi``
exclusive, uniform     ``1 - r'``                   ``r'``                  ``1 / C``
exclusive with pi      ``(1 - r) - b pi_y``         ``r / (1 - pi_y)``      ``pi``
weight, "pytorch"      ``a w_y``                    ``b``                   ``w * pi``
weight, "example"      ``a w_y``                    ``b w_y``               ``pi``
=====================  ===========================  ======================  ==============

with ``r' = r K / (K - 1)`` and ``a = b = 0`` at ignored positions; a per-example ``pi`` reaches
the C and Triton kernels as their ``r T`` term (``T = w * pi``, ``r = b``), and probability
targets ``t`` as ``q = r (w * pi) + (1 - r) (w * t)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor

from smoothlab._checks import check_bool, check_real, fail, host_reads
from smoothlab.losses._common import (
    Batch,
    Coef,
    capped,
    check_logit_options,
    compute_dtype,
    finish,
    masked,
    massed,
    prepare,
    soft_cross_entropy,
    z_loss,
)
from smoothlab.losses._fused import Job, Layout, run_fused, use_fused
from smoothlab.losses._kernels import Chunk, smoothing_rows, soft_rows
from smoothlab.losses._native_rows import SMOOTH, NativeRows, rows_of, viewable
from smoothlab.targets import check_prior, exclusive_prior, exclusive_split, mix_targets

__all__ = ["Weighting", "label_smoothing_cross_entropy"]

Weighting = Literal["pytorch", "example"]


def label_smoothing_cross_entropy(
    input: Tensor,
    target: Tensor,
    smoothing: float = 0.1,
    *,
    prior: Tensor | None = None,
    exclusive: bool = False,
    weight: Tensor | None = None,
    weighting: Weighting = "pytorch",
    ignore_index: int = -100,
    reduction: str = "mean",
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
    fused: bool = True,
    inplace_grad: bool = False,
) -> Tensor:
    r"""Cross-entropy against smoothed targets ``(1 - r) * onehot + r * prior``.

    Unreduced, for an example with logits :math:`z`, :math:`\log p = \mathrm{log\_softmax}(z)`,
    class-index target :math:`y` and prior :math:`\pi` (uniform :math:`1/K` by default):

    .. math::
        \ell = -(1 - r)\, w_y \log p_y \;-\; r \sum_j w_j\, \pi_j \log p_j

    with :math:`w = 1` when ``weight`` is ``None``. For ``r`` in [0, 1], no prior and any
    ``weight`` / ``ignore_index`` / ``reduction`` / shape, this equals
    ``F.cross_entropy(input, target, label_smoothing=r, ...)``, including PyTorch's weight
    semantics: the smoothing term weights class :math:`j` by :math:`w_j`, and ``mean`` divides by
    :math:`\sum_n w_{y_n}` over non-ignored positions. That distorts the smoothed distribution
    (rare classes receive extra mass); ``weighting="example"`` is the non-distorting alternative,
    :math:`\ell = w_y \cdot \mathrm{CE}(q, p)` with the same denominator.

    With probability targets :math:`t` of the input's shape, :math:`q = (1 - r) t + r \pi` and
    :math:`\ell = -\sum_j w_j q_j \log p_j`; ``mean`` divides by the number of positions (as
    PyTorch does).

    Negative ``r`` is generalized / negative label smoothing (Wei et al., "To Smooth or Not?",
    ICML 2022): the wrong classes get negative target mass, so **the loss is unbounded below**
    (it decreases without limit as the logit gap grows); use it with a bounded number of steps,
    or after a cross-entropy warm-up as Wei et al. do. PyTorch silently treats ``r < 0`` as 0;
    smoothlab never does. Terms with zero target mass :math:`w_j q_j` (a zero probability or a
    zero class weight) contribute exactly 0, even at ``-inf`` logits, on every path. PyTorch
    computes :math:`0 \cdot \infty` there and returns NaN: the one place where the numbers
    differ from PyTorch's.

    Options of the GPU anchors (Liger-Kernel), on every backend: with ``softcap`` :math:`c` the
    logits are first capped, :math:`z \leftarrow c \tanh(z / c)` (Gemma 2), and with
    ``lse_square_scale`` :math:`s` each non-ignored position adds PaLM's z-loss
    :math:`s\,(\log \sum_j e^{z_j})^2`, unweighted, to :math:`\ell` (a ``mean`` keeps its
    denominator). Half-precision inputs are computed in float32 and the loss is
    returned in float32. A ``mean`` over no positions (empty or all ignored) is NaN, a ``sum``
    is 0 (as in PyTorch).

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)`` or probabilities of the input's shape.
        smoothing: ``r <= 1``; negative for negative label smoothing.
        prior: ``None`` (uniform), a class prior ``(C,)``, or per-example distributions
            ``(N, C, ...)`` (a teacher's predictions).
        exclusive: spread ``r`` over the other ``K - 1`` classes only (``r / (K - 1)`` each).
        weight: per-class weights ``(C,)``.
        weighting: ``"pytorch"`` (default, PyTorch's semantics) or ``"example"``.
        ignore_index: class index whose positions contribute nothing (class-index targets).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        lse_square_scale: the z-loss scale ``s >= 0`` (PaLM's auxiliary ``s lse^2``).
        softcap: ``c > 0`` caps the logits at ``c tanh(z / c)`` first (Gemma 2); ``None``: off.
        fused: compute the gradient in the forward pass (see :mod:`smoothlab.losses`);
            ``False`` runs the composition of torch operations (double backward, forward AD).
        inplace_grad: write the gradient into ``input``'s storage (the logits are destroyed;
            for callers that no longer need them).

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)`` or ``(N, C, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> label_smoothing_cross_entropy(logits, torch.tensor([0, 1]), 0.1)
    tensor(0.5047)
    >>> torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]), label_smoothing=0.1)
    tensor(0.5047)
    >>> label_smoothing_cross_entropy(logits, torch.tensor([0, 1]), -0.5)  # negative smoothing
    tensor(-0.1453)
    >>> label_smoothing_cross_entropy(logits, torch.tensor([0, 1]), 0.1, lse_square_scale=1e-2)
    tensor(0.5419)
    >>> label_smoothing_cross_entropy(logits, torch.tensor([0, 1]), 0.1, softcap=1.0)
    tensor(0.6815)

    References: Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016; Wei et al.,
    ICML 2022; Xu et al., "Towards Understanding Label Smoothing", 2020 (teacher prior);
    Chowdhery et al., "PaLM", 2022 (z-loss); Gemma Team, "Gemma 2", 2024 (softcap).
    """
    rate = check_real("smoothing", smoothing, high=1.0)
    zs, cap = check_logit_options(lse_square_scale, softcap)
    if weighting not in ("pytorch", "example"):
        raise fail("weighting", "one of 'pytorch', 'example'", weighting)
    fast = use_fused(fused, inplace_grad, target, prior, weight)
    batch = prepare(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        upcast=not fast,
    )
    rate, pi = _resolve(batch, rate, prior, exclusive, weighting)
    if not fast:
        return _composition(capped(batch, cap), rate, pi, exclusive, weighting, zs)
    if batch.probs is not None:
        job = soft_job(batch, rate, pi)
    else:
        job = index_job(batch, rate, pi, exclusive and pi is not None, weighting)
    return run_fused(job.with_options(zs, cap), batch.logits, inplace_grad)


def _resolve(
    batch: Batch, rate: float, prior: Tensor | None, exclusive: bool, weighting: Weighting
) -> tuple[float, Tensor | None]:
    """Check the prior and the options against the targets (both paths); return the rate and
    the prior in the compute dtype, broadcastable against the logits (``None``: uniform).

    Exclusive smoothing with the uniform prior, ``r / (K - 1)`` on each other class, is uniform
    smoothing at rate ``r K / (K - 1)``: the rate comes back rescaled (with a given prior, the
    prior is renormalised instead: :func:`smoothlab.targets.exclusive_prior`).
    """
    num_classes = batch.num_classes
    check_bool("exclusive", exclusive)
    pi = None if prior is None else check_prior(prior, num_classes, tuple(batch.logits.shape))
    pi = None if pi is None else pi.to(compute_dtype(batch.logits.dtype))
    if batch.probs is not None:
        if weighting == "example":
            raise fail("weighting", "'pytorch' with probability targets", weighting)
        if exclusive:
            raise fail("target", "class indices when exclusive=True", batch.probs, kind=TypeError)
    elif exclusive and pi is None:
        if num_classes < 2:  # there is no other class to put r on
            raise fail("input", "at least 2 classes when exclusive=True", batch.logits)
        rate = rate * num_classes / (num_classes - 1)
    return rate, pi


def _composition(
    batch: Batch,
    rate: float,
    pi: Tensor | None,
    exclusive: bool,
    weighting: Weighting,
    lse_square_scale: float,
) -> Tensor:
    """The specification (``fused=False``): the soft-target cross-entropy
    ``-sum_j w_j q_j log p_j`` of the targets ``q = (1 - r) t + r pi`` of
    :func:`smoothlab.targets.smooth_targets`, as differentiable torch operations (double
    backward, forward AD, gradients for the prior and the targets).

    For class indices the cross-entropy, linear in ``q``, is taken term by term:
    ``(1 - r) CE(e_y) + r CE(pi)``, the first a gather (no ``N x C`` one-hot), the second
    against the prior that ``smooth_targets`` uses (renormalised off ``y`` when exclusive).
    The z-loss joins each position's loss unweighted (``batch``'s logits are already capped).
    """
    extra = z_loss(batch, lse_square_scale)
    log_p = torch.log_softmax(batch.logits, dim=1)
    if batch.probs is not None:
        uniform = torch.full_like(batch.logits[:1], 1.0 / batch.num_classes)
        q = mix_targets(batch.probs, rate, uniform if pi is None else pi)
        return finish(batch, soft_cross_entropy(batch, q, log_p) + extra, None)
    assert batch.index is not None
    if exclusive and pi is not None:
        pi = exclusive_prior(pi.expand_as(batch.logits), batch.index, batch.valid)
    w_y = batch.target_weight()
    example = weighting == "example" and w_y is not None  # w_y CE(q, p): q stays undistorted
    mass = 1.0 - rate if w_y is None or example else (1.0 - rate) * w_y
    loss = massed(mass, -batch.gather(log_p))  # no term where the mass is 0, even at -inf
    if rate != 0.0:
        loss = loss + rate * _prior_term(batch, log_p, pi, None if example else batch.weight)
    if example and w_y is not None:
        loss = massed(w_y, loss)
    return finish(batch, loss + extra, None if w_y is None else w_y.sum())


def _prior_term(batch: Batch, log_p: Tensor, pi: Tensor | None, weight: Tensor | None) -> Tensor:
    """``CE(pi) = -sum_j w_j pi_j log p_j`` (``pi=None``: uniform), 0 where ``w_j pi_j = 0``."""
    if pi is None:
        if weight is None:
            return -log_p.mean(dim=1)
        coef = batch.class_view(weight) / batch.num_classes
    else:
        coef = pi if weight is None else pi * batch.class_view(weight)
    return -massed(coef, log_p).sum(dim=1)


# ----------------------------------------------- the coefficient rule of the fused kernels
def index_job(batch: Batch, rate: float, pi: Tensor | None, exclusive: bool, weighting: str) -> Job:
    """The fused job for class-index targets: ``q = a e_y + b pi`` per position, as the table of
    the module docstring (``pi``: ``(1, C, 1...)`` or per example, in the compute dtype;
    ``exclusive`` with a given ``pi`` only: ``_resolve`` rescales the uniform case)."""
    assert batch.index is not None
    w_y = batch.flat_weight()
    a: Coef = 1.0 - rate
    b: Coef = rate
    if exclusive:  # a given prior renormalised off y (a uniform one arrives as rate r')
        assert pi is not None
        parts = exclusive_split(pi, batch.index, batch.valid)
        pi_y, rest = (part.reshape(-1) for part in parts)
        b = rate / rest
        a = (1.0 - rate) - b * pi_y
    class_w = batch.weight if weighting == "pytorch" else None
    if w_y is not None:
        a = a * w_y
        b = b * w_y if weighting == "example" else masked(b, batch)
    else:
        a, b = masked(a, batch), masked(b, batch)
    per_example = pi is not None and pi.numel() != batch.num_classes
    vector = None if pi is None or per_example else pi.reshape(-1)
    if class_w is not None and not per_example:
        vector = class_w / batch.num_classes if vector is None else vector * class_w
    if rate == 0.0:
        vector, b, per_example = None, 0.0, False
    full = pi if per_example else None
    vector_sum = 1.0
    if vector is not None and host_reads(vector):
        vector_sum = float(vector.sum())
    elif vector is not None:  # the kernels take the vector normalised and b times its mass
        mass = vector.sum()  # (reading it would synchronise: host_reads)
        vector = vector / torch.where(mass != 0, mass, 1.0)
        b = b * mass if isinstance(b, Tensor) else mass.expand(batch.index.numel()) * b

    def kernel(chunk: Chunk, layout: Layout, start: int, stop: int, scale: float | None) -> Tensor:
        prior: Tensor | None = None
        total: Coef = vector_sum
        if full is not None:
            prior = layout.take(full, start, stop)
            if class_w is not None:
                prior = prior * class_w.view(1, -1, 1)
            total = prior.sum(1, keepdim=True)
        elif vector is not None:
            prior = vector.view(1, -1, 1)
        a_c, b_c = layout.coef(a, start, stop), layout.coef(b, start, stop)
        return smoothing_rows(chunk, a_c, b_c, prior, total, scale)

    native = NativeRows(SMOOTH, a, b, vector, vector_sum)
    if full is not None:  # natively the per-example prior is the T term, b its coefficient r
        rows = full.reshape(batch.logits.shape[0], -1)
        native = NativeRows(SMOOTH, a, 0.0, t_rows=rows_of(rows), tw=class_w, r=b)
        native = replace(native, scratch=not viewable(full))
    return Job.of(batch, kernel, full is not None, native)


def soft_job(batch: Batch, rate: float, pi: Tensor | None) -> Job:
    """The fused job for probability targets ``t``: cross-entropy against
    ``w * ((1 - r) t + r pi)`` (``pi``: ``(1, C, 1...)`` or per example, in the compute dtype)."""
    probs, weight = batch.probs, batch.weight
    assert probs is not None
    vector = pi is not None and pi.numel() == batch.num_classes

    def kernel(chunk: Chunk, layout: Layout, start: int, stop: int, scale: float | None) -> Tensor:
        q = layout.take(probs, start, stop) * (1.0 - rate)
        if rate != 0.0 and pi is None:
            q.add_(rate / layout.classes)
        elif rate != 0.0 and pi is not None:
            part = pi.reshape(1, -1, 1) if vector else layout.take(pi, start, stop)
            q.add_(part, alpha=rate)
        if weight is not None:
            q.mul_(weight.view(1, -1, 1))
        return soft_rows(chunk, q, scale)

    # Natively q = b (w . pi) + r (w . T) with b = r, r = 1 - r and T = t (or pi as the vector
    # term); a per-example pi is mixed into T chunk by chunk.
    target = probs.reshape(probs.shape[0], -1)
    if pi is None or vector:
        prior = None if pi is None else pi.reshape(-1)
        if weight is not None:
            prior = weight / batch.num_classes if prior is None else prior * weight
        mass = 1.0 if prior is None else float(prior.sum())
        native = NativeRows(SMOOTH, 0.0, rate, prior, mass, t_rows=rows_of(target), r=1.0 - rate)
        native = replace(native, scratch=not viewable(probs))
    else:
        mixed = pi.reshape(target.shape)

        def rows(start: int, stop: int) -> Tensor:
            # in float32: targets and prior may come in different (half) precisions
            return torch.lerp(target[start:stop].float(), mixed[start:stop].float(), rate)

        native = NativeRows(SMOOTH, 0.0, 0.0, t_rows=rows, r=1.0, scratch=True)
    return Job.of(batch, kernel, True, replace(native, tw=weight, indexed=False))
