"""Jobs of the fused path: per-position coefficients and the kernel call of each loss.

Each builder turns a validated :class:`~smoothlab.losses._common.Batch` (logits in the input's
dtype) into a :class:`~smoothlab.losses._fused.Job` whose kernel fetches its chunk's slice of
the coefficients. Class-index smoothing in every variant is ``q = a e_y + b pi``:

=====================  ===========================  ======================  ==============
variant                a                            b                       pi
=====================  ===========================  ======================  ==============
uniform / negative     ``1 - r``                    ``r``                   ``1 / C``
class or example pi    ``1 - r``                    ``r``                   ``pi``
exclusive with pi      ``(1 - r) - b pi_y``         ``r / (1 - pi_y)``      ``pi``
weight, "pytorch"      ``a w_y``                    ``b``                   ``w * pi``
weight, "example"      ``a w_y``                    ``b w_y``               ``pi``
=====================  ===========================  ======================  ==============

and ignored positions get ``a = b = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from smoothlab.losses._common import Batch, compute_dtype, exclusive_split
from smoothlab.losses._fused import Job, Kernel, Layout
from smoothlab.losses._kernels import (
    Chunk,
    Coef,
    penalty_rows,
    relaxation_rows,
    smoothing_rows,
    soft_rows,
)
from smoothlab.losses._native_rows import PENALTY, RELAX, SMOOTH, NativeRows

__all__ = ["index_job", "penalty_job", "relaxation_job", "soft_job"]


Flat = tuple[Tensor | None, Tensor | None, Tensor | None]


def _flat(batch: Batch) -> Flat:
    """Flat ``(index, valid, w_y)``; ``w_y`` is the target weight times the valid mask."""
    index = None if batch.index is None else batch.index.reshape(-1)
    valid = None if batch.valid is None else batch.valid.reshape(-1)
    w_y = batch.target_weight()
    return index, valid, None if w_y is None else w_y.reshape(-1)


def _mask(value: Coef, valid: Tensor | None, dtype: torch.dtype) -> Coef:
    if valid is None:
        return value
    return valid.to(dtype) * value


def _example_weight(flat: Flat, dtype: torch.dtype) -> Coef:
    """Each position's weight: ``w_y``, else the valid mask, else 1."""
    _, valid, w_y = flat
    if w_y is not None:
        return w_y
    return 1.0 if valid is None else valid.to(dtype)


def _job(
    batch: Batch, flat: Flat, kernel: Kernel, temporaries: bool, native: NativeRows | None = None
) -> Job:
    """A mean divides by the total target weight (``w_y``, 0 at ignored positions, or the count)."""
    index, valid, w_y = flat
    denominator = None if w_y is None else w_y.sum()
    if denominator is None and valid is not None:
        denominator = valid.sum().to(compute_dtype(batch.logits.dtype))
    return Job(
        kernel, index, valid, batch.reduction, denominator, batch.unbatched, temporaries, native
    )


def _slice(value: Coef, layout: Layout, start: int, stop: int) -> Coef:
    return layout.positions(value, start, stop) if isinstance(value, Tensor) else value


def index_job(batch: Batch, rate: float, pi: Tensor | None, exclusive: bool, weighting: str) -> Job:
    """Smoothed cross-entropy with class-index targets (``pi``: ``(1, C, 1...)`` or per example)."""
    assert batch.index is not None
    dtype = compute_dtype(batch.logits.dtype)
    flat = _flat(batch)
    _, valid, w_y = flat
    a: Coef = 1.0 - rate
    b: Coef = rate
    if exclusive:
        assert pi is not None
        pi_y, rest = (part.reshape(-1) for part in exclusive_split(batch, pi))
        b = rate / rest
        a = (1.0 - rate) - b * pi_y
    class_w = batch.weight if weighting == "pytorch" else None
    if w_y is not None:
        a = a * w_y
        b = b * w_y if weighting == "example" else _mask(b, valid, dtype)
    else:
        a, b = _mask(a, valid, dtype), _mask(b, valid, dtype)
    per_example = pi is not None and pi.numel() != batch.num_classes
    vector = None if pi is None or per_example else pi.reshape(-1)
    if class_w is not None and not per_example:
        vector = class_w / batch.num_classes if vector is None else vector * class_w
    if rate == 0.0:
        vector, b, per_example = None, 0.0, False
    full = pi if per_example else None
    vector_sum = 1.0 if vector is None else float(vector.sum())

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
        a_c, b_c = _slice(a, layout, start, stop), _slice(b, layout, start, stop)
        return smoothing_rows(chunk, a_c, b_c, prior, total, scale)

    native = NativeRows(SMOOTH, a, b, vector, vector_sum)
    if full is not None:  # the prior's rows as the second term, b as its coefficient
        rows = _rows_of(full.reshape(batch.logits.shape[0], -1))
        native = NativeRows(SMOOTH, a, 0.0, t_rows=rows, tw=class_w, r=b)
        native = replace(native, scratch=not _float32_rows(full))
    return _job(batch, flat, kernel, full is not None, native)


def _float32_rows(tensor: Tensor) -> bool:
    """Whether the rows of an ``(N, C)`` tensor reach the native kernel as views."""
    return tensor.dtype == torch.float32 and tensor.is_contiguous()


def _rows_of(matrix: Tensor) -> Callable[[int, int], Tensor]:
    """Rows ``start:stop`` of an ``(N, C)`` matrix."""
    return lambda start, stop: matrix[start:stop]


def soft_job(batch: Batch, rate: float, pi: Tensor | None) -> Job:
    """Cross-entropy against ``w * ((1 - r) t + r pi)`` for probability targets ``t``.

    ``pi`` (``(1, C, 1...)`` or per example) is in the compute dtype.
    """
    probs = batch.probs
    assert probs is not None
    vector = pi is not None and pi.numel() == batch.num_classes
    weight = batch.weight

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

    # Natively, q = (1 - r) (w . t) + r (w . pi): t as the rows term, pi (or 1/C) as the vector;
    # a per-example pi is mixed into t chunk by chunk.
    target = probs.reshape(probs.shape[0], -1)
    if pi is None or vector:
        prior = None if pi is None else pi.reshape(-1)
        if weight is not None:
            prior = weight / batch.num_classes if prior is None else prior * weight
        mass = 1.0 if prior is None else float(prior.sum())
        native = NativeRows(SMOOTH, 0.0, rate, prior, mass, t_rows=_rows_of(target), r=1.0 - rate)
        native = replace(native, scratch=not _float32_rows(probs))
    else:
        mixed = pi.reshape(target.shape)

        def rows(start: int, stop: int) -> Tensor:
            # in float32: targets and prior may come in different (half) precisions
            return torch.lerp(target[start:stop].float(), mixed[start:stop].float(), rate)

        native = NativeRows(SMOOTH, 0.0, 0.0, t_rows=rows, r=1.0, scratch=True)
    native = replace(native, tw=weight, indexed=False)
    return _job(batch, _flat(batch), kernel, True, native)


def relaxation_job(batch: Batch, alpha: float) -> Job:
    """Label relaxation, weighted by ``w_y``."""
    flat = _flat(batch)
    w = _example_weight(flat, compute_dtype(batch.logits.dtype))

    def kernel(chunk: Chunk, layout: Layout, start: int, stop: int, scale: float | None) -> Tensor:
        return relaxation_rows(chunk, alpha, _slice(w, layout, start, stop), scale)

    return _job(batch, flat, kernel, False, NativeRows(RELAX, w, strength=alpha))


def penalty_job(batch: Batch, beta: float, threshold: float | None) -> Job:
    """The confidence penalty: ``w_y`` (index targets) or PyTorch's weighted soft CE."""
    flat = _flat(batch)
    w = _example_weight(flat, compute_dtype(batch.logits.dtype))
    probs, weight = batch.probs, batch.weight

    def kernel(chunk: Chunk, layout: Layout, start: int, stop: int, scale: float | None) -> Tensor:
        q = None
        if probs is not None:
            q = layout.take(probs, start, stop)
            q = q * weight.view(1, -1, 1) if weight is not None else q
        w_c = _slice(w, layout, start, stop)
        return penalty_rows(chunk, beta, threshold, w_c, q, scale)

    tau = math.nan if threshold is None else threshold
    native = NativeRows(PENALTY, w, strength=beta, tau=tau)
    if probs is not None:  # the cross-entropy against w . t, t read in place
        rows = _rows_of(probs.reshape(probs.shape[0], -1))
        native = replace(native, t_rows=rows, tw=weight, indexed=False)
        native = replace(native, scratch=not _float32_rows(probs))
    return _job(batch, flat, kernel, True, native)
