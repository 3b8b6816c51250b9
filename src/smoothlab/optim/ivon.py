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

import ctypes
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from smoothlab._checks import check_generator, check_int, fail
from smoothlab.optim import _ivon_native, _ivon_triton
from smoothlab.optim._ivon_grads import Fingerprint, fingerprint, mean_loss, rewritten
from smoothlab.optim._ivon_kernels import record_, update_
from smoothlab.optim._ivon_native import NoiseSource
from smoothlab.optim._ivon_predict import PosteriorMixin
from smoothlab.optim._ivon_state import (
    Block,
    Buffers,
    PosteriorPrediction,
    check_group,
    default_generator,
    keep_saved_dtypes,
    state_dtype,
)

__all__ = ["IVON", "PosteriorPrediction"]


def _base(name: str) -> Callable[..., Any]:
    """``torch.optim.Optimizer``'s method ``name``, past its ``torch._disable_dynamo`` wrapper.

    torch.optim wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict``
    so that dynamo does not trace them; the wrapper's first call imports ``torch._dynamo``,
    about 1 s of start-up in a process that compiles nothing (a lab worker training IVON runs).
    Outside compilation the wrapper only calls the function it wraps, so that is called
    directly; while dynamo traces, the wrapper is kept.
    """
    method: Callable[..., Any] = getattr(torch.optim.Optimizer, name)
    if torch.compiler.is_compiling():
        return method
    return getattr(method, "__wrapped__", method)


class IVON(PosteriorMixin, torch.optim.Optimizer):
    r"""Improved Variational Online Newton (Shen et al., ICML 2024), clean-room from Algorithm 1.

    See the module docstring for the update. The training loop samples weights, runs forward and
    backward on the sample, and then steps::

        for x, y in loader:
            for _ in range(optimizer.mc_samples):
                with optimizer.sampled_params(train=True):
                    optimizer.zero_grad()
                    loss_fn(model(x), y).backward()
            optimizer.step()

    **Closure protocol.** ``step(closure)`` draws ``mc_samples`` weight samples and calls
    ``closure`` (which zeroes the gradients, runs forward and backward, and may return the loss)
    once at each, as if inside ``with optimizer.sampled_params(train=True):``; it returns the
    mean of the losses that are not ``None`` (``None`` if none is). This is how Lightning
    (automatic and manual optimization) drives IVON unchanged. A closure that enters
    ``sampled_params(train=True)`` itself also works (that block then uses ``step``'s sample).
    If the samples were already recorded by the loop, ``step(closure)`` calls ``closure`` once,
    unsampled (Lightning's manual ``optimizer.step()`` passes a closure that does nothing).
    Under Hugging Face's ``Trainer`` use :class:`smoothlab.integrations.hf.IVONCallback`.

    **Gradient clipping** (or any other edit of ``p.grad``) must happen where IVON reads the
    gradients: inside the ``sampled_params(train=True)`` block or the closure, where it is
    honoured (Lightning's ``gradient_clip_val`` and ``Trainer``'s ``max_grad_norm`` with the
    callback clip there). A gradient written after the block, such as ``clip_grad_norm_`` or
    ``GradScaler.unscale_`` between the block and :meth:`step`, would be ignored, so
    :meth:`step` raises instead. For the same reason, accumulating gradients over several
    batches outside the block (``accumulate_grad_batches``) mixes gradients at the mean into the
    sample's: take larger batches instead.

    **Learning-rate schedulers** from ``torch.optim.lr_scheduler`` drive ``lr`` per group as for
    any optimizer. ``OneCycleLR`` and ``CyclicLR`` also cycle a momentum by default, which they
    look for as ``momentum`` or ``betas``; IVON's is ``beta1``, so pass
    ``cycle_momentum=False`` (torch's schedulers raise otherwise).

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
    is kept in float32, or float64 for float64 parameters. Besides the state, IVON keeps three
    parameter-sized scratch buffers (the noise, the sample, :math:`h - \hat h`; two more,
    :math:`\lambda (h + \delta)` and :math:`\sigma`, on the PyTorch path), so that a step
    allocates nothing.

    **Backends.** Contiguous float32 CPU parameters run compiled kernels (:mod:`smoothlab._native`,
    built on first use): three fused passes per step and noise from a Philox4x32-10 counter-based
    generator (Box-Muller normals) keyed by two words drawn from :attr:`generator` per sample, so
    seeds, ``state_dict`` resumes and thread counts keep runs bitwise repeatable on one machine.
    CUDA parameters (float32, bfloat16, float16) run Triton kernels when ``triton`` imports
    (:mod:`smoothlab._triton.ivon`: one launch per group and dtype for each of sample, record and
    update, record and update fused for one sample per step; the same Philox words, keyed on the
    device). Other parameters (float64, half on CPU,
    CUDA without Triton), machines without a C compiler,
    ``SMOOTHLAB_NATIVE=0`` and ``with smoothlab._native.disabled():`` run the PyTorch
    implementation, whose noise is ``Tensor.normal_`` from the same generator: the two backends
    compute the same update but draw different (identically distributed) noise. The switches are
    read once per ``sampled_params`` block (its sample and record) and once per :meth:`step`, not
    per parameter, so ``disabled()`` around the block or around :meth:`step` alone decides that
    part only.

    >>> from torch import nn
    >>> w = nn.Parameter(torch.tensor([2.0, -1.0]))
    >>> opt = IVON([w], lr=0.5, ess=10_000.0, generator=torch.Generator().manual_seed(0))
    >>> opt.posterior_std()[0]  # 1 / sqrt(10_000 * (1.0 + 1e-4))
    tensor([0.0100, 0.0100])
    >>> for _ in range(100):
    ...     with opt.sampled_params(train=True):
    ...         opt.zero_grad()
    ...         (w**2).sum().backward()
    ...     _ = opt.step()
    >>> bool(w.data.abs().max() < 0.01)  # near the minimum, within the posterior noise
    True

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
        self._in_closure = False  # step(closure) has drawn the sample the closure runs at
        self._read: tuple[list[Tensor], Fingerprint] = ([], {})  # what the last block read
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
        _base("add_param_group")(self, param_group)
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
        the body raises. Inside a closure run by :meth:`step`, ``sampled_params(train=True)``
        uses the sample ``step`` drew and records nothing itself.
        """
        if train and self._in_closure:
            yield
            return
        with self._swapped(self._generator) as block:
            yield
        if train:
            self._record(block)

    @contextmanager
    def _swapped(self, generator: torch.Generator) -> Iterator[Block]:
        if self._sampling:
            raise RuntimeError("`sampled_params()` must not be nested, got a nested call")
        self._sampling = True
        block, own = Block(lib=_ivon_native.kernels()), self._own_noise()
        noise = _ivon_native.NoiseSource(generator, block.lib if own else None)
        try:
            with torch.no_grad():
                drawn = _ivon_triton.sample(self, generator) if own else {}
                block.triton = bool(drawn)
                params = ((g, p) for g in self.param_groups for p in g["params"])
                for stream, (group, p) in enumerate(params):
                    if p.requires_grad:
                        mean_data = p.data
                        p.data = drawn[p] if p in drawn else self._draw(p, group, noise, stream)
                        block.swapped.append((p, group, mean_data))
            yield block
        finally:
            for p, _, mean_data in block.swapped:
                p.data = mean_data
            self._sampling = False

    def _draw(self, p: Tensor, group: dict[str, Any], noise: NoiseSource, stream: int) -> Tensor:
        buffers, state = self._buffers_for(p), self.state[p]
        if noise.lib is not None and _ivon_native.fit(p, state):
            _ivon_native.sample_(p.data, state["hess"], buffers.sample, buffers.noise,
                                 key=noise.key(), stream=stream, ess=group["ess"],
                                 weight_decay=group["weight_decay"], lib=noise.lib)  # fmt: skip
            return buffers.sample
        _, sigma = buffers.scale(state["hess"], group)
        self._fill_noise(buffers.noise, noise.generator)
        return torch.addcmul(self._mean(p), sigma, buffers.noise, out=buffers.sample)

    @staticmethod
    def _fill_noise(noise: Tensor, generator: torch.Generator) -> None:
        """The PyTorch path's noise. Overriding it (on a subclass or an instance, as the tests
        do to inject noise) makes every parameter take the PyTorch sampling path."""
        noise.normal_(generator=generator)

    def _own_noise(self) -> bool:
        """Whether the noise is IVON's own (not injected through ``_fill_noise``)."""
        return type(self)._fill_noise is IVON._fill_noise and "_fill_noise" not in vars(self)

    def _record(self, block: Block) -> None:
        # The gradient momentum takes each sample's share at once, (1 - beta1) / mc_samples, so
        # g-hat never needs a buffer of its own; a missing gradient counts as zero. The block's
        # backends are its sample's: Triton records what Triton drew (one launch per dtype).
        with torch.no_grad():
            done = _ivon_triton.record(self, block.swapped) if block.triton else set()
            for p, group, _ in block.swapped:
                if p.grad is not None and p not in done:
                    self._record_one(p, p.grad, group, 1.0 / self.mc_samples, block.lib)
        self._samples += 1
        params = [p for p, _, _ in block.swapped]
        self._read = (params, fingerprint(params))

    def _record_one(
        self, p: Tensor, grad: Tensor, group: dict[str, Any], share: float, lib: ctypes.CDLL | None
    ) -> None:
        # h_hat = g_hat * (theta - m) / sigma^2 = g_hat * epsilon / sigma; keep h - h_hat
        if grad.is_sparse:
            raise fail("gradients", "dense", "!a sparse gradient", kind=RuntimeError)
        buffers, state = self._buffers[p], self.state[p]
        count = self._counts.get(p, 0)
        hyper = {"beta1": group["beta1"], "share": share, "first": count == 0}
        if lib is not None and grad.dtype == torch.float32 and _ivon_native.fit(p, state):
            _ivon_native.record_(grad, buffers.noise, state["hess"], state["momentum"],
                                 buffers.diff_sum, ess=group["ess"],
                                 weight_decay=group["weight_decay"], lib=lib, **hyper)  # fmt: skip
        else:
            _, sigma = buffers.scale(state["hess"], group)
            record_(grad, buffers.noise, sigma, state["hess"], state["momentum"],
                    buffers.diff_sum, **hyper)  # fmt: skip
        self._counts[p] = count + 1

    # --------------------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update the posterior from the samples recorded since the last step.

        Returns the mean loss returned by ``closure`` (see the closure protocol), else ``None``.

        Raises:
            RuntimeError: if the number of recorded samples is not ``mc_samples``, if a gradient
                was written after the block that recorded it (e.g. clipped), or if ``closure``
                ran no backward while gradients from before the call are present.
        """
        loss = None
        if closure is not None and self._samples == self.mc_samples:
            with torch.enable_grad():  # the loop sampled already; a framework's no-op closure
                loss = closure()
        elif closure is not None:
            loss = mean_loss([self._sample_closure(closure) for _ in range(self.mc_samples)])
        if self._sampling:
            raise RuntimeError("`step()` must come after the `sampled_params()` block, got a "
                               "call inside it")  # fmt: skip
        if self._samples != self.mc_samples:
            raise RuntimeError(
                f"`step()` must follow mc_samples={self.mc_samples} backward pass(es) inside "
                f"`with optimizer.sampled_params(train=True):`, got {self._samples}"
            )
        if moved := len(rewritten(*self._read)):
            raise RuntimeError(
                "`p.grad` must not change between the `sampled_params(train=True)` block and "
                "`step()` (IVON reads gradients as the block exits; clip or unscale inside it "
                f"or in the closure), got {moved} gradient(s) written after the block"
            )
        lib = _ivon_native.kernels()  # one look-up (SMOOTHLAB_NATIVE, disabled()) per update
        for group in self.param_groups:
            params = [p for p in group["params"] if self._counts.get(p, 0) > 0]
            if params:
                self._update_group(group, params, lib)
        self._counts.clear()
        self._samples = 0
        self._read = ([], {})
        return loss

    def _sample_closure(self, closure: Callable[[], Any]) -> Any:
        """Run ``closure`` at a fresh sample and record its gradients as one sample."""
        params = [p for g in self.param_groups for p in g["params"]]
        before = fingerprint(params)
        with self._swapped(self._generator) as block:
            self._in_closure = True
            try:
                with torch.enable_grad():
                    loss = closure()
            finally:
                self._in_closure = False
            if before and fingerprint(params) and not rewritten(params, before):
                raise RuntimeError(
                    "`closure` must run backward when `step(closure)` calls it (IVON needs "
                    "gradients at sampled weights), got only gradients from before the call"
                )
        self._record(block)
        return loss

    def _update_group(
        self, group: dict[str, Any], params: list[Tensor], lib: ctypes.CDLL | None
    ) -> None:
        wd, n = group["weight_decay"], self.mc_samples
        lr = group["lr"] * ((group["hess_init"] + wd) if group["rescale_lr"] else 1.0)
        hyper: dict[str, Any] = {"ess": group["ess"], "weight_decay": wd, "lr": lr, "samples": n}
        hyper.update(beta2=group["beta2"], clip_radius=group["clip_radius"])
        for p in _ivon_triton.update(self, group, params, lr):  # the rest, after Triton's
            buf, state = self._buffers[p], self.state[p]
            state["step"] += 1
            hyper["debias"] = 1.0 / (1.0 - group["beta1"] ** state["step"])
            hyper["missing"] = n - self._counts[p]  # samples without a gradient: h_hat = 0
            tensors = (self._mean(p), state["hess"], state["momentum"], buf.diff_sum)
            if lib is not None and _ivon_native.fit(p, state):
                _ivon_native.update_(*tensors, lib=lib, **hyper)
                buf.stale()
            else:
                update_(*tensors, *buf.scale(state["hess"], group), buf.noise, **hyper)
                if "mean" in state:
                    p.copy_(state["mean"])

    # ------------------------------------------------------------------------------ helpers
    def _mean(self, p: Tensor) -> Tensor:
        mean: Tensor = self.state[p].get("mean", p.data)
        return mean

    def _buffers_for(self, p: Tensor) -> Buffers:
        buffers = self._buffers.get(p)
        if buffers is None:
            buffers = self._buffers[p] = Buffers.like(p, self.state[p]["hess"])
        return buffers

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the parameters' gradients (to ``None`` by default), as ``torch.optim`` does."""
        _base("zero_grad")(self, set_to_none)

    # ------------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """The torch state dict plus ``"ivon": {"generator_state": ...}`` (a uint8 tensor).

        Raises:
            RuntimeError: if samples are recorded for a step that has not happened yet.
        """
        if self._samples:
            pending = f"{self._samples} recorded sample(s) waiting for `step()`"
            raise RuntimeError(f"`state_dict()` must be taken between steps, got {pending}")
        state: dict[str, Any] = _base("state_dict")(self)
        state["ivon"] = {"generator_state": self._generator.get_state()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore state, step counts and the sampling generator for a bitwise resume."""
        state_dict = dict(state_dict)
        extra = state_dict.pop("ivon", None)
        if not isinstance(extra, dict) or "generator_state" not in extra:
            raise fail("state_dict", "an IVON state dict with an 'ivon' entry", "!none")
        _base("load_state_dict")(self, state_dict)
        keep_saved_dtypes(self, state_dict["state"])
        self._generator.set_state(extra["generator_state"])
        self._buffers.clear()
        self._counts.clear()
        self._samples = 0
        self._read = ([], {})
