"""The methods registry: every lab method by name, and the helpers that read it.

The CLI's choices, ``smoothlab list``, config checking and plot legends derive from
:data:`METHODS`; a method's row order there is the order of tables and legends.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from smoothlab.lab.plan.methods.base import Method, is_set
from smoothlab.lab.plan.methods.baselines import (
    BackwardCorrection,
    FDivergence,
    ForwardCorrection,
    GeneralizedCrossEntropy,
    PeerLoss,
    SymmetricCrossEntropy,
)
from smoothlab.lab.plan.methods.family import (
    AdaFocal,
    Focal,
    LogitNorm,
    LogitPenalty,
    MarginLabelSmoothing,
    MaxSuppression,
    ProgressiveSelfDistillation,
    SampleDependentFocal,
    ZipfSmoothing,
)
from smoothlab.lab.plan.methods.smoothing import (
    ConfidencePenalty,
    CrossEntropy,
    Ivon,
    LabelRelaxation,
    LabelSmoothing,
    NegativeSmoothing,
    OnlineSmoothing,
    Sam,
    TeacherSmoothing,
    TwoStageSmoothing,
)
from smoothlab.lab.plan.schema import ConfigError, TrainConfig

__all__ = ["METHODS", "RENAMED", "make_method", "method_fields", "resolved_parameters"]

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        CrossEntropy,
        LabelSmoothing,
        NegativeSmoothing,
        LabelRelaxation,
        ConfidencePenalty,
        OnlineSmoothing,
        TwoStageSmoothing,
        TeacherSmoothing,
        Ivon,
        Sam,
        # the noisy-label baselines (baselines.py)
        BackwardCorrection,
        ForwardCorrection,
        PeerLoss,
        FDivergence,
        GeneralizedCrossEntropy,
        SymmetricCrossEntropy,
        # the newer members of the smoothing family (family.py)
        MaxSuppression,
        MarginLabelSmoothing,
        LogitNorm,
        LogitPenalty,
        Focal,
        SampleDependentFocal,
        AdaFocal,
        ProgressiveSelfDistillation,
        ZipfSmoothing,
    )
}


# Old method names -> new ones: a config with an old name stops with one line naming the new one.
# ``lr`` (label relaxation) read as a learning rate in ``[methods.lr]``.
RENAMED = {"lr": "relax"}


def method_fields(name: str) -> dict[str, Any]:
    """Parameter name -> type for the method ``name`` (for config checking)."""
    cls = METHODS[name]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def resolved_parameters(
    name: str, sweep: Mapping[str, tuple[Any, ...]], train: TrainConfig
) -> dict[str, list[Any]]:
    """Every parameter of method ``name`` with its values: the ``sweep`` given, else the default;
    unset overrides show the ``[train]`` value they inherit (for ``show-config``)."""
    cls = METHODS[name]
    resolved = {}
    for f in dataclasses.fields(cls):
        values = list(sweep.get(f.name, (f.default,)))
        if f.name in cls.overrides:
            values = [v if is_set(v) else getattr(train, f.name) for v in values]
        resolved[f.name] = values
    return resolved


def make_method(name: str, params: dict[str, Any] | tuple[tuple[str, Any], ...]) -> Method:
    """Instantiate the method ``name`` with ``params``."""
    if name not in METHODS:
        raise ConfigError(f"unknown method `{name}` (valid: {', '.join(METHODS)})")
    return METHODS[name](**dict(params))
