"""Hugging Face ``transformers.Trainer`` glue: online label smoothing's epoch hook, and IVON.

Requires ``transformers`` and ``accelerate`` (``pip install smoothlab[hf]``).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from smoothlab._checks import fail
from smoothlab.integrations._common import check_losses, online_losses
from smoothlab.online import OnlineLabelSmoothingLoss
from smoothlab.optim import IVON

__all__ = ["IVONCallback", "OnlineLabelSmoothingCallback"]


class OnlineLabelSmoothingCallback(TrainerCallback):
    r"""Advance online label smoothing (Zhang et al., 2021) at the end of every ``Trainer`` epoch.

    Calls :meth:`~smoothlab.OnlineLabelSmoothingLoss.next_epoch` on each epoch end, and keeps
    the losses in training mode (accumulating) only from the start to the end of each training
    step, so evaluation never adds to the next epoch's soft labels. Keep the loss a submodule
    of the model for ``Trainer`` checkpoints to save its buffers.

    Args:
        losses: the losses to advance. Default: every :class:`~smoothlab.OnlineLabelSmoothingLoss`
            among the model's modules, found when training starts.

    >>> import torch
    >>> loss_fn = OnlineLabelSmoothingLoss(3, alpha=0.5)
    >>> callback = OnlineLabelSmoothingCallback(loss_fn)
    >>> args, state, control = None, TrainerState(), TrainerControl()  # what Trainer passes
    >>> callback.on_train_begin(args, state, control)
    >>> callback.on_step_begin(args, state, control)
    >>> _ = loss_fn(torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), torch.tensor([0, 1]))
    >>> callback.on_step_end(args, state, control)
    >>> callback.on_epoch_end(args, state, control)
    >>> loss_fn.soft_labels[0], loss_fn.training
    (tensor([0.9094, 0.0453, 0.0453]), False)

    Reference: C.-B. Zhang et al., "Delving Deep into Label Smoothing", IEEE TIP 2021.
    """

    def __init__(self, *losses: OnlineLabelSmoothingLoss) -> None:
        self._given = check_losses(losses)
        self._losses = self._given

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: nn.Module | None = None,
                       **kwargs: Any) -> None:  # fmt: skip
        """Find the losses (unless given); ``ValueError`` if there are none."""
        self._losses = online_losses(self._given, model, "model")

    def on_step_begin(self, args: TrainingArguments, state: TrainerState,
                      control: TrainerControl, **kwargs: Any) -> None:  # fmt: skip
        """Let the losses accumulate during the training step."""
        for loss in self._losses:
            loss.train()

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kwargs: Any) -> None:  # fmt: skip
        """Stop them before evaluation, which follows the step."""
        for loss in self._losses:
            loss.eval()

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **kwargs: Any) -> None:  # fmt: skip
        """Turn the epoch's sums into the next epoch's soft labels."""
        for loss in self._losses:
            loss.next_epoch()


class IVONCallback(TrainerCallback):
    r"""Run each ``Trainer`` step's forward and backward at IVON's sampled weights.

    ``Trainer`` calls ``optimizer.step()`` without a closure after its own backward passes, so
    this callback enters ``IVON.sampled_params(train=True)`` when a step begins (before the
    first micro-batch of gradient accumulation) and leaves it just before the optimizer step,
    after ``Trainer`` clipped the gradients (``max_grad_norm``, honoured). Pass the optimizer to
    ``Trainer``: ``Trainer(..., optimizers=(ivon, None), callbacks=[IVONCallback()])``. One
    weight sample per step: IVON's ``mc_samples`` must be 1. Evaluation, logging and
    checkpoints happen between steps, at the mean weights.

    >>> import torch
    >>> w = nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> ivon = IVON([w], lr=0.1, ess=100.0, generator=torch.Generator().manual_seed(0))
    >>> callback, state, control = IVONCallback(), TrainerState(), TrainerControl()
    >>> callback.on_train_begin(None, state, control, optimizer=ivon)  # as Trainer calls it
    >>> callback.on_step_begin(None, state, control)
    >>> sample = w.detach().clone()
    >>> (w**2).sum().backward()  # Trainer's training_step, at the sample
    >>> callback.on_pre_optimizer_step(None, state, control)
    >>> w.detach(), bool((sample != w).all())  # the mean is back; the sample differed
    (tensor([ 1., -1.]), True)
    >>> _ = ivon.step()
    >>> ivon.state[w]["step"], bool((w.abs() < 1).all())
    (1, True)

    Reference: Y. Shen et al., "Variational Learning is Effective for Large Deep Networks",
    ICML 2024.
    """

    def __init__(self) -> None:
        self._sampling = ExitStack()
        self._ivon: IVON | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, optimizer: Any = None,
                       **kwargs: Any) -> None:  # fmt: skip
        """Find IVON behind ``Trainer``'s optimizer wrappers; check ``mc_samples == 1``.

        Raises:
            TypeError: if the optimizer is not IVON.
            ValueError: if its ``mc_samples`` is not 1.
        """
        while not isinstance(optimizer, IVON) and hasattr(optimizer, "optimizer"):
            optimizer = optimizer.optimizer  # accelerate's AcceleratedOptimizer wraps it
        if not isinstance(optimizer, IVON):
            raise fail("optimizer", "an IVON (passed as Trainer(optimizers=(ivon, None)))",
                       optimizer, kind=TypeError)  # fmt: skip
        if optimizer.mc_samples != 1:
            raise fail("mc_samples", "1 under Trainer (one backward per step)",
                       optimizer.mc_samples)  # fmt: skip
        self._ivon = optimizer

    def on_step_begin(self, args: TrainingArguments, state: TrainerState,
                      control: TrainerControl, **kwargs: Any) -> None:  # fmt: skip
        """Swap a weight sample in for the step's forward and backward passes."""
        assert self._ivon is not None, "Trainer calls on_train_begin first"
        self._sampling.enter_context(self._ivon.sampled_params(train=True))

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState,
                              control: TrainerControl, **kwargs: Any) -> None:  # fmt: skip
        """Put the mean back, recording the (clipped) gradients for ``optimizer.step()``."""
        self._sampling.close()
