r"""IVON, the Improved Variational Online Newton optimizer, written from Algorithm 1 of the paper.

IVON learns a diagonal Gaussian posterior :math:`q(\theta) = \mathcal N(m, \sigma^2)` over the
weights. Every step draws :math:`\theta = m + \sigma \epsilon`, takes the gradient
:math:`\hat g` there, estimates the Hessian by the reparameterisation trick
:math:`\hat h = \hat g\, (\theta - m) / \sigma^2`, and updates (Shen et al., Alg. 1)

.. math::
    g &\leftarrow \beta_1 g + (1 - \beta_1)\hat g \\
    h &\leftarrow \beta_2 h + (1 - \beta_2)\hat h
        + \tfrac12 (1 - \beta_2)^2 (h - \hat h)^2 / (h + \delta) \\
    m &\leftarrow m - \alpha\, \big(g / (1 - \beta_1^t) + \delta m\big) / (h + \delta) \\
    \sigma &\leftarrow 1 / \sqrt{\lambda (h + \delta)}

with effective sample size :math:`\lambda` (``ess``, usually the training-set size) and weight
decay :math:`\delta`. Yang et al. (2025) show the expectation over :math:`q` acts as an adaptive,
per-example label noise; see :mod:`smoothlab.analysis`.

References: Y. Shen, N. Daheim, B. Cong, P. Nickl, G. M. Marconi, C. Bazan, R. Yokota,
I. Gurevych, D. Cremers, M. E. Khan, T. Möllenhoff, "Variational Learning is Effective for Large
Deep Networks", ICML 2024. S.-H. Yang, Z. Liu, G. M. Marconi, M. E. Khan, "Variational Learning
Induces Adaptive Label Smoothing", 2025.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from smoothlab._checks import check_generator, check_int, fail
from smoothlab.optim._ivon_kernels import hessian_update_, mean_update_, refresh_scale_
from smoothlab.optim._ivon_state import (
    Buffers,
    PosteriorPrediction,
    check_group,
    default_generator,
    keep_saved_dtypes,
    state_dtype,
)

__all__ = ["IVON", "PosteriorPrediction"]

_Swap = tuple[Tensor, dict[str, Any], Tensor]  # a sampled parameter, its group, its mean's data


class IVON(torch.optim.Optimizer):
    r"""Improved Variational Online Newton (Shen et al., ICML 2024), clean-room from Algorithm 1.

    See the module docstring for the update. The training loop samples weights, runs forward and
    backward on the sample, and then steps::

        for x, y in loader:
            for _ in range(optimizer.mc_samples):
                with optimizer.sampled_params(train=True):
                    optimizer.zero_grad()
                    loss_fn(model(x), y).backward()
            optimizer.step()

    **Closure protocol.** ``step(closure)`` calls ``closure`` ``mc_samples`` times; each call must
    draw its own sample with ``with optimizer.sampled_params(train=True):`` around zero_grad,
    forward and backward, and return the loss. ``step`` returns the mean of the returned losses.

    Args:
        params: parameters or parameter groups (every hyperparameter below except
            ``mc_samples`` and ``generator`` may be set per group).
        lr: learning rate :math:`\alpha > 0`.
        ess: effective sample size :math:`\lambda > 0`, usually the number of training examples.
        hess_init: initial Hessian :math:`h_0 > 0`; at initialisation
            :math:`\sigma = 1/\sqrt{\lambda (h_0 + \delta)}`.
        beta1: gradient momentum in ``[0, 1)``.
        beta2: Hessian momentum in ``[0, 1]``; 1 keeps :math:`h`, hence :math:`\sigma`, fixed
            (the fixed-covariance ablation of Yang et al., Fig. 6).
        weight_decay: :math:`\delta \ge 0`, the prior precision per example.
        mc_samples: number of samples averaged per step (each one forward and backward).
        clip_radius: entries of the preconditioned update are clipped to ``[-r, r]``
            (default: no clipping).
        rescale_lr: multiply ``lr`` by :math:`h_0 + \delta` (the optional line of Algorithm 1),
            so that ``lr`` is the step size of the first, preconditioned updates.
        generator: the ``torch.Generator`` that draws :math:`\epsilon` (on the parameters'
            device). Default: a new one seeded from the global torch RNG, so ``torch.manual_seed``
            makes runs repeatable. Its state is saved by :meth:`state_dict`.

    Parameters with ``requires_grad=False`` are never perturbed; parameters that received no
    gradient in any sample are skipped in that step (a gradient missing from some of the
    samples counts as zero). The state (``momentum``, ``hess``, a per-parameter ``step`` count,
    and a float32 ``mean`` for bfloat16/float16 parameters, which then hold the rounded mean)
    is kept in float32, or float64 for float64 parameters. Besides the state, IVON keeps five
    parameter-sized scratch buffers (the noise, the sample, :math:`h - \hat h`,
    :math:`\lambda (h + \delta)` and :math:`\sigma`), so that a step allocates nothing.

    >>> w = nn.Parameter(torch.tensor([2.0, -1.0]))
    >>> opt = IVON([w], lr=0.5, ess=10_000.0, generator=torch.Generator().manual_seed(0))
    >>> opt.posterior_std()[0]  # 1 / sqrt(10_000 * (1.0 + 1e-4))
    tensor([0.0100, 0.0100])
    >>> for _ in range(100):
    ...     with opt.sampled_params(train=True):
    ...         opt.zero_grad()
    ...         (w**2).sum().backward()
    ...     _ = opt.step()
    >>> w.data
    tensor([0.0004, 0.0063])

    Reference: Shen et al., "Variational Learning is Effective for Large Deep Networks", ICML
    2024, Algorithm 1 (reprinted by Yang et al., 2025, App. A.2).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        ess: float,
        *,
        hess_init: float = 1.0,
        beta1: float = 0.9,
        beta2: float = 0.99999,
        weight_decay: float = 1e-4,
        mc_samples: int = 1,
        clip_radius: float = math.inf,
        rescale_lr: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.mc_samples = check_int("mc_samples", mc_samples, low=1)
        self._buffers: dict[Tensor, Buffers] = {}
        self._counts: dict[Tensor, int] = {}
        self._samples = 0
        self._sampling = False
        defaults = {
            "lr": lr,
            "ess": ess,
            "hess_init": hess_init,
            "beta1": beta1,
            "beta2": beta2,
            "weight_decay": weight_decay,
            "clip_radius": clip_radius,
            "rescale_lr": rescale_lr,
        }
        super().__init__(params, defaults)
        self._generator = check_generator(generator) or default_generator(self.param_groups)

    @property
    def generator(self) -> torch.Generator:
        """The generator that draws the weight noise."""
        return self._generator

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (validated like the constructor's arguments) and initialise its state."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        check_group(group)
        for p in group["params"]:
            self._init_state(p, group)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> None:
        if not p.is_floating_point():
            raise fail("params", "floating-point tensors", p, kind=TypeError)
        dtype = state_dtype(p)
        state = self.state[p]
        state["step"] = 0
        state["momentum"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
        state["hess"] = torch.full_like(p, group["hess_init"], dtype=dtype)
        if dtype != p.dtype:
            state["mean"] = p.detach().to(dtype, copy=True)

    # ----------------------------------------------------------------------------- sampling
    @contextmanager
    def sampled_params(self, train: bool = False) -> Iterator[None]:
        r"""Swap :math:`\theta = m + \sigma\epsilon` into the parameters for the ``with`` body.

        :math:`\epsilon \sim \mathcal N(0, I)` comes from :attr:`generator`. On exit the mean
        :math:`m` is put back bitwise (the parameters' storage is swapped, not overwritten).
        With ``train=True`` the gradients present on exit are recorded as one Monte Carlo sample
        for the next :meth:`step`: :math:`\hat h = \hat g\,\epsilon/\sigma` is accumulated and
        the gradient momentum takes its share :math:`(1 - \beta_1)\hat g / S` at once (zero
        the gradients before each backward, as in the class example). Nothing is recorded if
        the body raises.
        """
        with self._swapped(self._generator) as swapped:
            yield
        if train:
            self._record(swapped)

    @contextmanager
    def _swapped(self, generator: torch.Generator) -> Iterator[list[_Swap]]:
        if self._sampling:
            raise RuntimeError("`sampled_params()` must not be nested, got a nested call")
        self._sampling = True
        swapped: list[_Swap] = []
        try:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.requires_grad:
                            mean_data = p.data
                            p.data = self._draw(p, group, generator)
                            swapped.append((p, group, mean_data))
            yield swapped
        finally:
            for p, _, mean_data in swapped:
                p.data = mean_data
            self._sampling = False

    def _draw(self, p: Tensor, group: dict[str, Any], generator: torch.Generator) -> Tensor:
        buffers = self._buffers_for(p, group)
        self._fill_noise(buffers.noise, generator)
        return torch.addcmul(self._mean(p), buffers.sigma, buffers.noise, out=buffers.sample)

    @staticmethod
    def _fill_noise(noise: Tensor, generator: torch.Generator) -> None:
        noise.normal_(generator=generator)

    def _record(self, swapped: list[_Swap]) -> None:
        # The gradient momentum takes each sample's share at once, (1 - beta1) / mc_samples, so
        # g-hat never needs a buffer of its own; a missing gradient counts as zero.
        with torch.no_grad():
            for p, group, _ in swapped:
                if p.grad is not None:
                    self._record_one(p, p.grad, group["beta1"], 1.0 / self.mc_samples)
        self._samples += 1

    def _record_one(self, p: Tensor, grad: Tensor, beta1: float, share: float) -> None:
        if grad.is_sparse:
            raise fail("gradients", "dense", "!a sparse gradient", kind=RuntimeError)
        buffers, state = self._buffers[p], self.state[p]
        hess, momentum = state["hess"], state["momentum"]
        count = self._counts.get(p, 0)
        first = count == 0
        # h_hat = g_hat * (theta - m) / sigma^2 = g_hat * epsilon / sigma; keep h - h_hat
        g_eps = buffers.noise.mul_(grad)
        if first:
            torch.addcdiv(hess, g_eps, buffers.sigma, value=-1.0, out=buffers.diff_sum)
        else:
            buffers.diff_sum.add_(torch.addcdiv(hess, g_eps, buffers.sigma, value=-1.0, out=g_eps))
        if first and share == 1.0 and grad.dtype == momentum.dtype:  # one pass
            momentum.lerp_(grad, 1.0 - beta1)
        else:
            if first:
                momentum.mul_(beta1)
            momentum.add_(grad, alpha=(1.0 - beta1) * share)
        self._counts[p] = count + 1

    # --------------------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update the posterior from the samples recorded since the last step.

        Returns the mean loss returned by ``closure`` (see the closure protocol), else ``None``.

        Raises:
            RuntimeError: if the number of recorded samples is not ``mc_samples``.
        """
        loss = None
        if closure is not None:
            losses = []
            for _ in range(self.mc_samples):
                with torch.enable_grad():
                    losses.append(closure())
            loss = sum(losses) / len(losses)
        if self._sampling:
            raise RuntimeError("`step()` must come after the `sampled_params()` block, got a "
                               "call inside it")  # fmt: skip
        if self._samples != self.mc_samples:
            raise RuntimeError(
                f"`step()` must follow mc_samples={self.mc_samples} backward pass(es) inside "
                f"`with optimizer.sampled_params(train=True):`, got {self._samples}"
            )
        for group in self.param_groups:
            params = [p for p in group["params"] if self._counts.get(p, 0) > 0]
            if params:
                self._update_group(group, params)
        self._counts.clear()
        self._samples = 0
        return loss

    def _update_group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        wd, ess, n = group["weight_decay"], group["ess"], self.mc_samples
        lr = group["lr"] * ((group["hess_init"] + wd) if group["rescale_lr"] else 1.0)
        for p in params:
            buf, state = self._buffers[p], self.state[p]
            diff, missing = buf.diff_sum, n - self._counts[p]
            if missing:  # samples without a gradient have h_hat = 0
                diff.add_(state["hess"], alpha=missing)
            if n > 1:
                diff.div_(n)
            state["step"] += 1
            hessian_update_(state["hess"], diff, buf.precision, beta2=group["beta2"], ess=ess)
            refresh_scale_(state["hess"], buf.precision, buf.sigma, ess=ess, weight_decay=wd)
            debias = 1.0 / (1.0 - group["beta1"] ** state["step"])
            mean_update_(
                self._mean(p), state["momentum"], buf.precision, buf.noise,
                lr=lr, debias=debias, weight_decay=wd, ess=ess, clip_radius=group["clip_radius"],
            )  # fmt: skip
            if "mean" in state:
                p.copy_(state["mean"])

    # ------------------------------------------------------------------------------ helpers
    def _mean(self, p: Tensor) -> Tensor:
        mean: Tensor = self.state[p].get("mean", p.data)
        return mean

    def _buffers_for(self, p: Tensor, group: dict[str, Any]) -> Buffers:
        key = (float(group["weight_decay"]), float(group["ess"]))
        buffers = self._buffers.get(p)
        if buffers is None:
            hess = self.state[p]["hess"]
            buffers = Buffers(
                noise=torch.empty_like(hess),
                sample=torch.empty_like(p),
                diff_sum=torch.empty_like(hess),
                precision=torch.empty_like(hess),
                sigma=torch.empty_like(hess),
                key=(math.nan, math.nan),
            )
            self._buffers[p] = buffers
        if buffers.key != key:  # new, resumed, or weight_decay / ess changed by the user
            refresh_scale_(self.state[p]["hess"], buffers.precision, buffers.sigma, ess=key[1],
                           weight_decay=key[0])  # fmt: skip
            buffers.key = key
        return buffers

    def posterior_std(self) -> list[Tensor]:
        r"""The posterior standard deviations :math:`\sigma = 1/\sqrt{\lambda (h + \delta)}`.

        One tensor per parameter (shaped like it), in the order of ``param_groups``.

        >>> opt = IVON(nn.Linear(2, 1).parameters(), lr=0.1, ess=4.0, hess_init=0.25,
        ...            weight_decay=0.0)
        >>> [tuple(s.shape) for s in opt.posterior_std()], opt.posterior_std()[1]
        ([(1, 2), (1,)], tensor([1.]))
        """
        out = []
        for group in self.param_groups:
            for p in group["params"]:
                hess = self.state[p]["hess"]
                precision, sigma = torch.empty_like(hess), torch.empty_like(hess)
                refresh_scale_(hess, precision, sigma, ess=group["ess"],
                               weight_decay=group["weight_decay"])  # fmt: skip
                out.append(sigma)
        return out

    @torch.no_grad()
    def predict(
        self,
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

    # ------------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """The torch state dict plus ``"ivon": {"generator_state": ...}`` (a uint8 tensor).

        Raises:
            RuntimeError: if samples are recorded for a step that has not happened yet.
        """
        if self._samples:
            pending = f"{self._samples} recorded sample(s) waiting for `step()`"
            raise RuntimeError(f"`state_dict()` must be taken between steps, got {pending}")
        state = super().state_dict()
        state["ivon"] = {"generator_state": self._generator.get_state()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore state, step counts and the sampling generator for a bitwise resume."""
        state_dict = dict(state_dict)
        extra = state_dict.pop("ivon", None)
        if not isinstance(extra, dict) or "generator_state" not in extra:
            raise fail("state_dict", "an IVON state dict with an 'ivon' entry", "!none")
        super().load_state_dict(state_dict)
        keep_saved_dtypes(self, state_dict["state"])
        self._generator.set_state(extra["generator_state"])
        self._buffers.clear()
        self._counts.clear()
        self._samples = 0
