"""Vocabulary-scale heads: a linear layer fused with a loss, never materialising ``N x V`` logits.

For a hidden state ``h`` ``(N, H)``, a weight ``W`` ``(V, H)`` and a bias ``b`` ``(V,)``, the
logits are ``z = h W^T + b``. The functions here loop over chunks of rows: compute the chunk's
logits, its loss and (in the same buffer) its logit gradient ``G``, then accumulate
``dh = G W``, ``dW += G^T h`` and ``db += sum G`` right away. Autograd keeps only those
gradients; peak extra memory is ``dh + dW + db`` plus one chunk (``LINEAR_CHUNK_BYTES``) instead of
several ``N x V`` buffers. Rows whose target is ``ignore_index`` are dropped before any product
(their loss and gradients are zero), so padding costs nothing; unlike the naive head, whose
``dW = G^T h`` turns a NaN in an ignored row of ``h`` into a NaN weight gradient (``0 * NaN``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from smoothlab import _native, _triton
from smoothlab._checks import (
    check_floating,
    check_int,
    check_real,
    check_reduction,
    check_tensor,
    fail,
    host_reads,
)
from smoothlab.losses._common import Batch, check_logit_options, class_index, compute_dtype
from smoothlab.losses._fused import Job, Layout
from smoothlab.losses.confidence import penalty_job
from smoothlab.losses.relaxation import relaxation_job
from smoothlab.losses.smoothing import index_job

__all__ = [
    "LINEAR_CHUNK_BYTES",
    "linear_confidence_penalty_loss",
    "linear_label_relaxation_loss",
    "linear_label_smoothing_cross_entropy",
]

#: Chunk buffers, in bytes: 64 MiB of logits is 512 rows of a 32000-word vocabulary in float32,
#: enough rows for efficient matrix products and few passes over ``dW`` (halved for the confidence
#: penalty when its PyTorch kernel, which needs a second buffer, runs instead of the native one).
LINEAR_CHUNK_BYTES = 64 << 20


def _prepare(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    ignore_index: int,
    reduction: str,
) -> tuple[Tensor, Batch]:
    """Validate the head's inputs: the ``(M, H)`` rows to compute and their batch.

    Positions whose target is ``ignore_index`` add nothing to the loss or to any gradient, so
    they are dropped here (``index_select``, whose backward puts zeros in their rows of the
    hidden gradient) and skip their share of all three matrix products: the padding of a
    language-model batch costs nothing. A mean over the kept rows is the mean over the
    non-ignored positions. The batch's logits are a placeholder on the meta device.
    """
    check_floating("hidden", hidden, min_dim=1)
    check_floating("weight", weight)
    check_tensor("target", target)
    mode = check_reduction(reduction)
    check_int("ignore_index", ignore_index)
    if mode == "none":
        raise fail("reduction", "'mean' or 'sum' for a fused linear head", reduction)
    size = int(hidden.shape[-1])
    if weight.dim() != 2 or weight.shape[1] != size or weight.shape[0] < 1:
        raise fail("weight", f"of shape (V, {size}) with V >= 1", weight)
    if weight.dtype != hidden.dtype:
        raise fail("weight", f"of the hidden state's dtype {hidden.dtype}", weight, kind=TypeError)
    vocab = int(weight.shape[0])
    if bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != (vocab,)):
        raise fail("bias", f"None or a tensor of shape ({vocab},)", bias)
    if target.is_floating_point() or tuple(target.shape) != tuple(hidden.shape[:-1]):
        raise fail("target", f"class indices of shape {tuple(hidden.shape[:-1])}", target)
    index, valid = class_index(target.reshape(-1), vocab, ignore_index)
    rows = hidden.reshape(-1, size)
    if valid is not None:  # drop the ignored rows (see _prepare's docstring)
        keep = valid.nonzero().squeeze(1)
        rows, index = rows.index_select(0, keep), index.index_select(0, keep)
    dtype = compute_dtype(hidden.dtype)
    logits = torch.empty((index.numel(), vocab), dtype=dtype, device="meta")
    return rows, Batch(logits, index, None, None, None, mode, False)


class _LinearLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, hidden: Tensor, weight: Tensor, bias: Tensor | None, job: Job
    ) -> Tensor:
        wants = ctx.needs_input_grad  # type: ignore[attr-defined]
        dtype = compute_dtype(hidden.dtype)
        h = hidden.reshape(-1, hidden.shape[-1]).to(dtype)
        w = weight.to(dtype)
        b = None if bias is None else bias.to(dtype)
        rows, vocab = h.shape[0], w.shape[0]
        layout = Layout("rows", rows, vocab, 1, dtype)
        # The one dispatch point picks the kernels (every chunk alike); the torch kernels of
        # some losses need a second chunk as scratch, the native and Triton ones none.
        backend = job.served(job.backend(torch.empty((0, vocab), dtype=dtype, device=h.device)))
        temporaries = job.temporaries and backend == "torch"
        budget = LINEAR_CHUNK_BYTES // (2 if temporaries else 1)
        step = max(1, min(rows, budget // (vocab * h.element_size())))
        scale = job.grad_scale(rows)
        grads = _Grads(h, w, b, wants)
        logits = torch.empty(step * vocab, dtype=dtype, device=h.device)
        scratch = torch.empty_like(logits) if temporaries else None
        total = torch.zeros((), dtype=dtype, device=h.device)
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            z = layout.scratch(logits, start, stop)
            spare = None if scratch is None else layout.scratch(scratch, start, stop)
            z2 = z.view(stop - start, vocab)
            if b is None:
                torch.mm(h[start:stop], w.t(), out=z2)
            else:
                torch.addmm(b, h[start:stop], w.t(), out=z2)
            total = total + job.losses(backend, layout, (start, stop), scale, z, z, spare)[1]
            grads.add(z2, start, stop)
        saved = grads.saved(hidden, weight, bias)
        ctx.save_for_backward(*(g for g in saved if g is not None))
        ctx.present = tuple(g is not None for g in saved)  # type: ignore[attr-defined]
        return job.reduce(total, rows)

    @staticmethod
    def backward(
        ctx: FunctionCtx, grad_output: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "smoothlab's fused linear heads compute their gradients in the forward pass and "
                "do not support double backward (create_graph=True)"
            )
        saved = iter(ctx.saved_tensors)  # type: ignore[attr-defined]
        one = host_reads(grad_output) and float(grad_output) == 1.0
        out = [next(saved) if present else None for present in ctx.present]  # type: ignore[attr-defined]
        out = [t if t is None or one else t * grad_output for t in out]
        return out[0], out[1], out[2], None


class _Grads:
    """Gradient accumulators of the head (only those autograd asked for).

    The first chunk writes ``dW`` and ``db`` (``beta = 0``) instead of adding to zeros: one pass
    less over the ``V x H`` weight gradient, which is the largest buffer of the head.
    """

    def __init__(self, h: Tensor, w: Tensor, b: Tensor | None, wants: tuple[bool, ...]) -> None:
        self.h, self.w = h, w
        self.dh = torch.empty_like(h) if wants[0] else None
        self.dw = torch.empty_like(w) if wants[1] else None
        self.db = torch.empty_like(b) if b is not None and wants[2] else None
        self.first = True

    def add(self, grad: Tensor, start: int, stop: int) -> None:
        if self.dh is not None:
            torch.mm(grad, self.w, out=self.dh[start:stop])
        if self.dw is not None:
            if self.first:
                torch.mm(grad.t(), self.h[start:stop], out=self.dw)
            else:
                self.dw.addmm_(grad.t(), self.h[start:stop])
        if self.db is not None:
            if self.first:
                torch.sum(grad, 0, out=self.db)
            else:
                self.db.add_(grad.sum(0))
        self.first = False

    def saved(self, hidden: Tensor, weight: Tensor, bias: Tensor | None) -> list[Tensor | None]:
        if self.first:  # no rows: nothing was written
            for grad in (self.dw, self.db):
                if grad is not None:
                    grad.zero_()
        pairs = [(self.dh, hidden), (self.dw, weight), (self.db, bias)]
        return [
            None if g is None or ref is None else g.view(ref.shape).to(ref.dtype)
            for g, ref in pairs
        ]


def _run(job: Job, hidden: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    loss: Tensor = _LinearLoss.apply(hidden, weight, bias, job)  # type: ignore[no-untyped-call]
    return loss


def linear_label_smoothing_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    smoothing: float = 0.1,
    ignore_index: int = -100,
    reduction: str = "mean",
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    r"""Label-smoothing cross-entropy of a linear head, without the ``N x V`` logits.

    Equals ``label_smoothing_cross_entropy(hidden @ weight.T + bias, target, smoothing)``:

    .. math::
        z = h W^\top + b, \qquad \ell = -(1 - r) \log p_y - \frac{r}{V} \sum_j \log p_j

    with gradients for ``hidden``, ``weight`` and ``bias`` accumulated chunk by chunk in the
    forward pass (see the module docstring). ``softcap`` :math:`c` caps the logits at
    :math:`c \tanh(z / c)` first and ``lse_square_scale`` :math:`s` adds PaLM's z-loss
    :math:`s (\log \sum_j e^{z_j})^2` per row, as in :func:`label_smoothing_cross_entropy`.
    Negative ``r`` is negative label smoothing (Wei et al., 2022; unbounded
    below). Half-precision inputs are computed in float32. On CUDA with Triton, and without
    z-loss or softcap, the head needs only ``lse(z)``, ``z_y`` and the mean logit and runs the
    logits-free kernel of :mod:`smoothlab._triton.cce` instead (half-precision products with
    float32 accumulation; no chunk of logits at all).

    Args:
        hidden: ``(N, H)`` or ``(..., H)`` hidden states.
        weight: ``(V, H)`` output embedding.
        target: ``(N,)`` or ``(...)`` class indices in ``[0, V)`` or ``ignore_index``.
        bias: optional ``(V,)``.
        smoothing: ``r <= 1``.
        ignore_index: target value whose positions contribute nothing.
        reduction: ``"mean"`` or ``"sum"`` (``"none"`` would need the backward pass to redo the
            products; use the unfused composition for it).
        lse_square_scale: the z-loss scale ``s >= 0``: ``s lse(z)^2`` per kept row (PaLM).
        softcap: ``c > 0`` caps the logits at ``c tanh(z / c)`` first (Gemma 2); ``None``: off.

    Shape:
        - output: scalar.

    >>> h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> w = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> linear_label_smoothing_cross_entropy(h, w, torch.tensor([0, 1]), smoothing=0.1)
    tensor(0.4773)

    References: Szegedy et al., CVPR 2016; Wei et al., ICML 2022.
    """
    rate = check_real("smoothing", smoothing, high=1.0)
    options = check_logit_options(lse_square_scale, softcap)
    rows, batch = _prepare(hidden, weight, bias, target, ignore_index, reduction)
    head = _logits_free(rows, bias) if options == (0.0, 0.0) else None
    if head is not None:  # CUDA: lse, z_y and mean z from tiles in registers (issue 16)
        _native.served("smoothing", "triton")
        loss: Tensor = head.linear_smoothing_cross_entropy(
            rows, weight, batch.index, bias=bias, smoothing=rate, reduction=reduction
        )
        return loss
    job = index_job(batch, rate, None, False, "pytorch")
    return _run(job.with_options(*options), rows, weight, bias)


def _logits_free(rows: Tensor, bias: Tensor | None) -> ModuleType | None:
    """The logits-free head (:mod:`smoothlab._triton.cce`: uniform smoothing needs only lse,
    ``z_y`` and the mean logit, so no logits reach memory) when it serves these inputs: CUDA
    tensors with Triton, float32 or half precision, a bias of the same dtype."""
    if rows.dtype not in _triton.DTYPES or _triton.kernels(rows.device) is None:
        return None
    if bias is not None and bias.dtype != rows.dtype:
        return None
    return importlib.import_module("smoothlab._triton.cce")


def linear_label_relaxation_loss(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    alpha: float = 0.1,
    ignore_index: int = -100,
    reduction: str = "mean",
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    r"""Label relaxation (Lienen & Hüllermeier, AAAI 2021) of a linear head, fused.

    Equals ``label_relaxation_loss(hidden @ weight.T + bias, target, alpha)``: zero when
    :math:`p_y \ge 1 - \alpha`, else
    :math:`(1-\alpha)\log\frac{1-\alpha}{p_y} + \alpha\log\frac{\alpha}{1-p_y}`.
    Arguments as :func:`linear_label_smoothing_cross_entropy`, with ``0 < alpha < 1``.

    >>> h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> w = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> linear_label_relaxation_loss(h, w, torch.tensor([0, 1]), alpha=0.1)
    tensor(0.1352)

    Reference: J. Lienen and E. Hüllermeier, "From Label Smoothing to Label Relaxation", 2021.
    """
    a = check_real("alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    options = check_logit_options(lse_square_scale, softcap)
    rows, batch = _prepare(hidden, weight, bias, target, ignore_index, reduction)
    return _run(relaxation_job(batch, a).with_options(*options), rows, weight, bias)


def linear_confidence_penalty_loss(
    hidden: Tensor,
    weight: Tensor,
    target: Tensor,
    *,
    bias: Tensor | None = None,
    beta: float = 0.1,
    threshold: float | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
) -> Tensor:
    r"""The confidence penalty (Pereyra et al., 2017) of a linear head, fused.

    Equals ``confidence_penalty_loss(hidden @ weight.T + bias, target, beta, threshold=...)``:
    :math:`\mathrm{CE} - \beta H(p)`, or :math:`\mathrm{CE} + \beta \max(0, \tau - H(p))`.
    Arguments as :func:`linear_label_smoothing_cross_entropy`, with ``beta >= 0``.

    >>> h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> w = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> linear_confidence_penalty_loss(h, w, torch.tensor([0, 1]), beta=0.1)
    tensor(0.2857)

    Reference: G. Pereyra et al., "Regularizing Neural Networks by Penalizing Confident Output
    Distributions", ICLR workshop 2017.
    """
    b = check_real("beta", beta, low=0.0)
    tau = None if threshold is None else check_real("threshold", threshold, low=0.0)
    options = check_logit_options(lse_square_scale, softcap)
    rows, batch = _prepare(hidden, weight, bias, target, ignore_index, reduction)
    return _run(penalty_job(batch, b, tau).with_options(*options), rows, weight, bias)
