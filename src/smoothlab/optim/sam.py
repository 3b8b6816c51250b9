r"""Sharpness-aware minimisation (SAM) and its adaptive variant (ASAM) around any base optimizer.

SAM minimises :math:`\max_{\|e\| \le \rho} L(w + e)`: the gradient is taken at the worst-case
neighbour :math:`w + \hat e` and applied at :math:`w` by the base optimizer. With the scale
operator :math:`T_w` (identity for SAM, :math:`\mathrm{diag}(|w| + \eta)` for ASAM),

.. math::
    \hat e = \rho\, \frac{T_w^2\, \nabla L(w)}{\| T_w \nabla L(w) \|_2},

the norm running over all parameters of the optimizer.

References: P. Foret, A. Kleiner, H. Mobahi, B. Neyshabur, "Sharpness-Aware Minimization for
Efficiently Improving Generalization", ICLR 2021. J. Kwon, J. Kim, H. Park, I. K. Choi, "ASAM:
Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of Deep Neural Networks",
ICML 2021.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from smoothlab._checks import check_bool, check_real, fail, host_reads

__all__ = ["SAM", "disable_running_stats"]

_KEYS = ("rho", "adaptive", "eta")  # SAM's own per-group values, stored in the shared groups


class SAM(torch.optim.Optimizer):
    r"""SAM / ASAM wrapped around an already constructed base optimizer over the same parameters.

    One SAM update takes two forward-backward passes::

        loss_fn(model(x), y).backward()          # gradient at w
        optimizer.first_step(zero_grad=True)     # w -> w + e
        with disable_running_stats(model):       # batch norm statistics are updated once
            loss_fn(model(x), y).backward()      # gradient at w + e
        optimizer.second_step(zero_grad=True)    # back to w, then the base optimizer's step

    or ``optimizer.step(closure, model=model)`` with a closure that zeroes the gradients, runs
    forward and backward and returns the loss (called twice; the first loss is returned).

    **Base optimizer.** Pass an *instance* (``SAM(params, torch.optim.SGD(params, lr=0.1))``)
    whose parameters are exactly ``params``. SAM's ``param_groups`` *are* the base optimizer's
    (the same list and dicts, with ``rho``, ``adaptive`` and ``eta`` added), so every torch
    learning-rate scheduler, Lightning's included, works on SAM itself, and a change through
    either optimizer is seen by both. The base optimizer's grouping wins: SAM's per-group
    ``rho`` / ``adaptive`` / ``eta`` must agree within each of its groups. :meth:`state_dict`
    saves both optimizers. Under Lightning, return SAM (and a scheduler on it) from
    ``configure_optimizers``: :meth:`step` runs Lightning's closure twice, so batch norm then
    counts each batch twice (use manual optimization and :func:`disable_running_stats` if
    that matters).

    **Mixed precision.** :math:`\hat e` is invariant to the loss scale (scaling the gradient by
    :math:`s` scales numerator and norm alike), so the first step needs no unscaling; a scaled
    gradient containing inf makes :math:`w + \hat e` NaN, which :meth:`unperturb` undoes. Let the
    scaler unscale and (possibly) skip only the base step::

        scaler.scale(loss_fn(model(x), y)).backward()
        optimizer.first_step(zero_grad=True)
        scaler.scale(loss_fn(model(x), y)).backward()
        optimizer.unperturb()                    # back to w, keeping the gradient at w + e
        scaler.step(optimizer.base_optimizer)    # unscales; skipped if the gradient has inf
        scaler.update()
        optimizer.zero_grad()

    Args:
        params: the parameters (or groups); ``rho``, ``adaptive`` and ``eta`` may be per group.
        base_optimizer: a ``torch.optim.Optimizer`` over the same parameters.
        rho: neighbourhood radius :math:`\rho \ge 0`; 0 reproduces the base optimizer bitwise.
        adaptive: ASAM's scale-invariant neighbourhood :math:`T_w = |w| + \eta`.
        eta: :math:`\eta \ge 0` of ASAM (Kwon et al. use 0.01 for biases; default 0).

    >>> w = nn.Parameter(torch.tensor([3.0, 4.0]))
    >>> sam = SAM([w], torch.optim.SGD([w], lr=0.1), rho=0.5)
    >>> (w**2).sum().backward()                  # gradient (6, 8), norm 10
    >>> sam.first_step(zero_grad=True); w.data   # w + 0.5 * (0.6, 0.8)
    tensor([3.3000, 4.4000])
    >>> (w**2).sum().backward(); sam.second_step(); w.data    # w - 0.1 * (6.6, 8.8)
    tensor([2.3400, 3.1200])
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: torch.optim.Optimizer,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.0,
    ) -> None:
        if not isinstance(base_optimizer, torch.optim.Optimizer):
            raise fail(
                "base_optimizer",
                "a torch.optim.Optimizer instance",
                f"!{type(base_optimizer).__name__}",
                kind=TypeError,
            )
        super().__init__(params, {"rho": rho, "adaptive": adaptive, "eta": eta})
        ours = {id(p) for g in self.param_groups for p in g["params"]}
        theirs = {id(p) for g in base_optimizer.param_groups for p in g["params"]}
        if ours != theirs:
            raise fail(
                "base_optimizer",
                "an optimizer over exactly the same parameters as SAM",
                f"!{len(theirs)} parameters, {len(ours & theirs)} of SAM's {len(ours)}",
            )
        self.base_optimizer = base_optimizer
        self._share_groups()

    def _share_groups(self) -> None:
        """Adopt the base optimizer's groups, adding SAM's per-group values to each."""
        ours = {id(p): g for g in self.param_groups for p in g["params"]}
        for group in self.base_optimizer.param_groups:
            values = {tuple(ours[id(p)][key] for key in _KEYS) for p in group["params"]}
            if len(values) > 1:
                expected = "groups whose rho, adaptive and eta agree within each base group"
                raise fail("params", expected, f"!{len(values)} settings in one base group")
            group.update(zip(_KEYS, values.pop(), strict=True) if values else self._sam_defaults())
        # Schedulers and Lightning read and write SAM's groups; the base step must see that.
        self.param_groups = self.base_optimizer.param_groups
        self.defaults = {**self.base_optimizer.defaults, **self.defaults}

    def _sam_defaults(self) -> dict[str, Any]:
        return {key: self.defaults[key] for key in _KEYS}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group, checking ``rho >= 0``, ``eta >= 0`` and a bool ``adaptive``.

        After construction the group goes to the base optimizer (whose list SAM shares).
        """
        if hasattr(self, "base_optimizer"):
            param_group = self._sam_defaults() | param_group
            self.base_optimizer.add_param_group(param_group)
        else:  # torch's constructor, before the groups are shared
            super().add_param_group(param_group)
        group = self.param_groups[-1]
        check_real("rho", group["rho"], low=0.0)
        check_real("eta", group["eta"], low=0.0)
        check_bool("adaptive", group["adaptive"])

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        r"""Save :math:`w` and move to :math:`w + \hat e` using the current gradients."""
        pairs = [(p, g) for g in self.param_groups for p in g["params"] if p.grad is not None]
        if pairs:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(self._scaled_grad(p, g)) for p, g in pairs])
            )
            # read on the host where that is free; on a GPU the scale stays there (a read
            # would wait for the backward pass: a synchronisation per step)
            denominator: float | Tensor = float(norm) + 1e-12 if host_reads(norm) else norm + 1e-12
        for p, group in pairs:
            state = self.state[p]
            if "old_p" in state:
                state["old_p"].copy_(p.detach())
            else:
                state["old_p"] = p.detach().clone()
            state["perturbed"] = True
            # rho * T^2 g / ||T g||; rho = 0 adds exact zeros, keeping w bitwise
            e = self._scaled_grad(p, group)
            if group["adaptive"]:
                e.mul_(p.detach().abs().add_(group["eta"]))
            if isinstance(denominator, Tensor):
                p.add_(e * (group["rho"] / denominator))
            else:
                p.add_(e, alpha=group["rho"] / denominator)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def unperturb(self) -> None:
        """Restore the saved :math:`w` bitwise; the gradients taken at :math:`w + \\hat e` stay."""
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if state.pop("perturbed", False):
                    p.copy_(state["old_p"])

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """:meth:`unperturb`, then the base optimizer's step with the gradients at w + e."""
        self.unperturb()
        self.base_optimizer.step()
        # torch's schedulers warn of a scheduler step before any optimizer step unless this flag,
        # which their wrapper of `step()` sets, is up: SAM's update is this method.
        self._opt_called = True
        if zero_grad:
            self.zero_grad()

    def step(
        self, closure: Callable[[], Any] | None = None, *, model: nn.Module | None = None
    ) -> Any:
        """Both passes: ``closure()`` at w, first step, ``closure()`` at w + e, second step.

        If ``model`` is given, the second pass runs inside :func:`disable_running_stats`, so its
        batch-norm statistics count each batch once. Returns the loss of the first call.
        """
        if closure is None:
            raise fail("closure", "a callable that runs forward and backward (SAM needs two)",
                       None)  # fmt: skip
        with torch.enable_grad():
            loss = closure()
        self.first_step(zero_grad=True)
        second_pass: AbstractContextManager[None] = (
            nullcontext() if model is None else disable_running_stats(model)
        )
        with torch.enable_grad(), second_pass:
            closure()
        self.second_step()
        return loss

    @staticmethod
    def _scaled_grad(p: Tensor, group: dict[str, Any]) -> Tensor:
        """:math:`T_w g`: a new tensor for ASAM, the gradient itself (not a copy) for SAM."""
        assert p.grad is not None  # callers pass parameters with gradients only
        if group["adaptive"]:
            return p.detach().abs().add_(group["eta"]).mul_(p.grad)
        return p.grad

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero (or drop) the gradients of all parameters."""
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """SAM's groups plus ``"base"``, the base optimizer's state (not the perturbation)."""
        state = super().state_dict()
        state["state"] = {}
        state["base"] = self.base_optimizer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the base optimizer's state and groups, and SAM's values in them."""
        if "base" not in state_dict:
            raise fail("state_dict", "a SAM state dict with a 'base' entry", "!none")
        saved, count = state_dict["param_groups"], len(self.param_groups)
        if len(saved) != count:
            raise fail("state_dict", f"{count} parameter groups", f"!{len(saved)}")
        self.base_optimizer.load_state_dict(state_dict["base"])
        groups = self.base_optimizer.param_groups  # a new list: torch rebuilds it on load
        for group, entry in zip(groups, saved, strict=True):
            group.update({key: entry[key] for key in _KEYS})
        self.param_groups = groups


@contextmanager
def disable_running_stats(model: nn.Module) -> Iterator[None]:
    """Keep batch-norm layers in training mode from updating their running statistics.

    Inside the ``with`` body every ``_BatchNorm`` module in training mode with
    ``track_running_stats=True`` normalises with the batch statistics, as usual, but leaves
    ``running_mean``, ``running_var`` and ``num_batches_tracked`` untouched (its
    ``track_running_stats`` is switched off and restored on exit). Use it around SAM's second
    forward pass so that each batch counts once.

    >>> bn = nn.BatchNorm1d(2)
    >>> with disable_running_stats(bn):
    ...     _ = bn(torch.tensor([[0.0, 1.0], [2.0, 5.0]]))
    >>> bn.running_mean, int(bn.num_batches_tracked)
    (tensor([0., 0.]), 0)
    """
    switched = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    for module in switched:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module in switched:
            module.track_running_stats = True
