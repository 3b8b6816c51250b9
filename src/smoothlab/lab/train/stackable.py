"""Which runs train stacked (:mod:`smoothlab.lab.train.stacked`): what they must share, and
which models can stack at all."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch
from torch import nn

from smoothlab.lab.plan.methods import Ivon
from smoothlab.lab.train.loop import RunTask

__all__ = ["MAX_STACK_PARAMETERS", "stack_key", "stackable_model", "stacks"]


def stack_key(task: RunTask) -> Hashable | None:
    """What runs must share to train stacked, or None if this run trains alone.

    >>> from smoothlab.lab.demo import demo_config
    >>> from smoothlab.lab.plan.grid import plan_runs
    >>> runs = plan_runs(demo_config())
    >>> tasks = [RunTask(str(i), run, 0, 0) for i, run in enumerate(runs)]
    >>> len({stack_key(t) for t in tasks}), stack_key(tasks[0])[2], stack_key(tasks[-1])[2]
    (2, ('sgd', 30, 128, 0.9, True, 0.0), ('ivon', 30, 128, 0.9, 1))
    """
    method, run = task.run.variant, task.run
    if method.needs_teacher:
        return None
    if run.data.augment.active:  # the stacked epoch draws no augmentation
        return None
    # the stacked SGD has one rate per run (model.checkpoint stacks: each trainer loads it)
    if run.train.backbone_lr or run.train.precision != "fp32" or run.train.compile:
        return None  # the stacked forward is fp32 and eager
    train = method.train_config(run.train)
    recipe: tuple[object, ...]
    if isinstance(method, Ivon):  # each run keeps its optimizer: the step loop is shared
        recipe = ("ivon", train.epochs, train.batch_size, train.momentum, method.train_samples)
    elif method.optimizer == "default" and train.optimizer == "sgd":
        recipe = ("sgd", train.epochs, train.batch_size, train.momentum, train.nesterov)
        recipe += (train.weight_decay,)
    else:
        return None
    shared = (train.select, train.temperature_scaling, task.device, task.checkpoint_every)
    return (repr(run.data), repr(run.model), recipe, shared)


#: Models with more parameters train alone even where they could stack: one epoch of 6-8 runs
#: of each canned config, stacked against one after another (one thread, CPU time, 2026-12-07,
#: feature-major MLPs) took 2.7-3.7x less time stacked at 1.5k-10k parameters (Twonorm, the
#: demo's SGD runs; 1.6x its IVON runs) and 1.8x at 23k (Splice), but 0.7-1.1x at 104k-204k
#: (the CNN and the Fashion-MNIST MLPs) and 0.7x at 1.9M: a model large enough to keep a core
#: busy gains nothing from fewer, larger products, and its stacked copies of the data and
#: batched products cost more (``benchmarks/RESULTS.md``).
MAX_STACK_PARAMETERS = 50_000


def stackable_model(model: nn.Module) -> bool:
    """Whether a model's runs gain from stacking and can stack: at most
    :data:`MAX_STACK_PARAMETERS` parameters, and a forward that is a pure function of its
    parameters (no buffers to update in place, no dropout drawing from the global generator).

    >>> stackable_model(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)))
    True
    >>> stackable_model(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)))
    False
    """
    if sum(p.numel() for p in model.parameters()) > MAX_STACK_PARAMETERS:
        return False
    stateful = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
    return not stateful and next(model.buffers(), None) is None


def stacks(tasks: Sequence[RunTask]) -> bool:
    """Whether every task trains stacked under the ``stacked`` executor: it has a
    :func:`stack_key`, and its model, built on the meta device for its data set's inputs, is
    :func:`stackable_model`. False where a data set cannot be loaded (its runs then fail one by
    one, saying why).

    >>> from smoothlab.lab.demo import demo_config
    >>> from smoothlab.lab.plan.grid import plan_runs
    >>> runs = plan_runs(demo_config())
    >>> stacks([RunTask(str(i), run, 0, 0) for i, run in enumerate(runs)])
    True
    >>> runs = plan_runs(demo_config(("model.hidden=[1024]",)))
    >>> stacks([RunTask(str(i), run, 0, 0) for i, run in enumerate(runs)])
    False
    """
    from smoothlab.lab.train.data import load_cached

    if _all_stack(tasks):
        return True
    # the pool trains this batch: the driver keeps no data set loaded for it (MNIST: about
    # 200 MB), while a batch that stacks finds its data cached for the driver's share
    load_cached.cache_clear()
    return False


def _all_stack(tasks: Sequence[RunTask]) -> bool:
    checked: dict[Hashable, bool] = {}
    for task in tasks:
        key = stack_key(task)
        if key is None:
            return False
        if key not in checked:
            checked[key] = _model_stacks(task)
        if not checked[key]:
            return False
    return True


def _model_stacks(task: RunTask) -> bool:
    from smoothlab.lab.plan.models import build_model
    from smoothlab.lab.train.data import load_cached

    run = task.run
    try:
        dataset = load_cached(run.data.dataset, run.data.root)
    except Exception:
        return False
    shape = tuple(dataset.x_train.shape[1:])
    with torch.device("meta"):  # the parameters' sizes, without allocating or initialising them
        model = build_model(run.model.name, shape, dataset.num_classes, run.model.hidden)
    return stackable_model(model)
