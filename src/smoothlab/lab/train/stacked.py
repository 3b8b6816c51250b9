"""Stacked training: many small compatible runs trained as one model along a run dimension.

A sweep of small models (a 64-unit MLP on Twonorm, 275 runs) spends most of its time on the
fixed cost of tiny matrix products, one run at a time. Here the ``R`` runs of a group keep their
own weights, labels, batch order, learning-rate schedule and objective, but their weights are
stacked into ``(R, ...)`` tensors and one batched forward (an MLP as batched products
``x W^T + b``, any other model through ``torch.func.vmap`` of ``functional_call``) and one
backward serve them all. Everything that defines a run is taken
from the same :class:`~smoothlab.lab.train.loop` trainer the solo path builds (initial weights
from the run's seed, batch-order generator, schedules, objective, validation selection, final
evaluation), so a stacked run is the run trained alone up to floating-point rounding, and it is
stored, checkpointed and resumed exactly like one.

Runs stack when they share data set, model, epochs, batch size and an SGD recipe (momentum,
Nesterov, weight decay); they may differ in seed, noise, learning rate and schedule, and method.
IVON runs stack with IVON runs of the same ``beta1`` (``train.momentum``) and Monte Carlo
samples; each keeps its own optimizer and only forward and backward are stacked
(:mod:`~smoothlab.lab.train.stacked_ivon`). The optimizer kind's :class:`_Update` is the only
part that differs: batches, losses and records are shared. Cross-entropy, (negative) label
smoothing, the confidence penalty and label relaxation are evaluated for all runs in one
expression (:mod:`~smoothlab.lab.train.stacked_objectives`); other objectives run per run on
their slice of the logits. Models with buffers (batch norm) or dropout, SAM, AdamW and teacher
methods do not stack (:func:`stack_key` returns None) and train alone.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from smoothlab.lab.plan.objectives import cross_entropy
from smoothlab.lab.train.checkpoint import load_checkpoint, save_checkpoint
from smoothlab.lab.train.data import prepare_data
from smoothlab.lab.train.loop import (
    ProgressFn,
    RunResult,
    RunTask,
    _Trainer,  # the solo trainer: one definition of a run's pieces
    select_device,
)
from smoothlab.lab.train.optimizers import Batch
from smoothlab.lab.train.stack_memory import available_bytes, run_bytes, stack_size
from smoothlab.lab.train.stackable import stack_key, stackable_model
from smoothlab.lab.train.stacked_ivon import IvonUpdate
from smoothlab.lab.train.stacked_objectives import StackedObjective
from smoothlab.lab.train.stacked_sgd import SgdUpdate

__all__ = ["execute_stacked", "stack_key", "stackable_model"]

# Rows (over all runs) per evaluation chunk: its hidden activations stay in cache (the per-epoch
# evaluation of 138 Twonorm runs took 2.5x less CPU than with 2048 rows per run).
_EVAL_ROWS = 4096


def _mlp_layers(model: nn.Module) -> tuple[str, ...] | None:
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


class _Stack:
    """The stacked state of a group of trainers: parameters, data, and the optimizer kind's
    :class:`_Update` (stacked SGD, or each run's own IVON)."""

    def __init__(self, trainers: list[_Trainer], device: torch.device) -> None:
        self.trainers, self.device = trainers, device
        self.base = trainers[0].model
        self.models = [dict(t.model.named_parameters()) for t in trainers]
        self.params: dict[str, Tensor] = {}
        self.gather()
        self.layers = _mlp_layers(self.base)
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
        ivon = trainers[0].kind.name == "ivon"  # one kind per stack (stack_key)
        self.update: _Update = IvonUpdate(self) if ivon else SgdUpdate(self)

    def gather(self) -> None:
        """Stack the models' parameters as they are now (the SGD start, an IVON sample or
        mean) into the ``(R, ...)`` leaves that :meth:`forward` takes."""
        self.params = {
            name: torch.stack([model[name].detach() for model in self.models]).requires_grad_()
            for name in self.models[0]
        }

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(R, B, K)`` of every run on its own inputs ``x`` of shape ``(R, B, ...)``:
        an MLP as batched products ``x W^T + b`` (no ``vmap`` dispatch per layer), any other
        model through ``vmap`` of ``functional_call``."""
        if self.layers is None:

            def one(params: dict[str, Tensor], inputs: Tensor) -> Tensor:
                return functional_call(self.base, params, (inputs,))  # type: ignore[no-any-return]

            return vmap(one)(self.params, x)
        for i, kind in enumerate(self.layers):
            if kind == "flatten":
                x = x.flatten(2)
            elif kind == "relu":
                x = torch.relu(x)
            else:
                weight, bias = self.params[f"{i}.weight"], self.params.get(f"{i}.bias")
                x = (
                    x @ weight.transpose(1, 2)
                    if bias is None
                    else torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
                )
        return x

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


class _Update(Protocol):
    """How a stack's optimizer kind trains: one step of every live run on its own batch, and
    what the runs' models and optimizers hold between epochs."""

    rates_on: torch.device  # where :meth:`step` wants its learning rates

    def step(self, batch: Batch, epoch: int, lrs: Tensor) -> Tensor:
        """Step every live run; each run's batch loss ``(R,)``. ``lrs``: the step's rates."""

    def settle(self) -> None:
        """Make the stack's parameters the runs' weights (for the epoch's records)."""

    def write_back(self) -> None:
        """Make each trainer's model and optimizer hold its run's state (for checkpoints and
        :meth:`~smoothlab.lab.train.loop._Trainer.finish`)."""


def _epoch(stack: _Stack, epoch: int) -> None:
    """One epoch of every run: its own batch order, learning rates, objective; then records.

    As in the solo loop, the losses are summed on the device and read once per epoch: a run
    whose epoch loss is not finite ends there, "diverged" (until then its NaNs stay in its own
    slice of the stack: no operation mixes runs)."""
    lead, n, runs = stack.trainers[0], stack.n_train, len(stack.trainers)
    batch_size, batches = lead.run.train.batch_size, lead.batches
    orders = torch.stack([torch.randperm(n, generator=t.generator) for t in stack.trainers])
    flat = (orders + n * torch.arange(runs)[:, None]).to(stack.device)
    lrs = stack.lr_table(epoch).to(stack.update.rates_on)  # once per epoch
    totals = torch.zeros(runs, dtype=torch.float64, device=stack.device)
    stack.base.train()
    for b in range(batches):
        rows = flat[:, b * batch_size : (b + 1) * batch_size]
        x = stack.x_train.index_select(0, rows.flatten()).view(
            *rows.shape, *stack.x_train.shape[1:]
        )
        y = stack.y_train.index_select(0, rows.flatten()).view(rows.shape)
        index = orders[:, b * batch_size : (b + 1) * batch_size]
        totals += stack.update.step((x, y, index), epoch, lrs[b]).double()
    totals = totals.cpu()
    for i in torch.nonzero(stack.alive & ~torch.isfinite(totals)).flatten().tolist():
        stack.kill(i, f"RuntimeError: diverged at epoch {epoch + 1} (non-finite loss)\n")
    for i, trainer in enumerate(stack.trainers):
        if stack.alive[i] and epoch >= trainer.run.train.switch_epoch:
            trainer.objective.end_epoch()
    _record(stack, epoch, totals / batches)


def _run_slice(params: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    """Run ``i``'s weights, as views into the stacked ones."""
    return {name: p[i] for name, p in params.items()}


def _record(stack: _Stack, epoch: int, train_loss: Tensor) -> None:
    """The solo loop's per-epoch curves and validation selection, for every live run."""
    stack.update.settle()
    test = stack.predict(stack.x_test)
    val = stack.predict(stack.x_val) if stack.x_val.shape[1] else None
    for i, trainer in enumerate(stack.trainers):
        if stack.alive[i]:
            trainer.note(
                epoch,
                float(train_loss[i]),
                test[i],
                None if val is None else val[i],
                functools.partial(_run_slice, stack.params, i),
            )


def _train(trainers: list[_Trainer], start: int, progress: ProgressFn | None) -> list[RunResult]:
    """Train a group of trainers that all continue at epoch ``start``; results in order."""
    began = time.perf_counter()
    lead = trainers[0]
    stack = _Stack(trainers, lead.device)
    epochs, every = lead.run.train.epochs, lead.task.checkpoint_every
    for epoch in range(start, epochs):
        _epoch(stack, epoch)
        if every and (epoch + 1) % every == 0 and epoch + 1 < epochs:
            stack.update.write_back()
            for i, trainer in enumerate(trainers):
                if stack.alive[i] and trainer.task.checkpoint_dir:  # "" = no checkpoints
                    save_checkpoint(Path(trainer.task.checkpoint_dir), trainer.snapshot(epoch))
        if progress is not None:
            for i, trainer in enumerate(trainers):
                if stack.alive[i]:
                    progress(trainer.task.key, epoch + 1, epochs)
    stack.update.write_back()
    share = (time.perf_counter() - began) / len(trainers)  # each run's part of the group's time
    results = []
    for i, trainer in enumerate(trainers):
        if not stack.alive[i]:
            results.append(RunResult(trainer.task.key, error=stack.errors[i], wall_time=share))
            continue
        result = trainer.finish()
        result.wall_time = share
        result.metrics["wall_time"] = share
        results.append(result)
    return results


def execute_stacked(
    tasks: Sequence[RunTask], progress: ProgressFn | None = None, max_bytes: int = 0
) -> list[RunResult]:
    """Train runs that share a :func:`stack_key` stacked; results in the order of ``tasks``.

    A stack holds as many runs as fit in ``max_bytes`` (default: half the memory available
    now), at :func:`~smoothlab.lab.train.stack_memory.run_bytes` each as measured on the first
    run; the next stack's runs are built once the previous one has finished. Runs resumed from
    checkpoints of different epochs (or whose splits differ in size) train in separate stacks.
    If the model cannot stack (:func:`stackable_model`), each run trains alone, as
    :func:`~smoothlab.lab.train.loop.execute` would.
    """
    results: dict[str, RunResult] = {}
    waiting, size = list(tasks), 0
    while waiting:
        built: list[tuple[_Trainer, int]] = []
        while waiting and (not size or len(built) < size):
            ready = _build(waiting.pop(0), progress, results)
            if ready is not None:
                built.append(ready)
                trainer = ready[0]
                if not size:
                    per_run = run_bytes(trainer.data, trainer.model, trainer.run.train.batch_size)
                    size = stack_size(per_run, max_bytes or available_bytes() // 2)
        _train_groups(built, progress, results)
    return [results[task.key] for task in tasks]


def _build(
    task: RunTask, progress: ProgressFn | None, results: dict[str, RunResult]
) -> tuple[_Trainer, int] | None:
    """The run's trainer restored from its checkpoint, and its first epoch to train; None when
    the run is done already (its model cannot stack: trained alone) or failed (both in
    ``results``)."""
    from smoothlab.lab.train.loop import execute

    try:
        trainer = _Trainer(task, prepare_data(task.run, task.data_seed), select_device(task.device))
        if not stackable_model(trainer.model):
            results[task.key] = execute(task, progress)
            return None
        saved = load_checkpoint(Path(task.checkpoint_dir)) if task.checkpoint_dir else None
        return trainer, trainer.restore(saved) if saved else 0
    except Exception:
        results[task.key] = RunResult(task.key, error=traceback.format_exc())
        return None


def _train_groups(
    built: list[tuple[_Trainer, int]], progress: ProgressFn | None, results: dict[str, RunResult]
) -> None:
    """Train trainers in stacks of those that continue at the same epoch with splits of the
    same sizes (noise-dependent stratified splits can differ by an example)."""
    groups: dict[tuple[int, ...], list[_Trainer]] = {}
    for trainer, start in built:
        data = trainer.data
        sizes = (len(data.y_train), len(data.y_val), len(data.y_test))
        groups.setdefault((start, *sizes), []).append(trainer)
    for (start, *_), group in groups.items():
        try:
            for result in _train(group, start, progress):
                results[result.key] = result
        except Exception:  # a failure of the stack itself fails its runs, not the grid
            error = traceback.format_exc()
            for trainer in group:
                results[trainer.task.key] = RunResult(trainer.task.key, error=error)
