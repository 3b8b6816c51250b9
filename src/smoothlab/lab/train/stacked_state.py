"""The state of a stack (:mod:`smoothlab.lab.train.stacked`): its runs' stacked parameters and
data, the stacked forward, the runs' losses and gradients, and the optimizer kind's update.

The forward takes each run's parameters stacked along a leading run dimension ``R`` and each
run's own inputs ``(R, B, ...)``: a plain MLP (:func:`mlp_layers`) as feature-major batched
products (:func:`mlp_forward`), any other stackable model through ``torch.func.vmap`` of
``functional_call``; no operation mixes runs, so the gradient of the summed losses is, in slice
``i``, run ``i``'s own gradient.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from smoothlab.lab.plan.objectives import cross_entropy
from smoothlab.lab.train.loop import _Trainer  # the solo trainer: one definition of a run
from smoothlab.lab.train.optimizers import Batch
from smoothlab.lab.train.stacked_objectives import StackedObjective

__all__ = ["Stack", "Update", "mlp_forward", "mlp_layers"]

# Rows (over all runs) per evaluation chunk: its hidden activations stay in cache (the per-epoch
# evaluation of 138 Twonorm runs took 2.5x less CPU than with 2048 rows per run).
_EVAL_ROWS = 4096


def mlp_layers(model: nn.Module) -> tuple[str, ...] | None:
    """The layer kinds of a plain MLP (``nn.Sequential`` of Flatten, Linear and ReLU), which the
    stack runs as batched matrix products; None for any other model (run under ``vmap``)."""
    kinds = {nn.Flatten: "flatten", nn.Linear: "linear", nn.ReLU: "relu"}
    layers = tuple(kinds.get(type(m), "") for m in model.children())
    if type(model).forward is not nn.Sequential.forward or "" in layers:
        return None
    flat = [m for m in model.children() if isinstance(m, nn.Flatten)]
    if any((f.start_dim, f.end_dim) != (1, -1) for f in flat):
        return None
    return layers


def mlp_forward(layers: tuple[str, ...], params: dict[str, Tensor], x: Tensor) -> Tensor:
    """The logits ``(R, B, K)`` of ``R`` stacked MLPs (:func:`mlp_layers`; parameters
    ``"{i}.weight"`` ``(R, out, in)`` and ``"{i}.bias"`` ``(R, out)`` of layer ``i``) on their
    own inputs ``x`` ``(R, B, ...)``, run feature-major: each layer is
    ``h^T <- W h^T + b`` on ``(R, features, B)``, the logits a transposed view of
    ``(R, K, B)``.

    In the usual row-major ``x W^T`` a layer with few outputs (the 2-10 classes of the last
    one) is a product with a narrow result, and its weight gradient one with a narrow result
    too: 5-7x slower per operation on the CPU than their feature-major twins. A whole step of
    the demo's MLP took 1.34x less time feature-major (``benchmarks/RESULTS.md``). A linear
    layer on unflattened inputs acts on their last axis, as ``nn.Linear`` does, row-major.

    >>> layers, params = ("linear", "relu", "linear"), {
    ...     "0.weight": torch.ones(2, 3, 4), "0.bias": torch.zeros(2, 3),
    ...     "2.weight": torch.ones(2, 5, 3), "2.bias": torch.arange(2.0)[:, None].expand(2, 5)}
    >>> logits = mlp_forward(layers, params, torch.ones(2, 7, 4))
    >>> logits.shape, logits[:, 0, 0].tolist()
    (torch.Size([2, 7, 5]), [12.0, 13.0])
    """
    row_major = True  # until the first product: x is (R, B, ...)
    for i, kind in enumerate(layers):
        if kind == "flatten":
            x = x.flatten(2) if row_major else x  # feature-major features are flat already
        elif kind == "relu":
            x = torch.relu(x)
        else:
            weight, bias = params[f"{i}.weight"], params.get(f"{i}.bias")
            if row_major and x.dim() > 3:  # nn.Linear on the last axis of unflattened inputs
                rows = x.reshape(x.shape[0], -1, x.shape[-1]) @ weight.transpose(1, 2)
                rows = rows if bias is None else rows + bias.unsqueeze(1)
                x = rows.view(*x.shape[:-1], weight.shape[1])
                continue
            if row_major:
                x, row_major = x.transpose(1, 2), False
            x = weight @ x if bias is None else torch.baddbmm(bias.unsqueeze(2), weight, x)
    return x if row_major else x.transpose(1, 2)


class Stack:
    """The stacked state of a group of trainers: parameters, data, and the optimizer kind's
    :class:`Update` (stacked SGD, or each run's own IVON)."""

    def __init__(
        self, trainers: list[_Trainer], device: torch.device, update: Callable[[Stack], Update]
    ) -> None:
        self.trainers, self.device = trainers, device
        self.base = trainers[0].model
        self.models = [dict(t.model.named_parameters()) for t in trainers]
        self.params: dict[str, Tensor] = {}
        self.gather()
        self.layers = mlp_layers(self.base)
        stack = torch.stack
        # flat (R * N, ...) training data: a batch is one index_select of rows r * N + i
        # (7x less CPU than indexing [run, i] of the (R, N, ...) stack)
        self.x_train = torch.cat([t.data.x_train for t in trainers]).to(device)
        self.y_train = torch.cat([t.data.y_train for t in trainers]).to(device)
        self.n_train = len(trainers[0].data.y_train)
        self.x_val = stack([t.data.x_val for t in trainers]).to(device)
        self.y_val = stack([t.data.y_val for t in trainers])
        self.x_test = stack([t.data.x_test for t in trainers]).to(device)
        self.alive = torch.ones(len(trainers), dtype=torch.bool)
        self.live = self.alive.to(device)  # on the device: masks the losses without a copy
        self.errors: dict[int, str] = {}
        switch = torch.tensor([t.run.train.switch_epoch for t in trainers], device=device)
        self.objective = StackedObjective([t.method for t in trainers], switch)
        # runs with the same recipe share a learning-rate schedule: evaluated once per step
        self.schedules: dict[str, list[int]] = {}
        for i, t in enumerate(trainers):
            self.schedules.setdefault(repr(t.method.train_config(t.run.train)), []).append(i)
        self.update = update(self)  # last: it reads the stack

    def gather(self) -> None:
        """Stack the models' parameters as they are now (the SGD start, an IVON sample or
        mean) into the ``(R, ...)`` leaves that :meth:`forward` takes."""
        self.params = {
            name: torch.stack([model[name].detach() for model in self.models]).requires_grad_()
            for name in self.models[0]
        }

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(R, B, K)`` of every run on its own inputs ``x`` of shape ``(R, B, ...)``:
        an MLP as batched products (:func:`mlp_forward`: no ``vmap`` dispatch per layer), any
        other model through ``vmap`` of ``functional_call``."""
        if self.layers is None:

            def one(params: dict[str, Tensor], inputs: Tensor) -> Tensor:
                return functional_call(self.base, params, (inputs,))  # type: ignore[no-any-return]

            return vmap(one)(self.params, x)
        return mlp_forward(self.layers, self.params, x)

    def lr_table(self, epoch: int) -> Tensor:
        """Learning rates ``(batches, R)`` of the epoch's steps, float64 on the CPU: each the
        Python float that the run's schedule gives, exactly."""
        batches = self.trainers[0].batches
        table = torch.empty(batches, len(self.trainers), dtype=torch.float64)
        for runs in self.schedules.values():
            lr = self.trainers[runs[0]].lr
            steps = range(epoch * batches, (epoch + 1) * batches)
            table[:, runs] = torch.tensor([lr(s) for s in steps], dtype=table.dtype)[:, None]
        return table

    def gradients(self, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Each run's batch loss ``(R,)`` (detached) and the gradients ``(R, ...)`` of the
        live runs' summed losses: run ``i``'s slice is its own loss's gradient."""
        x, y, index = batch
        losses = self.losses(self.forward(x), y, index, epoch)
        total = torch.where(self.live, losses, torch.zeros_like(losses)).sum()
        grads = torch.autograd.grad(total, list(self.params.values()))
        return losses.detach(), dict(zip(self.params, grads, strict=True))

    def losses(self, logits: Tensor, y: Tensor, index: Tensor, epoch: int) -> Tensor:
        """Each run's batch loss ``(R,)``: cross-entropy, smoothing, the confidence penalty and
        label relaxation in one expression (:class:`StackedObjective`), other methods through
        their own objective."""
        smoothed = self.objective(logits, y, epoch)
        own = [i for i in self.objective.own if self.alive[i]]
        if not own:  # no per-run autograd nodes when every run is in the one expression
            return smoothed
        values = []
        for i in own:
            trainer = self.trainers[i]
            fn = trainer.objective if epoch >= trainer.run.train.switch_epoch else cross_entropy
            try:
                values.append(fn(logits[i], y[i], index[i], epoch))
            except Exception:  # one run failing must not stop the others
                self.kill(i, traceback.format_exc())
                values.append(smoothed[i] * 0)
        rows = torch.tensor(own, device=smoothed.device)
        return smoothed.index_put((rows,), torch.stack(values).to(smoothed.dtype))

    def kill(self, i: int, error: str) -> None:
        self.alive[i] = False
        self.live = self.alive.to(self.device)
        self.errors[i] = error

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """float64 CPU logits ``(R, N, K)`` of every run on its own inputs ``(R, N, ...)``."""
        self.base.eval()
        rows = max(1, _EVAL_ROWS // len(self.trainers))
        parts = [
            self.forward(x[:, i : i + rows]).double().cpu() for i in range(0, x.shape[1], rows)
        ]
        return torch.cat(parts, dim=1)


class Update(Protocol):
    """How a stack's optimizer kind trains: one step of every live run on its own batch, and
    what the runs' models and optimizers hold between epochs."""

    rates_on: torch.device  # where :meth:`step` wants its learning rates

    def step(self, batch: Batch, epoch: int, lrs: Tensor) -> Tensor:
        """Step every live run; each run's batch loss ``(R,)``. ``lrs``: the step's rates."""

    def settle(self) -> None:
        """Make the stack's parameters the runs' weights (for the epoch's records)."""

    def write_back(self, optimizers: bool = True) -> None:
        """Make each trainer's model hold its run's weights, and with ``optimizers`` its
        optimizer hold its state (for checkpoints;
        :meth:`~smoothlab.lab.train.loop._Trainer.finish` reads the models only)."""
