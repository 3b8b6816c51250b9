"""The fused path: chunking, layouts, dtypes, reduction, and the autograd Function.

A fused loss computes its gradient while computing its value (one sweep of the kernels in
:mod:`smoothlab.losses._kernels`) and saves only that gradient for the backward pass, which then
returns it (times ``grad_output``). The gradient is the only ``N x C`` buffer; with
``inplace_grad=True`` it is written into the logits' own storage, so there is none.

Kernels: float32 ``(N, C)`` logits (and half-precision ones, through float32 chunk copies) run
the compiled row kernels of :mod:`smoothlab.losses._native_rows` when :mod:`smoothlab._native`
could build them: one chunk, rows split over threads, the loss sum taken in the kernel (or,
when the logits or the prior rows are converted per call, chunks of ``GRAIN_ELEMENTS`` logits
that stay in the L3 cache between the conversion and the kernel). Everything else (spatial
positions, float64, no compiler, ``SMOOTHLAB_NATIVE=0``) runs the PyTorch kernels of
:mod:`smoothlab.losses._kernels` in the chunks described below; both compute the same numbers.

Layouts (class dimension 1 throughout): ``(N, C)`` logits are processed as ``(N, C, 1)`` rows
(a view when contiguous), except with few classes (``C <= SMALL_C``) on the PyTorch kernels,
where each chunk is copied
transposed to ``(1, C, n)`` so that every reduction over classes vectorises across examples
(measured at 65536 x 10: row-wise reductions over 10 classes cost more than the two copies);
``(N, C, d1, ...)`` logits are viewed as ``(N, C, S)``. Chunks:

* at most ``GRAIN`` (ATen's parallel grain) positions per chunk, so that the per-position work
  (gathers, logs, the loss arithmetic) runs serially and only the ``N x C`` sweeps pay for a
  parallel region. On the shared 2-core machines a parallel region costs milliseconds when the
  cores are oversubscribed, which dominates small-class batches such as 65536 x 10;
* at most ``CHUNK_BYTES`` of compute-dtype logits per chunk when a kernel needs temporaries (a
  converted or non-contiguous copy, a per-example prior, soft targets, the entropy term). Without
  temporaries the gradient buffer is the only memory written and the batch needs no splitting.
  8 MiB: the chunk's logits, gradient and scratch stay in the 32 MiB L3 cache, so the kernel's
  later sweeps read cache, not memory; and it is below glibc's largest mmap threshold (32 MiB),
  so chunk buffers freed by one call are reused by the next instead of being mapped and
  page-faulted again (measured: 30 % of a call at 8192 x 1000). Measured for the confidence
  penalty at 8192 x 32000: 1.39x our smoothing with 8 MiB chunks, 2.04x with 64 MiB chunks
  (one run, 2 threads, load 1.5). Each chunk costs a few parallel regions, which cost
  milliseconds when the cores are oversubscribed; then fewer, larger chunks win.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from smoothlab import _native, _triton
from smoothlab._checks import Reduction, check_bool, fail, host_reads
from smoothlab.losses._common import Batch, Coef, compute_dtype
from smoothlab.losses._kernels import Chunk, with_logit_options
from smoothlab.losses._native_rows import FAMILIES, GRAIN_ELEMENTS, NativeRows, kernels

__all__ = [
    "CHUNK_BYTES",
    "GRAIN",
    "SMALL_C",
    "Backend",
    "Job",
    "Layout",
    "run_fused",
    "use_fused",
]

CHUNK_BYTES = 8 << 20
SMALL_C = 32
GRAIN = 32768

Kernel = Callable[[Chunk, "Layout", int, int, "float | None"], Tensor]
#: The kernels that serve a call: Triton (CUDA), the C rows (CPU) or the PyTorch row kernels.
Backend = Literal["triton", "native", "torch"]


@dataclass(frozen=True)
class Layout:
    """How ``(N, C, ...)`` tensors map to ``(B, C, S)`` kernel chunks."""

    kind: str  # "rows", "cols" or "spatial"
    num: int
    classes: int
    inner: int
    dtype: torch.dtype

    @staticmethod
    def of(logits: Tensor, native: bool = False) -> Layout:
        """The layout of ``logits``; ``native``: rows for every class count (the C kernels)."""
        num, classes = int(logits.shape[0]), int(logits.shape[1])
        inner = math.prod(logits.shape[2:])
        wide = classes > SMALL_C or native
        kind = "spatial" if logits.dim() > 2 else "rows" if wide else "cols"
        return Layout(kind, num, classes, inner, compute_dtype(logits.dtype))

    def direct(self, tensor: Tensor) -> bool:
        """Whether chunks of ``tensor`` are views (no conversion, no copy)."""
        return self.kind != "cols" and tensor.dtype == self.dtype and tensor.is_contiguous()

    def take(self, tensor: Tensor, start: int, stop: int, into: Tensor | None = None) -> Tensor:
        """Rows ``start:stop`` of an ``(N, C, ...)`` tensor as a ``(B, C, S)`` chunk.

        With ``into`` (a flat buffer), the chunk is always a copy there (the kernel may then
        overwrite it); otherwise a view where possible.
        """
        if self.kind == "cols":
            view = tensor[start:stop].t().unsqueeze(0)
        else:
            view = tensor[start:stop].reshape(stop - start, self.classes, self.inner)
        if into is None:
            return view.to(self.dtype).contiguous()
        return self.scratch(into, start, stop).copy_(view)

    def scratch(self, buffer: Tensor, start: int, stop: int) -> Tensor:
        """The first ``stop - start`` rows of a flat buffer, shaped as a chunk."""
        size = (stop - start) * self.classes * self.inner
        if self.kind == "cols":
            return buffer[:size].view(1, self.classes, stop - start)
        return buffer[:size].view(stop - start, self.classes, self.inner)

    def empty(self, logits: Tensor) -> Tensor:
        """A gradient buffer for ``(N, C, ...)`` logits; classes-major storage for ``cols``."""
        if self.kind == "cols":
            return logits.new_empty((self.classes, self.num)).t()
        return torch.empty_like(logits, memory_format=torch.contiguous_format)

    def target(self, out: Tensor, start: int, stop: int) -> Tensor | None:
        """A chunk view of the gradient buffer the kernel can write, or ``None`` (copy back)."""
        if out.dtype != self.dtype:
            return None
        if self.kind == "cols":
            if out.stride() != (1, self.num):
                return None
            return out.t()[:, start:stop].unsqueeze(0)
        if not out.is_contiguous():
            return None
        return out[start:stop].view(stop - start, self.classes, self.inner)

    def put(self, out: Tensor, start: int, stop: int, grad: Tensor) -> None:
        """Write a ``(B, C, S)`` gradient chunk back into rows ``start:stop`` of ``out``."""
        if self.kind == "cols":
            out[start:stop].copy_(grad[0].t())
        else:
            out[start:stop].view(stop - start, self.classes, self.inner).copy_(grad)

    def coef(self, value: Coef, start: int, stop: int) -> Coef:
        """The chunk's slice of a per-position coefficient (a number stays a number)."""
        return self.positions(value, start, stop) if isinstance(value, Tensor) else value

    def positions(self, vector: Tensor, start: int, stop: int) -> Tensor:
        """The chunk's slice of a flat per-position vector, shaped ``(B, 1, S)``."""
        part = vector[start * self.inner : stop * self.inner]
        if self.kind == "cols":
            return part.view(1, 1, stop - start)
        return part.view(stop - start, 1, self.inner)


@dataclass(frozen=True)
class Job:
    """A loss to run: its kernel, whether it needs temporaries, and the reduction.

    ``kernel`` is ``None`` for a loss served by the C and Triton kernels only
    (:func:`smoothlab.losses._served.run_or_compose` runs its composition wherever they do
    not serve).
    """

    kernel: Kernel | None
    index: Tensor | None  # flat (N * S,) int64 class indices
    valid: Tensor | None  # flat (N * S,) bool
    reduction: Reduction
    denominator: Tensor | None  # total weight of a mean (None: number of positions)
    unbatched: bool
    temporaries: bool
    native: NativeRows | None = None

    @staticmethod
    def of(batch: Batch, kernel: Kernel | None, temporaries: bool, native: NativeRows) -> Job:
        """The job of a loss's kernels on ``batch``; a mean divides by the total target weight
        (``w_y``, 0 at ignored positions), else by the number of non-ignored positions."""
        w_y, valid = batch.flat_weight(), batch.flat_valid()
        denominator = None if w_y is None else w_y.sum()
        if denominator is None and valid is not None:
            denominator = valid.sum().to(compute_dtype(batch.logits.dtype))
        index, mode = batch.flat_index(), batch.reduction
        return Job(kernel, index, valid, mode, denominator, batch.unbatched, temporaries, native)

    def with_options(self, lse_square_scale: float, softcap: float) -> Job:
        """This job with the z-loss ``lse_square_scale lse^2`` and the tanh ``softcap`` (0:
        none), which every backend applies (see :meth:`losses` for the PyTorch kernels)."""
        if self.native is None or (lse_square_scale == 0.0 and softcap == 0.0):
            return self
        native = replace(self.native, zloss=lse_square_scale, softcap=softcap)
        return replace(self, native=native)

    def backend(self, logits: Tensor) -> Backend:
        """The one dispatch point of the fused losses: which kernels run these ``(N, C, ...)``
        logits (or a linear head's ``(B, V)`` chunk). Triton for CUDA tensors (see
        :mod:`smoothlab._triton`), the C rows for 2-D float32 (or half) CPU logits when they are
        built (see :mod:`smoothlab._native`), the PyTorch row kernels for everything else."""
        if self.native is not None and _triton.takes(logits):
            return "triton"
        compute = compute_dtype(logits.dtype)
        if self.native is not None and NativeRows.usable(logits.device, compute, logits.dim()):
            return "native"
        return "torch"

    def served(self, backend: Backend) -> Backend:
        """Record for :func:`smoothlab._native.status` that ``backend`` ran this job's family."""
        if self.native is not None:
            _native.served(FAMILIES[self.native.kind], backend)
        return backend

    def losses(
        self,
        backend: Backend,
        layout: Layout,
        rows: tuple[int, int],
        scale: float | None,
        z: Tensor,
        g: Tensor,
        scratch: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Run ``backend``'s kernel on the chunk of rows ``start, stop = rows`` (see
        :class:`Chunk`): the ``(B, 1, S)`` losses, 0 at ignored positions, and their sum."""
        start, stop = rows
        y = None if self.index is None else layout.positions(self.index, start, stop)
        valid = None if self.valid is None else layout.positions(self.valid, start, stop)
        if backend == "triton":  # a linear head's (B, V, 1) chunk
            return self._triton_rows(z, g, y, valid, start, scale)
        native = backend == "native" and z.shape[2] == 1 and z.dtype == torch.float32
        if native and z.is_contiguous() and g.is_contiguous() and kernels() is not None:
            assert self.native is not None
            return self.native.run(z, g, y, valid, start, stop, scale)
        zs, cap = (0.0, 0.0) if self.native is None else (self.native.zloss, self.native.softcap)

        def kernel(chunk: Chunk) -> Tensor:
            assert self.kernel is not None  # run_or_compose sends no such job here
            return self.kernel(chunk, layout, start, stop, scale)

        loss = with_logit_options(kernel, Chunk(z, g, y, scratch), valid, scale, zs, cap)
        if valid is not None:
            loss = loss.masked_fill(~valid, 0.0)
        return loss, loss.sum()

    def _triton_rows(
        self,
        z: Tensor,
        g: Tensor,
        y: Tensor | None,
        valid: Tensor | None,
        start: int,
        scale: float | None,
    ) -> tuple[Tensor, Tensor]:
        """A ``(B, C, 1)`` chunk of rows ``start:`` in one Triton launch; as :meth:`losses`."""
        module = _triton.kernels(z.device)
        assert module is not None and self.native is not None
        flat = [None if t is None else t.reshape(-1) for t in (y, valid)]
        zs, cap = self.native.zloss, self.native.softcap or None
        z, g = z.squeeze(2), g.squeeze(2)
        loss = module.run_rows(
            self.native, z, g, *flat, scale, start=start, lse_square_scale=zs, softcap=cap
        )
        return loss.view(-1, 1, 1), loss.sum()

    def reduce(self, total: Tensor, count: int) -> Tensor:
        """A ``sum`` or ``mean`` of the summed losses over ``count`` positions."""
        if self.reduction == "sum":
            return total
        return total / (count if self.denominator is None else self.denominator)

    def grad_scale(self, count: int) -> float:
        """d reduced / d summed loss over ``count`` positions (0 for a mean over nothing)."""
        if self.reduction != "mean":
            return 1.0
        total = float(count if self.denominator is None else self.denominator)
        return 0.0 if total == 0 else 1.0 / total

    def divisor(self) -> Tensor | None:
        """The denominator of a mean whose gradient scale stays on the device, or ``None``.

        Where reading the denominator on the host would synchronise
        (:func:`~smoothlab._checks.host_reads`), the kernels write the gradient of the sum and
        the backward pass divides ``grad_output`` by it instead: on a GPU the backward
        multiplies by ``grad_output`` anyway, so this costs no extra sweep.
        """
        if self.reduction != "mean" or self.denominator is None:
            return None
        return None if host_reads(self.denominator) else self.denominator


def _steps(job: Job, layout: Layout, direct: bool, grad: bool, native: bool) -> int:
    """Rows per chunk: bounded by ``GRAIN`` positions and ``CHUNK_BYTES`` of temporaries.

    The native kernels need neither (they split the rows over threads themselves): one chunk,
    unless the logits or the prior rows need a float32 copy; then chunks of ``GRAIN_ELEMENTS``
    logits (8 MiB, read back from the L3 cache; the copy is the parallel part, the kernel runs
    in one thread per chunk).
    """
    if native:
        assert job.native is not None
        if direct and not job.native.scratch:
            return max(1, layout.num)
        return max(1, GRAIN_ELEMENTS // layout.classes)
    step = max(1, GRAIN // max(layout.inner, 1))
    if job.temporaries or not direct or not grad:
        row_bytes = layout.classes * layout.inner * torch.finfo(layout.dtype).bits // 8
        step = min(step, max(1, CHUNK_BYTES // max(row_bytes, 1)))
    return step


def _sweep(
    job: Job, logits: Tensor, out: Tensor | None, scale: float | None, shape: tuple[int, ...]
) -> Tensor:
    """Run the kernel over all chunks, fill ``out`` with the scaled gradient, reduce the loss."""
    backend = job.served(job.backend(logits))
    if backend == "triton":
        return _triton_sweep(job, logits, out, scale, shape)
    native = backend == "native"
    layout = Layout.of(logits, native)
    direct = layout.direct(logits)
    step = _steps(job, layout, direct, out is not None, native)
    keep = job.reduction == "none"
    device = logits.device
    losses = torch.empty(
        layout.num * layout.inner if keep else 0, dtype=layout.dtype, device=device
    )
    total = torch.zeros((), dtype=layout.dtype, device=device)
    size = min(step, layout.num) * layout.classes * layout.inner
    # Chunk buffers, allocated once per call: a copy of the logits (when they cannot be viewed)
    # and a scratch chunk for the kernels' temporaries (or the gradient, forward only).
    copies = None if direct else torch.empty(size, dtype=layout.dtype, device=device)
    spare = None
    if (job.temporaries or out is None) and not native:
        spare = torch.empty(size, dtype=layout.dtype, device=device)
    for start in range(0, layout.num, step):
        stop = min(start + step, layout.num)
        z = layout.take(logits, start, stop, copies)
        scratch = None if spare is None else layout.scratch(spare, start, stop)
        view = None if out is None else layout.target(out, start, stop)
        if out is None:  # forward only: the torch kernels use scratch as g, the native none
            g, scratch = z if scratch is None else scratch, None
        else:
            g = z if view is None else view
        loss, subtotal = job.losses(backend, layout, (start, stop), scale, z, g, scratch)
        if keep:
            losses[start * layout.inner : stop * layout.inner] = loss.reshape(-1)
        else:
            total = total + subtotal
        if out is not None and view is None:
            layout.put(out, start, stop, g)
    if keep:
        return losses.view(() if job.unbatched else shape)
    return job.reduce(total, math.prod(shape))


def _triton_sweep(
    job: Job, logits: Tensor, out: Tensor | None, scale: float | None, shape: tuple[int, ...]
) -> Tensor:
    """All rows in one Triton launch (logits read in their dtype, ``out`` of any strides)."""
    module = _triton.kernels(logits.device)
    assert module is not None and job.native is not None
    native, index, valid = job.native, job.index, job.valid
    zs, cap = native.zloss, native.softcap or None
    losses: Tensor = module.run_rows(
        native, logits, out, index, valid, scale, lse_square_scale=zs, softcap=cap
    )
    if job.reduction == "none":
        return losses.view(() if job.unbatched else shape)
    return job.reduce(losses.sum(), math.prod(shape))


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, logits: Tensor, job: Job, inplace: bool) -> Tensor:
        shape = (int(logits.shape[0]), *logits.shape[2:])
        rows = job.backend(logits) != "torch"  # the C and Triton kernels take (N, C) rows
        out = logits if inplace else Layout.of(logits, rows).empty(logits)
        divisor = job.divisor()
        scale = 1.0 if divisor is not None else job.grad_scale(math.prod(shape))
        loss = _sweep(job, logits, out, scale, shape)
        ctx.save_for_backward(out)
        ctx.reduction = job.reduction  # type: ignore[attr-defined]
        ctx.divisor = divisor  # type: ignore[attr-defined]
        ctx.inplace = inplace  # type: ignore[attr-defined]
        return loss

    @staticmethod
    def backward(ctx: FunctionCtx, grad_output: Tensor) -> tuple[Tensor, None, None]:
        if torch.is_grad_enabled():
            # create_graph=True: a constant gradient would silently drop second-order terms.
            raise RuntimeError(
                "smoothlab's fused losses compute their gradient in the forward pass and do not "
                "support double backward (create_graph=True); pass fused=False to use the "
                "composition of differentiable torch operations"
            )
        (grad,) = ctx.saved_tensors  # type: ignore[attr-defined]
        divisor: Tensor | None = ctx.divisor  # type: ignore[attr-defined]
        go = grad_output
        if divisor is not None:  # a mean over nothing has gradient 0, as grad_scale's
            go = go * torch.where(divisor != 0, 1.0 / divisor, 0.0).to(go.dtype)
        if ctx.reduction == "none":  # type: ignore[attr-defined]
            go = go.to(grad.dtype)
            go = go.unsqueeze(1) if go.dim() > 0 else go
        elif divisor is None and host_reads(go) and float(go) == 1.0:
            return grad, None, None
        # a scalar factor stays float32: half-precision products are computed in float32
        if ctx.inplace:  # type: ignore[attr-defined]
            return grad.mul_(go), None, None  # the logits' storage holds the gradient
        return grad * go, None, None


def run_fused(job: Job, logits: Tensor, inplace: bool) -> Tensor:
    """The reduced loss of ``job`` on ``(N, C, ...)`` logits, differentiable w.r.t. them."""
    if torch.is_grad_enabled() and logits.requires_grad:
        loss: Tensor = _FusedLoss.apply(logits, job, inplace)  # type: ignore[no-untyped-call]
        return loss
    shape = (int(logits.shape[0]), *logits.shape[2:])
    return _sweep(job, logits, None, None, shape)


def use_fused(fused: object, inplace_grad: object, *others: object) -> bool:
    """Validate the two switches; ``False`` where the composition must run instead.

    The composition runs when asked (``fused=False``), while ``torch.compile`` traces (the
    compiler fuses the composition itself), and when a tensor other than the logits (a prior,
    probability targets, weights) requires a gradient, which the fused kernels do not compute.
    """
    check_bool("fused", fused)
    check_bool("inplace_grad", inplace_grad)
    if inplace_grad and not fused:
        raise fail("inplace_grad", "False when fused=False", inplace_grad)
    if not fused or torch.compiler.is_compiling():
        return False
    grads = torch.is_grad_enabled()
    return not any(isinstance(t, Tensor) and t.requires_grad and grads for t in others)
