"""Losses served by the C and Triton row kernels only, with their composition everywhere else.

Focal loss, GCE, SCE and the logit regularisers (``losses_kinds.h`` beside ``losses.c``, and
:mod:`smoothlab._triton.rows_family`) have no PyTorch row kernel: where :meth:`Job.backend
<smoothlab.losses._fused.Job.backend>` picks neither the C rows (2-D float32 or half CPU logits)
nor Triton (CUDA), their composition of torch operations runs, which is also their
specification (``fused=False``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import Tensor

from smoothlab.losses._common import Batch, compute_dtype
from smoothlab.losses._fused import Job, run_fused

__all__ = ["run_or_compose", "upcast"]


def upcast(batch: Batch) -> Batch:
    """The batch with its logits and probability targets in the compute dtype (as
    ``prepare(upcast=True)`` returns it)."""
    dtype = compute_dtype(batch.logits.dtype)
    probs = None if batch.probs is None else batch.probs.to(dtype)
    return replace(batch, logits=batch.logits.to(dtype), probs=probs)


def run_or_compose(
    job: Job, batch: Batch, inplace: bool, composition: Callable[[Batch], Tensor]
) -> Tensor:
    """:func:`run_fused` where the C or Triton kernels serve ``batch``, else
    ``composition(upcast(batch))``; :func:`smoothlab._native.status` records which ran
    (``"torch"`` for the composition). Where the composition runs, ``inplace`` writes nothing."""
    if job.served(job.backend(batch.logits)) == "torch":
        return composition(upcast(batch))
    return run_fused(job, batch.logits, inplace)
