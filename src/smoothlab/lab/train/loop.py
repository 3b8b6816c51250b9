"""The training loop of one run: plain and readable, top to bottom.

``execute(task)`` is what an executor calls in a worker: seed from the run's key, build the data
(noisy labels, validation split), the model, the method's objective and optimizer; train for
``epochs`` with the learning-rate schedule and the method's smoothing schedule (both functions of
the step or epoch, owned here); keep the model the validation split selects; then measure on the
clean test set, before and after temperature scaling fitted on the validation split.
"""

from __future__ import annotations

import functools
import math
import time
import traceback
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothlab.lab.plan.grid import RunConfig
from smoothlab.lab.plan.methods.base import RunContext
from smoothlab.lab.plan.models import build_model, classifier
from smoothlab.lab.plan.objectives import LossFn, cross_entropy, teacher_probabilities
from smoothlab.lab.plan.schema import AugmentConfig
from smoothlab.lab.train.augment import Augment, Padding, augment_batch
from smoothlab.lab.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from smoothlab.lab.train.data import RunData, prepare_data
from smoothlab.lab.train.device import gather, resident, to_device, training_forward
from smoothlab.lab.train.evaluation import predict_logits, score_logits
from smoothlab.lab.train.optimizers import OPTIMIZERS, Batch
from smoothlab.schedules import Schedule, constant, cosine, join, linear, step

__all__ = [
    "Diverged",
    "ProgressFn",
    "RunResult",
    "RunTask",
    "execute",
    "load_pretrained",
    "lr_schedule",
    "select_device",
]

ProgressFn = Callable[[str, int, int], None]  # (run key, epochs done, epochs)


class Diverged(RuntimeError):
    """Training produced a non-finite loss or non-finite logits at ``epoch`` (0-based).

    >>> str(Diverged(2))
    'diverged at epoch 3 (non-finite loss)'
    """

    def __init__(self, epoch: int) -> None:
        super().__init__(f"diverged at epoch {epoch + 1} (non-finite loss)")


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs to train one run; picklable, no open files."""

    key: str
    run: RunConfig
    seed: int
    data_seed: int
    device: str = "auto"
    teacher_weights: bytes | None = None  # safetensors bytes of the teacher (ls-teacher)
    checkpoint_dir: str = ""  # "" = no mid-run checkpoints
    checkpoint_every: int = 0  # epochs between checkpoints


@dataclass
class RunResult:
    """What a worker sends back; the driver alone writes it to the store."""

    key: str
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    weights: bytes = b""  # the selected model, safetensors bytes
    wall_time: float = 0.0
    error: str = ""  # non-empty when the run failed; failed runs are not stored


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_schedule(run: RunConfig, lr: float, steps_per_epoch: int) -> Schedule:
    """The learning rate per optimizer step: optional linear warm-up, then constant/step/cosine.

    The schedule and warm-up are the method's recipe (:meth:`Method.train_config`): the
    ``[train]`` values unless the method overrides them (IVON's ``lr_schedule``, ``warmup_epochs``).
    With ``train.switch_lr`` the rate is that constant from ``train.switch_epoch`` on.
    """
    train = run.variant.train_config(run.train)
    total = train.epochs * steps_per_epoch
    warm = min(train.warmup_epochs * steps_per_epoch, total - 1)
    if train.lr_schedule == "cosine":
        main = cosine(lr, max(total - warm, 1))
    elif train.lr_schedule == "step":
        bounds = [max(m * steps_per_epoch - warm, 0) for m in train.lr_milestones]
        main = step(lr, bounds, train.lr_gamma)
    else:
        main = constant(lr)
    if warm > 0:
        main = join([linear(lr / max(warm, 1), lr, warm), main], [warm])
    if train.switch_lr > 0:  # Wei et al.'s protocol: the smoothed loss at a small constant rate
        main = join([main, constant(train.switch_lr)], [train.switch_epoch * steps_per_epoch])
    return main


def load_pretrained(model: nn.Module, path: str) -> None:
    """Load a safetensors state dict into ``model``; its classifier (the last Linear) is kept
    as initialised when its shape differs (ImageNet's 1000 classes fine-tuned on 120)."""
    from safetensors.torch import load_file

    state = load_file(str(Path(path).expanduser()))
    head = classifier(model)[0]
    own = model.state_dict()
    for key in (f"{head}.weight", f"{head}.bias"):
        if key in state and key in own and state[key].shape != own[key].shape:
            del state[key], own[key]
    if set(state) != set(own):
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise ValueError(
            f"`model.checkpoint` must hold the model's tensors, got {path!r} "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    model.load_state_dict(state, strict=False)


def _augment(config: AugmentConfig) -> Augment | None:
    """The batch augmentation of ``data.augment_*``, or None when it changes nothing."""
    if not config.active:
        return None
    padding = typing.cast(Padding, config.padding)  # checked at config load
    return Augment(config.shift, config.flip, config.cutout, padding)


class _Trainer:
    """The state of one run between epochs: model, optimizer, objective, schedules, curves."""

    def __init__(self, task: RunTask, data: RunData, device: torch.device) -> None:
        self.task, self.run, self.device = task, task.run, device
        self.method, self.data = task.run.variant, data
        self.kind = OPTIMIZERS[self.method.optimizer]
        recipe = self.method.train_config(self.run.train)  # [train], or the method's own
        torch.manual_seed(task.seed)  # the runner seeds, from the run's key (house rule 5)
        shape = tuple(data.x_train.shape[1:])
        self.model = build_model(
            self.run.model.name, shape, data.num_classes, self.run.model.hidden
        )
        if self.run.model.checkpoint:
            load_pretrained(self.model, self.run.model.checkpoint)
        self.model.to(device)
        self.forward = training_forward(self.model, self.run.train, device)
        self.x_train = resident(data.x_train, device)  # once per run, when it fits
        self.y_train = resident(data.y_train, device)
        self.built_optimizer: Any = None  # see :attr:`optimizer`
        self._build = functools.partial(
            self.kind.build, self.method, self.model, recipe, len(data.y_train), task.seed
        )
        teacher = self._teacher_probs(shape) if self.method.needs_teacher else None
        context = RunContext(
            data.num_classes, data.y_train, data.y_train_clean, task.seed, self.run.train.epochs
        )
        self.objective = self.method.run_objective(context, teacher)
        self.batches = math.ceil(len(data.y_train) / self.run.train.batch_size)
        self.lr = lr_schedule(self.run, recipe.lr, self.batches)
        self.generator = torch.Generator().manual_seed(task.seed ^ 0x5EED)
        self.augment = _augment(self.run.data.augment)  # None: no augmentation
        # a stream of its own, so turning augmentation on leaves the batch order unchanged
        self.augment_generator = torch.Generator().manual_seed(task.seed ^ 0xA06)
        self.curves: dict[str, list[float]] = {}
        self.best: tuple[float, int, dict[str, Tensor]] | None = None

    @property
    def optimizer(self) -> Any:
        """The run's optimizer, built at its first use (kept in :attr:`built_optimizer`).

        A stacked SGD run (:mod:`~smoothlab.lab.train.stacked_sgd`) never steps its own: the
        stack holds its weights and momentum, and it builds its optimizer only to write or read
        a checkpoint. Building any ``torch.optim`` optimizer imports ``torch._dynamo`` (1 s), so
        a process that trains only such stacks never pays for it."""
        if self.built_optimizer is None:
            self.built_optimizer = self._build()
        return self.built_optimizer

    def _teacher_probs(self, shape: tuple[int, ...]) -> Tensor:
        from safetensors.torch import load as load_weights

        if self.task.teacher_weights is None:
            raise ValueError("`teacher_weights` must be given for ls-teacher, got None")
        teacher = build_model(
            self.run.model.name, shape, self.data.num_classes, self.run.model.hidden
        )
        teacher.load_state_dict(load_weights(self.task.teacher_weights))
        return teacher_probabilities(teacher.to(self.device), self.data.x_train.to(self.device))

    def epoch(self, epoch: int) -> None:
        """Train one epoch, then record curves and the validation-selected model."""
        self.model.train()
        order = torch.randperm(len(self.data.y_train), generator=self.generator)
        # where the training set is resident, its batches are picked on the device (one copy
        # of the order per epoch)
        order = to_device(order, self.x_train.device)
        loss_fn = self.objective if epoch >= self.run.train.switch_epoch else cross_entropy
        # summed on the device in float64 (the float32 losses added exactly as Python's sum of
        # floats did) and read once per epoch: no host synchronisation per step
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for b in range(self.batches):
            index = order[b * self.run.train.batch_size : (b + 1) * self.run.train.batch_size]
            self.kind.set_lr(self.optimizer, self.lr(epoch * self.batches + b))
            x = gather(self.x_train, index, self.device)
            if self.augment is not None:  # training batches only: evaluation never augments
                x = augment_batch(x, self.augment, self.augment_generator)
            y = gather(self.y_train, index, self.device)
            batch = (x, y, to_device(index, self.device))
            total += self._step(loss_fn, batch, epoch).double()
        train_loss = float(total) / self.batches
        if not math.isfinite(train_loss):
            raise Diverged(epoch)
        if loss_fn is self.objective:
            self.objective.end_epoch()
        self._record(epoch, train_loss)

    def _step(self, loss_fn: LossFn, batch: Batch, epoch: int) -> Tensor:
        """One optimizer step; non-finite logits end the run as :class:`Diverged` (instead of a
        loss's "`logits` must be finite"); a non-finite loss is caught at the epoch's end."""
        try:
            return self.kind.step(self.forward, self.optimizer, loss_fn, batch, epoch)
        except ValueError as error:
            with torch.no_grad():
                finite = bool(torch.isfinite(self.model(batch[0])).all())
            if finite:
                raise
            raise Diverged(epoch) from error

    def _record(self, epoch: int, train_loss: float) -> None:
        test = predict_logits(self.model, self.data.x_test.to(self.device))
        val = None
        if len(self.data.y_val):
            val = predict_logits(self.model, self.data.x_val.to(self.device))
        self.note(epoch, train_loss, test, val, self.model.state_dict)

    def note(
        self,
        epoch: int,
        train_loss: float,
        test: Tensor,
        val: Tensor | None,
        state: Callable[[], dict[str, Tensor]],
    ) -> None:
        """Record the epoch's curves from its test and validation logits, and keep the weights
        (``state()``, copied) that the validation split selects: lower scores are better, and
        with ``select = "last"`` every epoch ties and the latest one wins (``<=``). An epoch
        trained with the objective also hands it the validation logits (AdaFocal's calibration)."""
        if val is not None and epoch >= self.run.train.switch_epoch:
            self.objective.observe_validation(val, self.data.y_val)
        points = {"train_loss": train_loss, "lr": self.lr(epoch * self.batches)}
        points["test_accuracy"] = float((test.argmax(1) == self.data.y_test).double().mean())
        if val is not None:
            points["val_nll"] = float(F.cross_entropy(val, self.data.y_val))
            points["val_accuracy"] = float((val.argmax(1) == self.data.y_val).double().mean())
        for name, value in points.items():
            self.curves.setdefault(name, []).append(value)
        score = {
            "last": 0.0,
            "val_nll": points.get("val_nll", 0.0),
            "val_accuracy": -points.get("val_accuracy", 0.0),
        }[self.run.train.select]
        if self.best is None or score <= self.best[0]:
            self.best = (score, epoch, {k: v.detach().clone() for k, v in state().items()})

    def snapshot(self, epoch: int) -> Checkpoint:
        """Everything needed to continue after ``epoch``."""
        assert self.best is not None
        state = {
            "optimizer": self.optimizer.state_dict(),
            "objective": self.objective.state_dict(),
            "generator": self.generator.get_state(),
            "augment_generator": self.augment_generator.get_state(),
            "curves": self.curves,
            "best_score": self.best[0],
            "best_epoch": self.best[1],
        }
        return Checkpoint(epoch, self.model.state_dict(), self.best[2], state)

    def restore(self, checkpoint: Checkpoint) -> int:
        """Continue from ``checkpoint``; returns the first epoch still to train."""
        state = checkpoint.state
        self.model.load_state_dict(checkpoint.model)
        self.optimizer.load_state_dict(state["optimizer"])
        self.objective.load_state_dict(state["objective"])
        self.generator.set_state(state["generator"])
        if "augment_generator" in state:  # checkpoints written before augmentation lack it
            self.augment_generator.set_state(state["augment_generator"])
        self.curves = state["curves"]
        self.best = (state["best_score"], state["best_epoch"], checkpoint.best)
        return checkpoint.epoch + 1

    def finish(self) -> RunResult:
        """Restore the selected model and measure it on the test set."""
        from safetensors.torch import save as save_weights

        assert self.best is not None  # at least one epoch ran (config checks epochs >= 1)
        self.model.load_state_dict(self.best[2])
        optimizer = self.built_optimizer  # None only where the kind reads none (stacked SGD)
        test, val = (
            self.kind.predict(self.method, self.model, optimizer, x.to(self.device))
            for x in (self.data.x_test, self.data.x_val)
        )
        y_val = self.data.y_val
        if not self.run.train.temperature_scaling:
            val, y_val = val[:0], y_val[:0]
        metrics, extras = score_logits(test, self.data.y_test, val, y_val, self.run.calibration)
        metrics["realised_noise_rate"] = self.data.realised_noise_rate
        metrics["selected_epoch"] = float(self.best[1] + 1)
        extras.update(self.kind.extras(self.model, optimizer, self.data))
        weights = {k: v.detach().cpu().contiguous() for k, v in self.best[2].items()}
        return RunResult(self.task.key, metrics, self.curves, extras, save_weights(weights))


def execute(task: RunTask, progress: ProgressFn | None = None) -> RunResult:
    """Train and evaluate one run; any exception becomes a failed :class:`RunResult`."""
    start = time.perf_counter()
    try:
        device = select_device(task.device)
        trainer = _Trainer(task, prepare_data(task.run, task.data_seed), device)
        folder = Path(task.checkpoint_dir) if task.checkpoint_dir else None
        saved = load_checkpoint(folder) if folder else None
        epochs = task.run.train.epochs
        for epoch in range(trainer.restore(saved) if saved else 0, epochs):
            trainer.epoch(epoch)
            if folder and (epoch + 1) % task.checkpoint_every == 0 and epoch + 1 < epochs:
                save_checkpoint(folder, trainer.snapshot(epoch))
            if progress is not None:
                progress(task.key, epoch + 1, epochs)
        result = trainer.finish()
    except Exception:  # a failed run is reported, the grid goes on
        # the full traceback travels back; the driver prints what went wrong from its last
        # line (smoothlab.lab.run.store.reason)
        text = traceback.format_exc()
        return RunResult(task.key, error=text, wall_time=time.perf_counter() - start)
    result.wall_time = time.perf_counter() - start
    result.metrics["wall_time"] = result.wall_time
    return result
