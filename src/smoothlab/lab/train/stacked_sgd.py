"""SGD runs trained stacked: ``torch.optim.SGD``'s update on the stacked parameters.

The ``R`` runs of a stack (:mod:`smoothlab.lab.train.stacked`) share momentum, Nesterov and
weight decay (their :func:`~smoothlab.lab.train.stackable.stack_key`) and each has its own
learning rate :math:`\\eta_i`. With the gradient :math:`g_i` of run ``i``'s loss (slice ``i``
of the stacked gradient), weight decay :math:`\\lambda` and momentum :math:`\\mu` (dampening 0):

.. math::
    d_i = g_i + \\lambda w_i, \\quad b_i \\leftarrow \\mu b_i + d_i, \\quad
    w_i \\leftarrow w_i - \\eta_i (d_i + \\mu b_i \text{ (Nesterov) or } b_i)

as :class:`torch.optim.SGD` (Sutskever et al., ICML 2013) computes it for each run alone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from smoothlab.lab.train.optimizers import Batch
from smoothlab.lab.train.stacked_state import Stack

__all__ = ["SgdUpdate"]


class SgdUpdate:
    """``torch.optim.SGD`` (weight decay, momentum with dampening 0, Nesterov) applied to the
    stacked parameters with a learning rate per run: the stack holds the weights and momentum
    buffers, written back into the runs' models and optimizers when asked."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.rates_on = stack, stack.device
        self.momentum = {name: self._buffers(name) for name in stack.params}

    def _buffers(self, name: str) -> Tensor | None:
        """Momentum buffers of a restored SGD state (all present, or None: the first step)."""
        stack = self.stack
        found = [  # an optimizer not built yet holds no state (and is not built for this)
            t.built_optimizer.state.get(model[name], {}).get("momentum_buffer")
            if t.built_optimizer is not None
            else None
            for t, model in zip(stack.trainers, stack.models, strict=True)
        ]
        buffers: list[Tensor] = [b for b in found if b is not None]
        if len(buffers) < len(found):
            return None
        return torch.stack(buffers).to(stack.device)

    def step(self, batch: Batch, epoch: int, lrs: Tensor) -> Tensor:
        losses, grads = self.stack.gradients(batch, epoch)
        self._sgd(grads, lrs)
        return losses

    @torch.no_grad()
    def _sgd(self, grads: dict[str, Tensor], lrs: Tensor) -> None:
        """The update; stopped runs get a learning rate of 0."""
        stack = self.stack
        train = stack.trainers[0].method.train_config(stack.trainers[0].run.train)
        mu, decay = train.momentum, train.weight_decay
        nesterov = train.nesterov and mu > 0
        lrs = torch.where(stack.live, lrs, torch.zeros_like(lrs))
        for name, param in stack.params.items():
            d = grads[name]
            if decay:
                d = d.add(param, alpha=decay)
            if mu:
                buffer = self.momentum[name]
                buffer = d.clone() if buffer is None else buffer.mul_(mu).add_(d)
                self.momentum[name] = buffer
                d = d.add(buffer, alpha=mu) if nesterov else buffer
            scale = lrs.view(-1, *([1] * (param.dim() - 1))).to(param.dtype)
            param.sub_(scale * d)

    def settle(self) -> None:
        pass  # the stacked parameters are the weights

    @torch.no_grad()
    def write_back(self, optimizers: bool = True) -> None:
        """Copy the stacked weights into each trainer's model, and with ``optimizers`` the
        momentum into its optimizer (built for it: a run's optimizer is built at first use)."""
        stack = self.stack
        for i, (trainer, model) in enumerate(zip(stack.trainers, stack.models, strict=True)):
            for name, param in model.items():
                param.copy_(stack.params[name][i])
                buffer = self.momentum[name]
                if optimizers and buffer is not None:
                    state = trainer.optimizer.state[param]
                    state["momentum_buffer"] = buffer[i].clone()
