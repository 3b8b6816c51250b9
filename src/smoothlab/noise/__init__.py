"""Label noise: transition matrices, corruption, estimation (from clean labels or from anchor
points), instance-dependent noise, kinds."""

from smoothlab.noise.anchors import estimate_transition_from_anchors
from smoothlab.noise.corrupt import corrupt_labels, estimate_transition, realised_noise_rate
from smoothlab.noise.instance import InstanceNoise, instance_noise, instance_transition
from smoothlab.noise.kinds import NOISE_KINDS, NoiseBuilder, NoiseKind, noise_kind
from smoothlab.noise.matrices import (
    CIFAR10_CLASSES,
    asymmetric_cifar10,
    check_transition,
    class_dependent,
    from_column_stochastic,
    pairflip,
    random_transition,
    symmetric,
    to_column_stochastic,
    uniform,
)

__all__ = [
    "CIFAR10_CLASSES",
    "NOISE_KINDS",
    "InstanceNoise",
    "NoiseBuilder",
    "NoiseKind",
    "asymmetric_cifar10",
    "check_transition",
    "class_dependent",
    "corrupt_labels",
    "estimate_transition",
    "estimate_transition_from_anchors",
    "from_column_stochastic",
    "instance_noise",
    "instance_transition",
    "noise_kind",
    "pairflip",
    "random_transition",
    "realised_noise_rate",
    "symmetric",
    "to_column_stochastic",
    "uniform",
]
