"""One place per optimizer kind: how it is built, how it steps, how its learning rate is set, and
how the trained model predicts.

A method names its kind (:attr:`smoothlab.lab.plan.methods.Method.optimizer`); the loop looks it
up in :data:`OPTIMIZERS` once per run and never asks which optimizer it holds:

- ``default``: the ``[train]`` optimizer, SGD (with momentum, Nesterov) or AdamW; one
  forward-backward per step.
- ``ivon``: :class:`smoothlab.optim.IVON` (Shen et al., ICML 2024) with the method's own learning
  rate and prior; forward-backward at a posterior sample; predicts with the mean, or with the
  posterior predictive averaged over ``test_samples``; reports its most and least noisy examples.
- ``sam``: :class:`smoothlab.optim.SAM` (Foret et al., ICLR 2021) around the ``default``
  optimizer; two forward-backward passes per step, batch-norm statistics updated once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from smoothlab.lab.plan.methods import Ivon, Method, Sam
from smoothlab.lab.plan.models import classifier
from smoothlab.lab.plan.objectives import LossFn
from smoothlab.lab.plan.schema import TrainConfig
from smoothlab.lab.train.evaluation import extreme_examples, predict_logits

if TYPE_CHECKING:
    from smoothlab.lab.train.data import RunData

__all__ = ["OPTIMIZERS", "Batch", "OptimizerKind"]

Batch = tuple[Tensor, Tensor, Tensor]  # inputs, (noisy) labels, positions in the training set


@dataclass(frozen=True)
class OptimizerKind:
    """A registry entry: ``build(method, model, train, n_train, seed)``, ``step(model,
    optimizer, loss_fn, batch, epoch) -> batch loss`` (a detached tensor on the batch's device:
    the loop sums it there and reads it once per epoch, no host synchronisation per step),
    ``set_lr(optimizer, lr)``, ``predict(method, model, optimizer, x) -> float64 logits on the
    CPU``, and ``extras(model, optimizer, data)``: what the report keeps of a trained run beyond
    its metrics."""

    name: str
    build: Callable[[Method, nn.Module, TrainConfig, int, int], Any]
    step: Callable[[nn.Module, Any, LossFn, Batch, int], Tensor]
    set_lr: Callable[[Any, float], None]
    predict: Callable[[Method, nn.Module, Any, Tensor], Tensor]
    extras: Callable[[nn.Module, Any, RunData], dict[str, Any]]


def _groups(model: nn.Module, train: TrainConfig) -> Any:
    """All parameters, or with ``train.backbone_lr`` two groups: the classifier (the model's last
    Linear) at ``lr`` and the rest at ``backbone_lr``. Each group's ``lr_scale`` is its rate over
    ``lr``, so the schedule moves both (TSLA, 001, Section 5.1: FC 0.1, backbone 0.001, /10
    every 30 epochs)."""
    if train.backbone_lr <= 0:
        return model.parameters()
    head = list(classifier(model)[1].parameters())
    ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in ids]
    scale = train.backbone_lr / train.lr
    return [
        {"params": head, "lr_scale": 1.0},
        {"params": backbone, "lr": train.backbone_lr, "lr_scale": scale},
    ]


def _base(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """The ``[train]`` optimizer: AdamW, or SGD with momentum (Nesterov when asked)."""
    params = _groups(model, train)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.SGD(
        params,
        lr=train.lr,
        momentum=train.momentum,
        nesterov=train.nesterov and train.momentum > 0,
        weight_decay=train.weight_decay,
    )


def _build_default(
    method: Method, model: nn.Module, train: TrainConfig, n_train: int, seed: int
) -> Any:
    return _base(model, train)


def _build_ivon(
    method: Method, model: nn.Module, train: TrainConfig, n_train: int, seed: int
) -> Any:
    from smoothlab.optim import IVON

    assert isinstance(method, Ivon)  # the registry pairs kind "ivon" with the Ivon method
    device = next(model.parameters()).device
    return IVON(
        model.parameters(),
        lr=method.lr,
        ess=method.ess or n_train,
        hess_init=method.hess_init,
        beta1=train.momentum,
        beta2=method.beta2,
        weight_decay=method.weight_decay,
        mc_samples=method.train_samples,
        generator=torch.Generator(device).manual_seed(seed),  # weight noise from the run's key
    )


def _build_sam(
    method: Method, model: nn.Module, train: TrainConfig, n_train: int, seed: int
) -> Any:
    from smoothlab.optim import SAM

    assert isinstance(method, Sam)
    inner = _base(model, train)
    return SAM(model.parameters(), inner, rho=method.rho, adaptive=method.adaptive)


def _step_plain(
    model: nn.Module, optimizer: Any, loss_fn: LossFn, batch: Batch, epoch: int
) -> Tensor:
    x, y, index = batch
    optimizer.zero_grad()
    loss = loss_fn(model(x), y, index, epoch)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    return loss.detach()


def _step_ivon(
    model: nn.Module, optimizer: Any, loss_fn: LossFn, batch: Batch, epoch: int
) -> Tensor:
    x, y, index = batch
    losses = []
    for _ in range(optimizer.mc_samples):  # forward-backward at each posterior sample
        with optimizer.sampled_params(train=True):
            optimizer.zero_grad()
            loss = loss_fn(model(x), y, index, epoch)
            loss.backward()  # type: ignore[no-untyped-call]
        losses.append(loss.detach())
    optimizer.step()
    return torch.stack(losses).mean() if len(losses) > 1 else losses[0]


def _step_sam(
    model: nn.Module, optimizer: Any, loss_fn: LossFn, batch: Batch, epoch: int
) -> Tensor:
    from smoothlab.optim import disable_running_stats

    x, y, index = batch
    loss = loss_fn(model(x), y, index, epoch)
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.first_step(zero_grad=True)  # ascend to the worst nearby point, then descend
    with disable_running_stats(model):  # batch-norm statistics count each batch once
        loss_fn(model(x), y, index, epoch).backward()  # type: ignore[no-untyped-call]
    optimizer.second_step(zero_grad=True)
    return loss.detach()


def _set_lr(optimizer: Any, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr


def _set_lr_sam(optimizer: Any, lr: float) -> None:
    _set_lr(optimizer, lr)
    _set_lr(optimizer.base_optimizer, lr)  # SAM's descent step is the base optimizer's


def _predict(method: Method, model: nn.Module, optimizer: Any, x: Tensor) -> Tensor:
    return predict_logits(model, x)


def _predict_ivon(method: Method, model: nn.Module, optimizer: Any, x: Tensor) -> Tensor:
    """The mean's logits, or the log of the posterior predictive (softmax averaged over
    ``test_samples`` weight samples) used as logits."""
    assert isinstance(method, Ivon)
    if method.test_samples == 0:
        return predict_logits(model, x)
    prediction = optimizer.predict(model, x, n_samples=method.test_samples)
    return prediction.predictive.double().cpu().clamp_min(1e-300).log()  # type: ignore[no-any-return]


def _no_extras(model: nn.Module, optimizer: Any, data: RunData) -> dict[str, Any]:
    return {}


def _ivon_extras(model: nn.Module, optimizer: Any, data: RunData) -> dict[str, Any]:
    return {"noisy_examples": extreme_examples(model, optimizer, data)}


OPTIMIZERS: dict[str, OptimizerKind] = {
    kind.name: kind
    for kind in (
        OptimizerKind("default", _build_default, _step_plain, _set_lr, _predict, _no_extras),
        OptimizerKind("ivon", _build_ivon, _step_ivon, _set_lr, _predict_ivon, _ivon_extras),
        OptimizerKind("sam", _build_sam, _step_sam, _set_lr_sam, _predict, _no_extras),
    )
}
