"""The base of every lab method: a frozen dataclass whose fields are its sweepable parameters.

A method turns into an :class:`~smoothlab.lab.plan.objectives.Objective` (the training loss,
called by the loop with the epoch, which the loop owns) and names the optimizer kind it needs, a
key of :data:`smoothlab.lab.train.optimizers.OPTIMIZERS`: the train config's own (``default``),
``ivon`` or ``sam``. A method may also train with its own learning rate and
schedule, as IVON's paper does: parameters listed in its ``overrides`` replace the ``[train]`` key
of the same name (:meth:`Method.train_config`), unless left unset (``""`` or a negative number).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from smoothlab._checks import fail
from smoothlab.lab.plan.objectives import Objective, Stateless, cross_entropy
from smoothlab.lab.plan.schema import ConfigError, TrainConfig

__all__ = ["Method", "RunContext", "check", "is_set"]


def is_set(value: object) -> bool:
    """An override is unset (the ``[train]`` value applies) when ``""`` or a negative number."""
    return value != "" and not (isinstance(value, int | float) and value < 0)


def check(ok: bool, path: str, expected: str, got: object) -> None:
    """Raise a :class:`ConfigError` ``"`path` must be expected, got got"`` unless ``ok``."""
    if not ok:
        raise fail(path, expected, got, kind=ConfigError)


@dataclass(frozen=True, eq=False)
class RunContext:
    """What a run knows beyond its method's parameters, for objectives that need it.

    ``labels`` are the (noisy) labels the model trains on and ``clean_labels`` the clean ones,
    both in training-set order (the ``index`` an objective receives points into them); ``seed``
    is the run's seed, from its key, for objectives that draw random numbers (house rule 5);
    ``epochs`` is the run's ``train.epochs``, for schedules over the whole run (PS-KD's).
    """

    num_classes: int
    labels: Tensor
    clean_labels: Tensor
    seed: int
    epochs: int = 0  # 0: not known (objectives built outside a run)


@dataclass(frozen=True)
class Method:
    """Base: a method's name, description, optimizer kind, and whether it needs a teacher."""

    name: ClassVar[str]
    description: ClassVar[str]
    optimizer: ClassVar[str] = "default"
    needs_teacher: ClassVar[bool] = False
    primary: ClassVar[tuple[str, ...]] = ()  # always shown in labels
    # parameters that replace the [train] key of that name (see set_overrides)
    overrides: ClassVar[tuple[str, ...]] = ()
    # parameters added after results were stored: left out of a run's params (so of its key and
    # seeds) while at their default, so that stored runs keep their keys (see key_params)
    late: ClassVar[tuple[str, ...]] = ()

    def key_params(self) -> tuple[tuple[str, Any], ...]:
        """The ``(name, value)`` pairs a run stores and hashes: every field, except ``late``
        ones at their default."""
        fields = dataclasses.fields(self)
        return tuple(
            (f.name, getattr(self, f.name))
            for f in fields
            if f.name not in self.late or getattr(self, f.name) != f.default
        )

    def set_overrides(self) -> dict[str, Any]:
        """The ``overrides`` this method sets, by name (unset ones keep the ``[train]`` value)."""
        return {n: getattr(self, n) for n in self.overrides if is_set(getattr(self, n))}

    def train_config(self, train: TrainConfig) -> TrainConfig:
        """The ``[train]`` recipe this method trains with: ``train`` with its set overrides."""
        return dataclasses.replace(train, **self.set_overrides())

    def objective(self, num_classes: int, teacher_probs: Tensor | None = None) -> Objective:
        """The training loss; plain cross-entropy unless a subclass says otherwise."""
        return Stateless(cross_entropy)

    def run_objective(self, context: RunContext, teacher_probs: Tensor | None = None) -> Objective:
        """The objective of one run, as the loop builds it: :meth:`objective` unless a method
        needs more of the run (its labels for loss correction, its seed for peer loss)."""
        return self.objective(context.num_classes, teacher_probs)

    def label(self) -> str:
        """``name(param=value, ...)``: the row label in tables and plot legends.

        Shows the method's ``primary`` parameters and every other one that differs from its
        default, so distinct variants never share a label.
        """
        shown = [
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if f.name in self.primary or getattr(self, f.name) != f.default
        ]
        return f"{self.name}({', '.join(shown)})" if shown else self.name
