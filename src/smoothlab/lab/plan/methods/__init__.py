"""The methods registry: one frozen dataclass per method, its fields are its sweepable parameters.

:mod:`~smoothlab.lab.plan.methods.base` holds :class:`Method` (objective, optimizer kind,
``[train]`` overrides, table label); :mod:`~smoothlab.lab.plan.methods.smoothing` the seed papers'
methods; :mod:`~smoothlab.lab.plan.methods.baselines` the noisy-label baselines;
:mod:`~smoothlab.lab.plan.methods.registry` :data:`METHODS`, from which the CLI's
choices, ``smoothlab list`` and plot legends derive.
"""

from smoothlab.lab.plan.methods.base import Method, RunContext
from smoothlab.lab.plan.methods.baselines import (
    BackwardCorrection,
    FDivergence,
    ForwardCorrection,
    GeneralizedCrossEntropy,
    PeerLoss,
    SymmetricCrossEntropy,
)
from smoothlab.lab.plan.methods.registry import (
    METHODS,
    RENAMED,
    make_method,
    method_fields,
    resolved_parameters,
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

__all__ = [
    "METHODS",
    "RENAMED",
    "BackwardCorrection",
    "ConfidencePenalty",
    "CrossEntropy",
    "FDivergence",
    "ForwardCorrection",
    "GeneralizedCrossEntropy",
    "Ivon",
    "LabelRelaxation",
    "LabelSmoothing",
    "Method",
    "NegativeSmoothing",
    "OnlineSmoothing",
    "PeerLoss",
    "RunContext",
    "Sam",
    "SymmetricCrossEntropy",
    "TeacherSmoothing",
    "TwoStageSmoothing",
    "make_method",
    "method_fields",
    "resolved_parameters",
]
