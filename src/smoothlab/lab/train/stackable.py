"""Which runs train stacked (:mod:`smoothlab.lab.train.stacked`): what they must share, and
which models can stack at all."""

from __future__ import annotations

from collections.abc import Hashable

from torch import nn

from smoothlab.lab.train.loop import RunTask

__all__ = ["stack_key", "stackable_model"]


def stack_key(task: RunTask) -> Hashable | None:
    """What runs must share to train stacked, or None if this run trains alone.

    >>> from smoothlab.lab.demo import demo_config
    >>> from smoothlab.lab.plan.grid import plan_runs
    >>> runs = plan_runs(demo_config())
    >>> tasks = [RunTask(str(i), run, 0, 0) for i, run in enumerate(runs)]
    >>> len({stack_key(t) for t in tasks if stack_key(t) is not None}), stack_key(tasks[-1])
    (1, None)
    """
    method, run = task.run.variant, task.run
    if method.optimizer != "default" or method.needs_teacher:
        return None
    if run.data.augment.active:  # the stacked epoch draws no augmentation
        return None
    # the stacked SGD has one rate per run (model.checkpoint stacks: each trainer loads it)
    if run.train.backbone_lr or run.train.precision != "fp32" or run.train.compile:
        return None  # the stacked forward is fp32 and eager
    train = method.train_config(run.train)
    if train.optimizer != "sgd":
        return None
    recipe = (train.epochs, train.batch_size, train.momentum, train.nesterov, train.weight_decay)
    shared = (train.select, train.temperature_scaling, task.device, task.checkpoint_every)
    return (repr(run.data), repr(run.model), recipe, shared)


def stackable_model(model: nn.Module) -> bool:
    """Whether a model's forward is a pure function of its parameters (no buffers to update in
    place, no dropout drawing from the global generator)."""
    stateful = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
    return not stateful and next(model.buffers(), None) is None
