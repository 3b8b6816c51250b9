"""IVON's posterior read-outs: the standard deviations and the posterior predictive."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from smoothlab._checks import check_generator, check_int
from smoothlab.optim._ivon_state import PosteriorPrediction, fresh_scale

__all__ = ["PosteriorMixin"]


class _Sampler(Protocol):
    """What the read-outs need from :class:`~smoothlab.optim.IVON`."""

    state: Any
    param_groups: list[dict[str, Any]]
    _generator: torch.Generator

    def _swapped(self, generator: torch.Generator) -> AbstractContextManager[Any]: ...


class PosteriorMixin:
    """:meth:`posterior_std` and :meth:`predict` of :class:`~smoothlab.optim.IVON`."""

    def posterior_std(self: _Sampler) -> list[Tensor]:
        r"""The posterior standard deviations :math:`\sigma = 1/\sqrt{\lambda (h + \delta)}`.

        One tensor per parameter (shaped like it), in the order of ``param_groups``.

        >>> from smoothlab.optim import IVON
        >>> opt = IVON(nn.Linear(2, 1).parameters(), lr=0.1, ess=4.0, hess_init=0.25,
        ...            weight_decay=0.0)
        >>> [tuple(s.shape) for s in opt.posterior_std()], opt.posterior_std()[1]
        ([(1, 2), (1,)], tensor([1.]))
        """
        groups = self.param_groups
        return [fresh_scale(self.state[p]["hess"], g)[1] for g in groups for p in g["params"]]

    @torch.no_grad()
    def predict(
        self: _Sampler,
        model: nn.Module,
        inputs: Tensor,
        *,
        n_samples: int,
        generator: torch.Generator | None = None,
    ) -> PosteriorPrediction:
        r"""Average softmax outputs over ``n_samples`` posterior samples, and at the mean.

        .. math::
            \bar p(x) = \frac1S \sum_{s=1}^S \mathrm{softmax}(f(x; \theta_s)),
            \qquad \theta_s \sim \mathcal N(m, \sigma^2)

        Softmax is taken over dimension 1 (PyTorch's class dimension) in at least float32. Put
        the model in ``eval()`` mode first if it has dropout or batch norm. Samples come from
        ``generator`` if given, else from :attr:`generator` (advancing the training stream).

        Shape:
            - inputs: whatever ``model`` takes; outputs ``(N, C, ...)`` logits.

        >>> from smoothlab.optim import IVON
        >>> model = nn.Linear(2, 3)
        >>> opt = IVON(model.parameters(), lr=0.1, ess=1.0)
        >>> out = opt.predict(model, torch.ones(4, 2), n_samples=16,
        ...                   generator=torch.Generator().manual_seed(0))
        >>> out.predictive.shape, out.predictive.sum(1)
        (torch.Size([4, 3]), tensor([1.0000, 1.0000, 1.0000, 1.0000]))
        """
        n_samples = check_int("n_samples", n_samples, low=1)
        generator = check_generator(generator) or self._generator

        def probs() -> Tensor:
            logits = model(inputs)
            return torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), 1)

        at_mean = probs()
        total = torch.zeros_like(at_mean)
        for _ in range(n_samples):
            with self._swapped(generator):
                total += probs()
        return PosteriorPrediction(total / n_samples, at_mean, n_samples)
