"""IVON runs trained stacked: each run keeps its own optimizer; only forward and backward stack.

A stack of IVON runs (:mod:`smoothlab.lab.train.stacked`) takes one step as follows. For each of
the ``S`` Monte Carlo samples, every live run's :class:`smoothlab.optim.IVON` swaps a posterior
sample :math:`\\theta_i = m_i + \\sigma_i \\epsilon_i` into its model
(``sampled_params(train=True)``); the samples are stacked into the ``(R, ...)`` leaves of the
stacked forward; one backward of :math:`\\sum_i \\ell_i(\\theta_i)` gives run ``i`` its own
gradient :math:`\\hat g_i` as slice ``i`` (no operation mixes runs), which becomes the run's
``p.grad`` before its block exits (the exit records :math:`\\hat h_i = \\hat g_i \\epsilon_i /
\\sigma_i`). Then each run's optimizer steps at the rate its schedule gives (Shen et al.,
"Variational Learning is Effective for Large Deep Networks", ICML 2024, Algorithm 1).

So the optimizer's numerics, its weight noise (the run's own generator) and its checkpoints are
the solo run's: the trainer builds the optimizer exactly as the solo loop does. Between steps
the models hold the posterior means, which the epoch's records evaluate, as the solo loop does.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from smoothlab.lab.train.optimizers import Batch
from smoothlab.lab.train.stacked_state import Stack

__all__ = ["IvonUpdate"]


class IvonUpdate:
    """The IVON step of a stack (an :class:`~smoothlab.lab.train.stacked_state.Update`):
    sampling, the optimizer state and the update stay with each run's own optimizer."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.rates_on = torch.device("cpu")  # read as Python floats: the solo loop's rates
        self.samples: int = stack.trainers[0].optimizer.mc_samples  # one count per stack_key

    def step(self, batch: Batch, epoch: int, lrs: Tensor) -> Tensor:
        """One IVON step of every live run on its own batch; each run's loss ``(R,)``, the
        mean over the samples as in the solo loop."""
        stack = self.stack
        for i, rate in enumerate(lrs.tolist()):
            if stack.alive[i]:
                trainer = stack.trainers[i]
                trainer.kind.set_lr(trainer.optimizer, rate)
        losses = [self._sample(batch, epoch) for _ in range(self.samples)]
        for i in self._live():  # a run stopped during the step is not stepped
            stack.trainers[i].optimizer.step()
        return torch.stack(losses).mean(0) if len(losses) > 1 else losses[0]

    def _live(self) -> list[int]:
        return [i for i, alive in enumerate(self.stack.alive.tolist()) if alive]

    def _sample(self, batch: Batch, epoch: int) -> Tensor:
        """A forward-backward of every live run at a posterior sample of its own, recorded by
        its optimizer; stopped runs stay at their means and are not recorded."""
        stack = self.stack
        live = self._live()
        with contextlib.ExitStack() as sampled:
            for i in live:
                sampled.enter_context(stack.trainers[i].optimizer.sampled_params(train=True))
            stack.gather()
            losses, grads = stack.gradients(batch, epoch)
            for i in live:  # before the blocks exit: the exit records the gradients
                for name, param in stack.models[i].items():
                    param.grad = grads[name][i].contiguous()
        return losses

    def settle(self) -> None:
        self.stack.gather()  # the means, which the models hold between steps

    def write_back(self, optimizers: bool = True) -> None:
        pass  # the models and optimizers are the runs' own, stepped in place
