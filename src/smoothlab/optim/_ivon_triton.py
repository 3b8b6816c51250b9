r"""IVON's dispatch to the Triton kernels (:mod:`smoothlab._triton.ivon`) for CUDA parameters.

:class:`~smoothlab.optim.IVON` asks this module first, at each of its three moments (sample,
record, update): the parameters it takes (float32, bfloat16 or float16 on a CUDA device, with
contiguous float32 state, when Triton can be imported) run one kernel launch per parameter group
and dtype; the others go on to the CPU-native or PyTorch paths unchanged. With one sample per
step the record waits for ``step()``, which records and updates in one launch. Nothing here imports
Triton until a CUDA parameter (or the test switch :func:`smoothlab._triton.on_cpu`) asks.

The Philox key of a ``sampled_params`` call is drawn from the optimizer's generator exactly as
:meth:`~smoothlab.optim._ivon_native.NoiseSource.key` draws it (two words in ``[0, 2^32)``), but
stays on the device, so that sampling never waits for the GPU. The noise itself is never stored:
each parameter keeps the key (a device tensor) and stream of its sample, and the record, or the
deferred record of ``step()``, regenerates the noise from them. A deferred record keeps the key of
its own sample, so a sample drawn between the block and ``step()`` (an evaluation at a sample,
``predict``) cannot change it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable, Iterable, Sequence
from types import ModuleType
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from smoothlab import _triton
from smoothlab.optim._ivon_state import Buffers

__all__ = ["record", "sample", "takes", "update"]

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_MODULE: list[ModuleType | None] = []
#: The ``(key, stream)`` of each parameter's last Triton sample, by parameter identity.
_DRAWN: WeakIdKeyDictionary = WeakIdKeyDictionary()
#: ``(gradient, key, stream)`` of the records that wait for ``step()`` (one sample per step).
_DEFERRED: WeakIdKeyDictionary = WeakIdKeyDictionary()
_Deferred = tuple[Tensor, Tensor, int]
_T = TypeVar("_T")


class _IVON(Protocol):
    """What the dispatch reads of :class:`~smoothlab.optim.IVON`."""

    param_groups: list[dict[str, Any]]
    state: Any
    mc_samples: int
    _counts: dict[Tensor, int]
    _buffers: dict[Tensor, Buffers]

    def _buffers_for(self, p: Tensor) -> Buffers: ...

    def _mean(self, p: Tensor) -> Tensor: ...

    def _own_noise(self) -> bool: ...


def _kernels(device: torch.device) -> ModuleType | None:
    """The Triton IVON module for tensors on ``device``, or ``None``."""
    if _triton.kernels(device) is None:  # not CUDA (nor the test switch), or no Triton
        return None
    if not _MODULE:
        try:
            _MODULE.append(importlib.import_module("smoothlab._triton.ivon"))
        except ImportError:  # pragma: no cover - rows.py imported, so triton is present
            _MODULE.append(None)
    return _MODULE[0]


def takes(p: Tensor, state: dict[str, Any]) -> bool:
    """Whether parameter ``p`` and its state run the Triton kernels.

    The device comes first: a CPU parameter (outside the test switch) is turned away before any
    of its tensors is inspected, since IVON asks for every parameter at every sample, record and
    update."""
    if _kernels(p.device) is None:
        return False
    tensors = [p, state["hess"], state["momentum"], *([state["mean"]] if "mean" in state else [])]
    return (
        p.dtype in _DTYPES
        and all(t.is_contiguous() and t.shape == p.shape and t.device == p.device for t in tensors)
        and all(t.dtype == torch.float32 for t in tensors[1:])
    )


def _served(params: Iterable[Tensor]) -> bool:
    """Whether the kernels serve the device of any of ``params``: asked once per device, so that
    an optimizer of CPU parameters leaves each moment's dispatch after one question."""
    return any(_kernels(device) is not None for device in {p.device for p in params})


def _batches(items: Sequence[_T], by: Callable[[_T], Hashable]) -> list[list[_T]]:
    """``items`` split by ``by(item)``: one launch serves one dtype (and one noise key)."""
    out: dict[Hashable, list[_T]] = {}
    for item in items:
        out.setdefault(by(item), []).append(item)
    return list(out.values())


def sample(opt: _IVON, generator: torch.Generator) -> dict[Tensor, Tensor]:
    r"""Draw :math:`\theta` for every parameter the kernels take; returns ``{p: theta}``."""
    drawn: dict[Tensor, Tensor] = {}
    key: Tensor | None = None
    params = [(g, p) for g in opt.param_groups for p in g["params"]]
    if not _served(p for _, p in params):
        return drawn
    chosen = [(s, g, p) for s, (g, p) in enumerate(params) if p.requires_grad]
    chosen = [(s, g, p) for s, g, p in chosen if takes(p, opt.state[p])]
    for group in opt.param_groups:
        mine = [(s, p) for s, g, p in chosen if g is group]
        for batch in _batches(mine, lambda sp: sp[1].dtype):
            if key is None:  # as NoiseSource.key() draws it, left on the device
                words = torch.randint(0, 2**32, (2,), dtype=torch.int64, generator=generator,
                                      device=generator.device)  # fmt: skip
                key = words.to(batch[0][1].device)
            module = _kernels(batch[0][1].device)
            assert module is not None  # takes() checked it
            buffers = [opt._buffers_for(p) for _, p in batch]
            module.sample_(
                [opt._mean(p) for _, p in batch], [opt.state[p]["hess"] for _, p in batch],
                [b.sample for b in buffers], [s for s, _ in batch], key, ess=group["ess"],
                weight_decay=group["weight_decay"],
            )  # fmt: skip
            drawn.update((p, b.sample) for (_, p), b in zip(batch, buffers, strict=True))
            for s, p in batch:
                _DRAWN[p] = (key, s)
    return drawn


def record(opt: _IVON, swapped: Sequence[tuple[Tensor, dict[str, Any], Tensor]]) -> set[Tensor]:
    """Record the sample's gradients of the parameters the kernels take; returns them.

    With one sample per step the gradient is only kept, with the sample's key and stream:
    :func:`update` records and updates in one pass (IVON refuses a gradient written between the
    block and ``step()``). Noise injected through ``IVON._fill_noise`` was sampled (and is
    recorded) by the PyTorch path, which stores it.
    """
    done: set[Tensor] = set()
    if not opt._own_noise() or not _served(p for p, _, _ in swapped):
        return done
    for group in opt.param_groups:
        mine = [p for p, g, _ in swapped if g is group and _recordable(p, opt.state[p])]
        if opt.mc_samples == 1:
            for p in mine:
                _DEFERRED[p] = (p.grad, *_DRAWN[p])
                opt._counts[p] = 1
            done.update(mine)
            continue
        for params in _batches(mine, _record_batch):
            module = _kernels(params[0].device)
            assert module is not None
            states, buffers = [opt.state[p] for p in params], [opt._buffers[p] for p in params]
            module.record_(
                [p.grad.contiguous() for p in params if p.grad is not None],
                [s["hess"] for s in states], [s["momentum"] for s in states],
                [b.diff_sum for b in buffers], [opt._counts.get(p, 0) == 0 for p in params],
                [_DRAWN[p][1] for p in params], _DRAWN[params[0]][0], ess=group["ess"],
                weight_decay=group["weight_decay"], beta1=group["beta1"],
                share=1.0 / opt.mc_samples,
            )  # fmt: skip
            for p in params:
                opt._counts[p] = opt._counts.get(p, 0) + 1
            done.update(params)
    return done


def _record_batch(p: Tensor) -> tuple[torch.dtype, int]:
    """A launch's batch: the gradient's dtype and the identity of the sample's key (one for all
    of a block's parameters)."""
    assert p.grad is not None  # _recordable() checked it
    return p.grad.dtype, id(_DRAWN[p][0])


def _recordable(p: Tensor, state: dict[str, Any]) -> bool:
    grad = p.grad
    return grad is not None and not grad.is_sparse and grad.dtype in _DTYPES and takes(p, state)


def update(opt: _IVON, group: dict[str, Any], params: list[Tensor], lr: float) -> list[Tensor]:
    """Update the group's parameters that the kernels take; returns the others."""
    if not _served(params):
        return params
    mine = [p for p in params if takes(p, opt.state[p])]
    grads: dict[Tensor, _Deferred] = {p: _DEFERRED[p] for p in mine if p in _DEFERRED}
    for p in grads:
        del _DEFERRED[p]
    for chunk in _batches(mine, lambda p: p.dtype):
        states = [opt.state[p] for p in chunk]
        for state in states:
            state["step"] += 1
        debias = [1.0 / (1.0 - group["beta1"] ** s["step"]) for s in states]
        module = _kernels(chunk[0].device)
        assert module is not None
        if chunk[0] in grads:  # one sample per step: every parameter's record was deferred
            _record_and_update(opt, group, list(zip(chunk, debias, strict=True)), grads, lr)
            continue
        module.update_(
            [opt._mean(p) for p in chunk], [s["hess"] for s in states],
            [s["momentum"] for s in states], [opt._buffers[p].diff_sum for p in chunk],
            [p.data for p in chunk], debias,
            [opt.mc_samples - opt._counts[p] for p in chunk], ess=group["ess"],
            weight_decay=group["weight_decay"], beta2=group["beta2"], lr=lr,
            clip_radius=group["clip_radius"], samples=opt.mc_samples,
        )  # fmt: skip
        for p in chunk:
            opt._buffers[p].stale()  # sigma of the PyTorch path is out of date
    done = set(mine)
    return [p for p in params if p not in done]


def _record_and_update(
    opt: _IVON,
    group: dict[str, Any],
    chunk: list[tuple[Tensor, float]],
    grads: dict[Tensor, _Deferred],
    lr: float,
) -> None:
    """The deferred record and the update of one sample per step, for ``(parameter, debias)``
    pairs and their ``(gradient, key, stream)``: one launch per gradient dtype (and key)."""
    for batch in _batches(chunk, lambda pair: (grads[pair[0]][0].dtype, id(grads[pair[0]][1]))):
        params = [p for p, _ in batch]
        states = [opt.state[p] for p in params]
        module = _kernels(params[0].device)
        assert module is not None
        module.step_(
            [opt._mean(p) for p in params], [s["hess"] for s in states],
            [s["momentum"] for s in states], [grads[p][0].contiguous() for p in params],
            [p.data for p in params], [debias for _, debias in batch],
            [grads[p][2] for p in params], grads[params[0]][1], ess=group["ess"],
            weight_decay=group["weight_decay"], beta1=group["beta1"], beta2=group["beta2"],
            lr=lr, clip_radius=group["clip_radius"],
        )  # fmt: skip
