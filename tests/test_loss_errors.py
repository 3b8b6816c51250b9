"""Every bad input to the core API raises a ValueError/TypeError naming the argument and what was
expected; every message is pinned here."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest
import torch

from smoothlab import (
    ConfidencePenaltyLoss,
    LabelRelaxationLoss,
    LabelSmoothingCrossEntropyLoss,
    OnlineLabelSmoothingLoss,
    confidence_penalty_loss,
    label_relaxation_loss,
    label_smoothing_cross_entropy,
    smooth_targets,
)
from smoothlab.schedules import cosine, join, linear, step, two_stage
from smoothlab.theory import optimal_logit_gap, optimal_smoothing_rate

Z = torch.zeros(4, 3)
Y = torch.tensor([0, 1, 2, 0])
LS = label_smoothing_cross_entropy

CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("smoothing > 1", lambda: LS(Z, Y, 1.2), ValueError, "`smoothing` must be <= 1.0, got 1.2"),
    (
        "smoothing NaN",
        lambda: LS(Z, Y, math.nan),
        ValueError,
        "`smoothing` must be a number, not NaN, got nan",
    ),
    (
        "smoothing -inf",
        lambda: LS(Z, Y, -math.inf),
        ValueError,
        "`smoothing` must be finite, got -inf",
    ),
    (
        "smoothing str",
        lambda: LS(Z, Y, "0.1"),
        TypeError,
        "`smoothing` must be a real number, got '0.1'",
    ),  # type: ignore[arg-type]
    (
        "smoothing bool",
        lambda: LS(Z, Y, True),
        TypeError,
        "`smoothing` must be a real number, got True",
    ),
    (
        "alpha 0",
        lambda: label_relaxation_loss(Z, Y, 0.0),
        ValueError,
        "`alpha` must be > 0.0, got 0.0",
    ),
    (
        "alpha 1",
        lambda: label_relaxation_loss(Z, Y, 1.0),
        ValueError,
        "`alpha` must be < 1.0, got 1.0",
    ),
    (
        "beta < 0",
        lambda: confidence_penalty_loss(Z, Y, -0.1),
        ValueError,
        "`beta` must be >= 0.0, got -0.1",
    ),
    (
        "threshold < 0",
        lambda: confidence_penalty_loss(Z, Y, threshold=-1.0),
        ValueError,
        "`threshold` must be >= 0.0, got -1.0",
    ),
    (
        "target too big",
        lambda: LS(Z, torch.tensor([0, 1, 3, 0])),
        ValueError,
        "`target` must be class indices in [0, 2] or ignore_index=-100, got 3",
    ),
    (
        "target negative",
        lambda: LS(Z, torch.tensor([0, -1, 2, 0])),
        ValueError,
        "`target` must be class indices in [0, 2] or ignore_index=-100, got -1",
    ),
    (
        "float target shape",
        lambda: LS(Z, torch.zeros(4)),
        ValueError,
        "`target` must be of the input's shape (4, 3) for probability targets, got shape (4,)",
    ),
    (
        "float target to relaxation",
        lambda: label_relaxation_loss(Z, torch.zeros(4, 3)),
        TypeError,
        "`target` must be an integer tensor of class indices, got a torch.float32 tensor of shape (4, 3)",
    ),
    (
        "bool target",
        lambda: LS(Z, torch.ones(4, dtype=torch.bool)),
        TypeError,
        "`target` must be an integer tensor of class indices, got a torch.bool tensor of shape (4,)",
    ),
    (
        "target shape",
        lambda: LS(Z, torch.tensor([0, 1])),
        ValueError,
        "`target` must be of shape (4,) for class indices (input (4, 3)), got shape (2,)",
    ),
    (
        "input ints",
        lambda: LS(torch.zeros(4, 3, dtype=torch.long), Y),
        TypeError,
        "`input` must be a floating-point tensor, got a torch.int64 tensor of shape (4, 3)",
    ),
    (
        "input scalar",
        lambda: LS(torch.tensor(1.0), Y),
        ValueError,
        "`input` must be a tensor with at least 1 dimensions, got a torch.float32 tensor of shape ()",
    ),
    ("input list", lambda: LS([[0.0]], Y), TypeError, "`input` must be a torch.Tensor, got list"),  # type: ignore[arg-type]
    ("target list", lambda: LS(Z, [0, 1]), TypeError, "`target` must be a torch.Tensor, got list"),  # type: ignore[arg-type]
    (
        "reduction",
        lambda: LS(Z, Y, reduction="avg"),
        ValueError,
        "`reduction` must be one of 'mean', 'sum', 'none', got 'avg'",
    ),
    (
        "weight shape",
        lambda: LS(Z, Y, weight=torch.ones(4)),
        ValueError,
        "`weight` must be of shape (3,) (one weight per class), got shape (4,)",
    ),
    (
        "weight negative",
        lambda: LS(Z, Y, weight=torch.tensor([1.0, -1.0, 1.0])),
        ValueError,
        "`weight` must be finite and non-negative, got a torch.float32 tensor of shape (3,)",
    ),
    (
        "weighting",
        lambda: LS(Z, Y, weighting="class"),
        ValueError,
        "`weighting` must be one of 'pytorch', 'example', got 'class'",
    ),  # type: ignore[arg-type]
    (
        "example weighting soft",
        lambda: LS(Z, torch.full((4, 3), 1 / 3), weighting="example"),
        ValueError,
        "`weighting` must be 'pytorch' with probability targets, got 'example'",
    ),
    (
        "prior not a distribution",
        lambda: LS(Z, Y, prior=torch.tensor([0.5, 0.5, 0.5])),
        ValueError,
        "`prior` must be a distribution summing to 1 along dim 0, got sums off by 0.5",
    ),
    (
        "prior negative",
        lambda: LS(Z, Y, prior=torch.tensor([1.5, -0.5, 0.0])),
        ValueError,
        "`prior` must be non-negative probabilities, got a minimum of -0.5",
    ),
    (
        "prior shape",
        lambda: LS(Z, Y, prior=torch.full((2,), 0.5)),
        ValueError,
        "`prior` must be of shape (3,) or (4, 3), got shape (2,)",
    ),
    (
        "prior NaN",
        lambda: LS(Z, Y, prior=torch.tensor([math.nan, 0.5, 0.5])),
        ValueError,
        "`prior` must be finite probabilities, got a tensor containing NaN or inf",
    ),
    (
        "prior -inf among finite rows",
        lambda: LS(Z, Y, prior=torch.tensor([[1.0, 0.0, 0.0]] * 3 + [[-math.inf, 1.0, 1.0]])),
        ValueError,
        "`prior` must be finite probabilities, got a tensor containing NaN or inf",
    ),
    (
        "prior +inf and -inf in one row (a NaN sum)",
        lambda: LS(Z, Y, prior=torch.tensor([math.inf, -math.inf, 1.0])),
        ValueError,
        "`prior` must be finite probabilities, got a tensor containing NaN or inf",
    ),
    (
        "prior finite but its sum overflows float32",
        lambda: LS(Z, Y, prior=torch.tensor([3e38, 3e38, 0.0])),
        ValueError,
        "`prior` must be a distribution summing to 1 along dim 0, got sums off by inf",
    ),
    (
        "prior half precision, exact sums",
        lambda: LS(Z.half(), Y, prior=torch.tensor([0.5, 0.25, 0.2], dtype=torch.float16)),
        ValueError,
        "`prior` must be a distribution summing to 1 along dim 0, got sums off by 0.05",
    ),
    (
        "prior int",
        lambda: LS(Z, Y, prior=torch.tensor([1, 0, 0])),
        TypeError,
        "`prior` must be a floating-point tensor, got a torch.int64 tensor of shape (3,)",
    ),
    (
        "exclusive soft",
        lambda: LS(Z, torch.full((4, 3), 1 / 3), exclusive=True),
        TypeError,
        "`target` must be class indices when exclusive=True, got a torch.float32 tensor of shape (4, 3)",
    ),
    (
        "exclusive one class",
        lambda: LS(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), exclusive=True),
        ValueError,
        "`input` must be at least 2 classes when exclusive=True, got a torch.float32 tensor of shape (4, 1)",
    ),
    (
        "exclusive one class composition",
        lambda: LS(
            torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), exclusive=True, fused=False
        ),
        ValueError,
        "`input` must be at least 2 classes when exclusive=True, got a torch.float32 tensor of shape (4, 1)",
    ),
    (
        "exclusive not bool",
        lambda: LS(Z, Y, exclusive=1),
        TypeError,
        "`exclusive` must be a bool, got 1",
    ),
    *[
        (
            f"exclusive prior one-hot, {where}",
            call,
            ValueError,
            "`prior` must be positive somewhere outside the true class when exclusive=True, "
            "got a row with all its mass on the true class",
        )
        for where, call in [
            ("fused", lambda: LS(Z, Y, exclusive=True, prior=torch.tensor([1.0, 0.0, 0.0]))),
            (
                "composition",
                lambda: LS(Z, Y, exclusive=True, prior=torch.eye(3)[Y], fused=False),
            ),
            (
                "smooth_targets",
                lambda: smooth_targets(Y, 3, 0.1, prior=torch.eye(3)[Y], exclusive=True),
            ),
        ]
    ],
    (
        "ignore_index float",
        lambda: LS(Z, Y, ignore_index=1.5),
        TypeError,
        "`ignore_index` must be an integer, got 1.5",
    ),  # type: ignore[arg-type]
    (
        "smooth_targets classes",
        lambda: smooth_targets(Y, 1, 0.1),
        ValueError,
        "`num_classes` must be >= 2, got 1",
    ),
    (
        "smooth_targets range",
        lambda: smooth_targets(Y, 2, 0.1),
        ValueError,
        "`target` must be class indices in [0, 1], got 2",
    ),
    (
        "smooth_targets exclusive not bool",
        lambda: smooth_targets(Y, 3, 0.1, exclusive="yes"),
        TypeError,
        "`exclusive` must be a bool, got 'yes'",
    ),
    (
        "module smoothing",
        lambda: LabelSmoothingCrossEntropyLoss(2.0),
        ValueError,
        "`smoothing` must be <= 1.0, got 2.0",
    ),
    (
        "module alpha",
        lambda: LabelRelaxationLoss(alpha=1.5),
        ValueError,
        "`alpha` must be < 1.0, got 1.5",
    ),
    (
        "module beta",
        lambda: ConfidencePenaltyLoss(beta=-1),
        ValueError,
        "`beta` must be >= 0.0, got -1",
    ),
    (
        "module reduction",
        lambda: ConfidencePenaltyLoss(reduction="max"),
        ValueError,
        "`reduction` must be one of 'mean', 'sum', 'none', got 'max'",
    ),
    (
        "ols alpha",
        lambda: OnlineLabelSmoothingLoss(3, alpha=1.5),
        ValueError,
        "`alpha` must be <= 1.0, got 1.5",
    ),
    (
        "ols classes",
        lambda: OnlineLabelSmoothingLoss(3)(torch.zeros(2, 4), torch.tensor([0, 1])),
        ValueError,
        "`input` must be 3 classes along dim 1, got a torch.float32 tensor of shape (2, 4)",
    ),
    ("two_stage drop_at", lambda: two_stage(0.1, -1), ValueError, "`drop_at` must be >= 0, got -1"),
    ("schedule step", lambda: linear(0, 1, 3)(-2), ValueError, "`step` must be >= 0, got -2"),
    ("cosine steps", lambda: cosine(1.0, 0), ValueError, "`steps` must be >= 1, got 0"),
    (
        "step boundaries",
        lambda: step(1.0, [3, 2], 0.1),
        ValueError,
        "`boundaries` must be strictly increasing, got [3, 2]",
    ),
    (
        "join count",
        lambda: join([linear(0, 1, 2)], [3]),
        ValueError,
        "`boundaries` must be 0 boundaries for 1 schedules, got 1",
    ),
    (
        "join callable",
        lambda: join([1.0, linear(0, 1, 2)], [3]),
        TypeError,
        "`schedules[0]` must be callable, got 1.0",
    ),  # type: ignore[list-item]
    (
        "noise rate",
        lambda: optimal_smoothing_rate(10, 1.0),
        ValueError,
        "`noise_rate` must be < 1.0, got 1.0",
    ),
    (
        "noise rate singular",
        lambda: optimal_smoothing_rate(2, 0.5),
        ValueError,
        "`noise_rate` must be different from (K-1)/K = 0.5, where the labels carry no information, got 0.5",
    ),
    (
        "gap negative",
        lambda: optimal_logit_gap(-0.1, 10),
        ValueError,
        "`smoothing` must be >= 0 (negative smoothing has no finite optimum: its loss is unbounded below), got -0.1",
    ),
]


@pytest.mark.parametrize(("name", "call", "kind", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_message(
    name: str, call: Callable[[], object], kind: type[Exception], message: str
) -> None:
    with pytest.raises(kind, match="^" + re.escape(message) + "$"):
        call()
