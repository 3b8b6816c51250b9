"""IVON's bookkeeping: buffers, state dtypes, defaults, validation and the prediction record."""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from smoothlab._checks import check_bool, check_real
from smoothlab.optim._ivon_kernels import refresh_scale_

__all__ = [
    "Block",
    "Buffers",
    "PosteriorPrediction",
    "check_group",
    "default_generator",
    "fresh_scale",
    "keep_saved_dtypes",
    "state_dtype",
]

_FULL_PRECISION = (torch.float32, torch.float64)


@dataclass(frozen=True)
class PosteriorPrediction:
    """Class probabilities from :meth:`IVON.predict`, both of shape ``(N, C, ...)``.

    Attributes:
        predictive: the posterior predictive :math:`\\frac1S \\sum_s \\mathrm{softmax}(f(x;
            \\theta_s))`, :math:`\\theta_s \\sim q`.
        at_mean: :math:`\\mathrm{softmax}(f(x; m))`, the prediction of the mean weights.
        n_samples: :math:`S`.
    """

    predictive: Tensor
    at_mean: Tensor
    n_samples: int


@dataclass
class Block:
    """One ``sampled_params`` block: the parameters swapped to their sample, as ``(parameter,
    its group, its mean's data)``, and the backends chosen as it began, which its record keeps
    (the switches are read once per block and once per step, not per parameter)."""

    swapped: list[tuple[Tensor, dict[str, Any], Tensor]] = field(default_factory=list)
    lib: ctypes.CDLL | None = None  # the native kernels (None: PyTorch)
    triton: bool = False  # whether the Triton kernels drew any of the samples


@dataclass
class Buffers:
    r"""Per-parameter scratch that is not part of the state: rebuilt after ``load_state_dict``.

    ``precision`` and ``sigma`` are allocated on first use by the PyTorch path only (the native
    kernels recompute :math:`\sigma` from :math:`h` as they go); ``key`` records the
    ``(weight_decay, ess)`` they were computed with, NaN when :math:`h` changed since. The
    noise is allocated on first use too: the Triton kernels regenerate it from its Philox key
    instead of storing it, so on CUDA it would be a parameter-sized float32 buffer never touched.
    """

    sample: Tensor  # theta = m + sigma * epsilon in the parameter's dtype; swapped into the param
    diff_sum: Tensor  # sum over this step's samples of h - h_hat
    precision: Tensor | None = None  # ess * (h + weight_decay)
    sigma: Tensor | None = None  # 1 / sqrt(precision)
    key: tuple[float, float] = (math.nan, math.nan)
    stored_noise: Tensor | None = None  # see noise

    @classmethod
    def like(cls, p: Tensor, hess: Tensor) -> Buffers:
        """Fresh buffers for parameter ``p`` with Hessian state ``hess``."""
        return cls(torch.empty_like(p), torch.empty_like(hess))

    @property
    def noise(self) -> Tensor:
        """Epsilon of the current sample (later scratch), shaped like the Hessian state."""
        if self.stored_noise is None:
            self.stored_noise = torch.empty_like(self.diff_sum)
        return self.stored_noise

    def scale(self, hess: Tensor, group: dict[str, Any]) -> tuple[Tensor, Tensor]:
        r""":math:`P = \lambda (h + \delta)` and :math:`\sigma`, recomputed if out of date."""
        key = (float(group["weight_decay"]), float(group["ess"]))
        if self.precision is None or self.sigma is None:
            self.precision, self.sigma = torch.empty_like(hess), torch.empty_like(hess)
            self.key = (math.nan, math.nan)
        if self.key != key:  # new, resumed, h changed natively, or weight_decay / ess changed
            refresh_scale_(hess, self.precision, self.sigma, ess=key[1], weight_decay=key[0])
            self.key = key
        return self.precision, self.sigma

    def stale(self) -> None:
        """Mark ``precision`` and ``sigma`` out of date (:math:`h` changed elsewhere)."""
        self.key = (math.nan, math.nan)


def fresh_scale(hess: Tensor, group: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """New tensors :math:`P` and :math:`\\sigma` for ``hess`` under the group's ess and decay."""
    precision, sigma = torch.empty_like(hess), torch.empty_like(hess)
    refresh_scale_(hess, precision, sigma, ess=group["ess"], weight_decay=group["weight_decay"])
    return precision, sigma


def state_dtype(p: Tensor) -> torch.dtype:
    """float32 state for low-precision parameters, else the parameter's own dtype."""
    return p.dtype if p.dtype in _FULL_PRECISION else torch.float32


def default_generator(groups: list[dict[str, Any]]) -> torch.Generator:
    """A generator on the parameters' device, seeded from the global torch RNG."""
    device = next((p.device for g in groups for p in g["params"]), torch.device("cpu"))
    # Drawn from (never seeding) the global RNG, so torch.manual_seed makes a run repeatable.
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device).manual_seed(seed)


def check_group(group: dict[str, Any]) -> None:
    """Validate one parameter group's hyperparameters (house error template)."""
    check_real("lr", group["lr"], low=0.0, low_open=True)
    check_real("ess", group["ess"], low=0.0, low_open=True)
    check_real("hess_init", group["hess_init"], low=0.0, low_open=True)
    check_real("beta1", group["beta1"], low=0.0, high=1.0, high_open=True)
    check_real("beta2", group["beta2"], low=0.0, high=1.0)
    check_real("weight_decay", group["weight_decay"], low=0.0)
    if group["clip_radius"] != math.inf:
        check_real("clip_radius", group["clip_radius"], low=0.0, low_open=True)
    check_bool("rescale_lr", group["rescale_lr"])


def keep_saved_dtypes(optimizer: torch.optim.Optimizer, saved: dict[int, dict[str, Any]]) -> None:
    """Put back the saved tensors after ``Optimizer.load_state_dict``.

    torch casts floating state to each parameter's dtype, which would turn IVON's float32 state
    of bfloat16 parameters into bfloat16; the saved tensors are copied in instead.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entries in saved.items():
        p = params[index]
        for name, value in entries.items():
            if isinstance(value, Tensor):
                optimizer.state[p][name] = value.to(device=p.device, copy=True)
