"""The methods registry: one frozen dataclass per method, its fields are its sweepable parameters.

:mod:`~smoothlab.lab.plan.methods.base` holds :class:`Method` (objective, optimizer kind,
``[train]`` overrides, table label); :mod:`~smoothlab.lab.plan.methods.smoothing` the seed papers'
methods; :mod:`~smoothlab.lab.plan.methods.baselines` the noisy-label baselines;
:mod:`~smoothlab.lab.plan.methods.family` the newer members of the smoothing family;
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
    "AdaFocal",
    "BackwardCorrection",
    "ConfidencePenalty",
    "CrossEntropy",
    "FDivergence",
    "Focal",
    "ForwardCorrection",
    "GeneralizedCrossEntropy",
    "Ivon",
    "LabelRelaxation",
    "LabelSmoothing",
    "LogitNorm",
    "LogitPenalty",
    "MarginLabelSmoothing",
    "MaxSuppression",
    "Method",
    "NegativeSmoothing",
    "OnlineSmoothing",
    "PeerLoss",
    "ProgressiveSelfDistillation",
    "RunContext",
    "Sam",
    "SampleDependentFocal",
    "SymmetricCrossEntropy",
    "TeacherSmoothing",
    "TwoStageSmoothing",
    "ZipfSmoothing",
    "make_method",
    "method_fields",
    "resolved_parameters",
]
