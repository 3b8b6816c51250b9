"""The confidence penalty (Pereyra et al., 2017): the public function, its specification (the
composition, ``fused=False``) and the coefficient rule of the fused kernels
(``penalty_job``), one hop from each backend."""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from smoothlab._checks import check_real
from smoothlab.losses._common import (
    Batch,
    capped,
    check_logit_options,
    example_weight,
    finish,
    finish_weighted,
    prepare,
    soft_cross_entropy,
    z_loss,
)
from smoothlab.losses._fused import Job, Layout, run_fused, use_fused
from smoothlab.losses._kernels import Chunk, penalty_rows
from smoothlab.losses._native_rows import PENALTY, NativeRows, rows_of, viewable

__all__ = ["confidence_penalty_loss"]


def confidence_penalty_loss(
    input: Tensor,
    target: Tensor,
    beta: float = 0.1,
    *,
    threshold: float | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
    fused: bool = True,
    inplace_grad: bool = False,
) -> Tensor:
    r"""Cross-entropy minus ``beta`` times the entropy of the prediction.

    .. math::
        \ell = \mathrm{CE}(z, y) - \beta\, H(p), \qquad H(p) = -\sum_j p_j \log p_j

    Minimising :math:`\ell` *raises* the entropy: confident (low-entropy) predictions are
    penalised. (Public implementations that add :math:`+\beta H` reward overconfidence; the
    hinged formula as printed in the paper has the same sign slip.) With ``threshold``
    :math:`\tau`, only entropy below :math:`\tau` is penalised:

    .. math::
        \ell = \mathrm{CE}(z, y) + \beta \max(0, \tau - H(p))

    which equals the unhinged loss up to the constant :math:`\beta\tau` wherever
    :math:`H(p) < \tau`, and is plain cross-entropy elsewhere.

    With class-index targets, ``weight`` scales each example's whole loss by :math:`w_y` and
    ``mean`` divides by :math:`\sum_n w_{y_n}` (so ``beta = 0`` is ``F.cross_entropy`` with the
    same weights); with probability targets the cross-entropy term follows PyTorch and the
    penalty is unweighted. Rows with zero probabilities (``-inf`` logits) are handled exactly.

    Args:
        input: logits ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``.
        target: class indices ``(N, d1, ...)`` or probabilities of the input's shape.
        beta: penalty strength, ``beta >= 0``.
        threshold: entropy threshold :math:`\tau \ge 0` in nats (``log K`` is the maximum);
            ``None`` penalises all entropy.
        weight: per-class weights ``(C,)``.
        ignore_index: class index whose positions contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        lse_square_scale: the z-loss scale ``s >= 0`` (PaLM's auxiliary ``s lse^2``).
        softcap: ``c > 0`` caps the logits at ``c tanh(z / c)`` first (Gemma 2; see
            :func:`~smoothlab.losses.label_smoothing_cross_entropy`); ``None``: off.
        fused: compute the gradient in the forward pass (see :mod:`smoothlab.losses`): per row
            ``w [p (Q + gamma (log p + H)) - q]`` with ``gamma = beta`` where penalised;
            ``False`` runs the composition of torch operations.
        inplace_grad: write the gradient into ``input``'s storage (the logits are destroyed).

    Shape:
        - input: ``(N, C, d1, ...)``; target: ``(N, d1, ...)`` or ``(N, C, d1, ...)``.
        - output: scalar, or ``(N, d1, ...)`` with ``reduction="none"``.

    >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> confidence_penalty_loss(logits, torch.tensor([0, 1]), 0.1, reduction="none")
    tensor([0.1792, 0.4539])

    Reference: G. Pereyra, G. Tucker, J. Chorowski, Ł. Kaiser, G. Hinton, "Regularizing Neural
    Networks by Penalizing Confident Output Distributions", ICLR workshop 2017.
    """
    b = check_real("beta", beta, low=0.0)
    tau = None if threshold is None else check_real("threshold", threshold, low=0.0)
    zs, cap = check_logit_options(lse_square_scale, softcap)
    fast = use_fused(fused, inplace_grad, target, weight)
    batch = prepare(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        upcast=not fast,
    )
    if fast:
        return run_fused(
            penalty_job(batch, b, tau).with_options(zs, cap), batch.logits, inplace_grad
        )
    batch = capped(batch, cap)
    extra = z_loss(batch, zs)
    log_p = torch.log_softmax(batch.logits, dim=1)
    p = log_p.exp()
    # 0 log 0 = 0, with the log masked too so that -inf logits send no NaN gradient.
    entropy = -(p * torch.where(p > 0, log_p, 0.0)).sum(dim=1)
    penalty = -entropy if tau is None else torch.clamp(tau - entropy, min=0.0)
    if batch.probs is not None:
        ce = soft_cross_entropy(batch, batch.probs, log_p)
        return finish(batch, ce + b * penalty + extra, None)
    loss = -batch.gather(log_p) + b * penalty
    return finish_weighted(batch, loss, extra)


def penalty_job(batch: Batch, beta: float, threshold: float | None) -> Job:
    """The fused job: ``w_y`` times the penalised loss (class indices), or PyTorch's weighted
    soft cross-entropy against ``T = w . t`` plus the penalty (probability targets ``t``)."""
    w = example_weight(batch)
    probs, weight = batch.probs, batch.weight

    def kernel(chunk: Chunk, layout: Layout, start: int, stop: int, scale: float | None) -> Tensor:
        q = None
        if probs is not None:
            q = layout.take(probs, start, stop)
            q = q * weight.view(1, -1, 1) if weight is not None else q
        return penalty_rows(chunk, beta, threshold, layout.coef(w, start, stop), q, scale)

    tau = math.nan if threshold is None else threshold
    native = NativeRows(PENALTY, w, strength=beta, tau=tau)
    if probs is not None:  # the cross-entropy against w . t, t read in place
        rows = rows_of(probs.reshape(probs.shape[0], -1))
        native = replace(native, t_rows=rows, tw=weight, indexed=False, scratch=not viewable(probs))
    return Job.of(batch, kernel, True, native)
