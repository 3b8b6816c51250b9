"""Stacked training: many small compatible runs trained as one model along a run dimension.

A sweep of small models (a 64-unit MLP on Twonorm, 275 runs) spends most of its time on the
fixed cost of tiny matrix products, one run at a time. Here the ``R`` runs of a group keep their
own weights, labels, batch order, learning-rate schedule and objective, but their weights are
stacked into ``(R, ...)`` tensors and one batched forward (an MLP as feature-major batched
products, :func:`~smoothlab.lab.train.stacked_state.mlp_forward`; any other model through
``torch.func.vmap`` of ``functional_call``) and one backward serve them all. Everything that
defines a run is taken from the same :class:`~smoothlab.lab.train.loop` trainer the solo path
builds (initial weights from the run's seed, batch-order generator, schedules, objective,
validation selection, final evaluation), so a stacked run is the run trained alone up to
floating-point rounding, and it is stored, checkpointed and resumed exactly like one.

Runs stack when they share data set, model, epochs, batch size and an SGD recipe (momentum,
Nesterov, weight decay); they may differ in seed, noise, learning rate and schedule, and method.
IVON runs stack with IVON runs of the same ``beta1`` (``train.momentum``) and Monte Carlo
samples; each keeps its own optimizer and only forward and backward are stacked
(:mod:`~smoothlab.lab.train.stacked_ivon`). The optimizer kind's update
(:class:`~smoothlab.lab.train.stacked_state.Update`: stacked SGD or each run's IVON) is the only
part that differs: batches, losses and records are shared. Cross-entropy, (negative) label
smoothing, the confidence penalty and label relaxation are evaluated for all runs in one
expression (:mod:`~smoothlab.lab.train.stacked_objectives`); other objectives run per run on
their slice of the logits. Models with buffers (batch norm) or dropout, SAM, AdamW and teacher
methods do not stack (:func:`stack_key` returns None) and train alone.
"""

from __future__ import annotations

import functools
import sys
import time
import traceback
import typing
from collections.abc import Hashable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from smoothlab.lab.train.checkpoint import load_checkpoint, save_checkpoint
from smoothlab.lab.train.data import prepare_data
from smoothlab.lab.train.loop import (
    Diverged,
    ProgressFn,
    RunResult,
    RunTask,
    _Trainer,  # the solo trainer: one definition of a run's pieces
    execute,
    select_device,
)
from smoothlab.lab.train.stack_memory import run_bytes, stack_budget, stack_size
from smoothlab.lab.train.stackable import stack_key, stackable_model
from smoothlab.lab.train.stacked_ivon import IvonUpdate
from smoothlab.lab.train.stacked_sgd import SgdUpdate
from smoothlab.lab.train.stacked_state import Stack

__all__ = ["execute_stacked", "stack_key", "stackable_model"]


def _epoch(stack: Stack, epoch: int) -> None:
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
        stack.kill(i, _diverged(epoch))
    for i, trainer in enumerate(stack.trainers):
        if stack.alive[i] and epoch >= trainer.run.train.switch_epoch:
            trainer.objective.end_epoch()
    _record(stack, epoch, totals / batches)


def _diverged(epoch: int) -> str:
    """A diverged run's error text: the last line of the solo loop's traceback (what the
    driver prints, :func:`smoothlab.lab.run.store.reason`).

    >>> print(_diverged(2), end="")
    smoothlab.lab.train.loop.Diverged: diverged at epoch 3 (non-finite loss)
    """
    return "".join(traceback.format_exception_only(Diverged(epoch)))


def _run_slice(params: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    """Run ``i``'s weights, as views into the stacked ones."""
    return {name: p[i] for name, p in params.items()}


def _record(stack: Stack, epoch: int, train_loss: Tensor) -> None:
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
    ivon = lead.kind.name == "ivon"  # one optimizer kind per stack (stack_key)
    stack = Stack(trainers, lead.device, IvonUpdate if ivon else SgdUpdate)
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
    stack.update.write_back(optimizers=False)  # finish reads the models only
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


#: Parameter-sized tensors each IVON run's own optimizer keeps (momentum, Hessian, and its
#: noise, sample and Hessian-difference buffers); a stacked SGD run's momentum is counted already
_IVON_STATE = 5


def execute_stacked(
    tasks: Sequence[RunTask], progress: ProgressFn | None = None, max_bytes: int = 0
) -> list[RunResult]:
    """Train runs that share a :func:`stack_key` stacked; results in the order of ``tasks``.

    A stack holds as many runs as fit in its budget
    (:func:`~smoothlab.lab.train.stack_memory.stack_budget`: ``max_bytes``, by default half the
    memory available now, and on a CUDA device at most half its free memory), at
    :func:`~smoothlab.lab.train.stack_memory.run_bytes` each as measured on the first run; the
    next stack's runs are built once the previous one has finished. Runs resumed from
    checkpoints of different epochs (or whose splits differ in size) train in separate stacks.
    If the model cannot stack (:func:`stackable_model`), each run trains alone, as
    :func:`~smoothlab.lab.train.loop.execute` would. Tasks of several keys are split by key
    first (in order of first appearance); a task whose key is None trains alone.
    """
    keys = [stack_key(task) for task in tasks]
    if len(set(keys)) > 1 or None in keys:
        by_key: dict[Hashable, list[RunTask]] = {}
        for task, key in zip(tasks, keys, strict=True):
            by_key.setdefault(key, []).append(task)
        done: dict[str, RunResult] = {}
        for key, group in by_key.items():
            trained = execute_stacked(group, progress, max_bytes) if key is not None else [
                execute(task, progress) for task in group]  # fmt: skip
            done.update((result.key, result) for result in trained)
        return [done[task.key] for task in tasks]
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
                    own = _IVON_STATE if trainer.kind.name == "ivon" else 0  # SGD's: stacked
                    batch = trainer.run.train.batch_size
                    per_run = run_bytes(trainer.data, trainer.model, batch, own)
                    size = stack_size(per_run, stack_budget(max_bytes, trainer.device))
        _train_groups(built, progress, results)
    return [results[task.key] for task in tasks]


def _build(
    task: RunTask, progress: ProgressFn | None, results: dict[str, RunResult]
) -> tuple[_Trainer, int] | None:
    """The run's trainer restored from its checkpoint, and its first epoch to train; None when
    the run is done already (its model cannot stack: trained alone) or failed (both in
    ``results``)."""
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
    same sizes (noise-dependent stratified splits can differ by an example).

    A stack that fails as a whole (an operation ``vmap`` cannot batch, memory) does not fail
    its runs: they train alone, as under the ``local`` executor, resuming from the checkpoints
    the stack wrote, and a line on standard error says why. An exception of ``progress`` (the
    executor abandoning the batch) is raised unchanged."""
    groups: dict[tuple[int, ...], list[_Trainer]] = {}
    for trainer, start in built:
        data = trainer.data
        sizes = (len(data.y_train), len(data.y_val), len(data.y_test))
        groups.setdefault((start, *sizes), []).append(trainer)
    for (start, *_), group in groups.items():
        failed = ""
        try:
            for result in _train(group, start, _raising(progress)):
                results[result.key] = result
        except _ProgressRaised as raised:
            raise typing.cast(BaseException, raised.__cause__) from None
        except Exception as error:
            failed = f"{type(error).__name__}: {error}"
        if failed:  # outside the handler: the failed stack's frames are freed first
            _train_alone([t.task for t in group], progress, results, failed)


class _ProgressRaised(Exception):
    """Carries an exception of the progress callback out of a stack's training."""


def _raising(progress: ProgressFn | None) -> ProgressFn | None:
    """``progress`` whose exceptions arrive as :class:`_ProgressRaised`."""
    if progress is None:
        return None

    def report(key: str, done: int, total: int) -> None:
        try:
            progress(key, done, total)
        except Exception as error:
            raise _ProgressRaised from error

    return report


def _train_alone(
    tasks: list[RunTask], progress: ProgressFn | None, results: dict[str, RunResult], why: str
) -> None:
    """Train each of a failed stack's runs alone, after saying so on standard error."""
    first = why.splitlines()[0]
    print(f"a stack of {len(tasks)} runs failed ({first}); training them alone", file=sys.stderr)
    for task in tasks:
        results[task.key] = execute(task, progress)
