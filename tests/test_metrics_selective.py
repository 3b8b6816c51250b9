"""AURC and E-AURC: the textbook recipe without ties, all tie orders enumerated with them."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothlab.metrics import aurc

F64 = torch.float64


def textbook_aurc(conf: list[float], error: list[int], order: list[int]) -> float:
    """Sort by confidence (the given order), then average the risks errors_k / k."""
    area, errors = 0.0, 0
    for k, i in enumerate(order, start=1):
        errors += error[i]
        area += errors / k
    return area / len(order)


def tie_averaged_aurc(conf: list[float], error: list[int]) -> float:
    """Average of the textbook AURC over every order consistent with descending confidence."""
    areas = [
        textbook_aurc(conf, error, list(order))
        for order in itertools.permutations(range(len(conf)))
        if all(conf[a] >= conf[b] for a, b in itertools.pairwise(order))
    ]
    return sum(areas) / len(areas)


def binary(conf: list[float], correct: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.tensor(conf, dtype=F64)
    return torch.stack([c, 1 - c], 1), torch.tensor([0 if ok else 1 for ok in correct])


@settings(max_examples=60, deadline=None)
@given(
    levels=st.lists(st.sampled_from([0.5, 0.6, 0.75, 0.9, 1.0]), min_size=1, max_size=6),
    seed=st.integers(0, 2**31),
)
def test_equals_the_average_over_all_tie_orders(levels: list[float], seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    correct = (torch.rand(len(levels), generator=generator) < 0.6).tolist()
    probs, target = binary(levels, correct)
    error = [0 if ok else 1 for ok in correct]
    # A confidence of 0.5 ties two classes: the arg-max is class 0, as correct assumes.
    assert float(aurc(probs, target)) == pytest.approx(tie_averaged_aurc(levels, error), abs=1e-12)


def test_without_ties_it_is_the_textbook_recipe_and_order_free() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 5, generator=generator, dtype=F64) * 2
    probs = torch.softmax(logits, 1)
    target = torch.randint(5, (200,), generator=generator)
    conf = probs.max(1).values.tolist()
    error = (probs.argmax(1) != target).long().tolist()
    order = sorted(range(200), key=lambda i: -conf[i])
    assert float(aurc(probs, target)) == pytest.approx(textbook_aurc(conf, error, order), abs=1e-12)
    shuffle = torch.randperm(200, generator=generator)
    assert float(aurc(probs[shuffle], target[shuffle])) == pytest.approx(float(aurc(probs, target)))


def test_excess_is_zero_for_a_perfect_ranking_and_matches_the_oracle() -> None:
    probs, target = binary([0.99, 0.9, 0.8, 0.7, 0.6], [True, True, True, False, False])
    assert float(aurc(probs, target, excess=True)) == pytest.approx(0.0, abs=1e-15)
    # Worst ranking: the two errors first.
    probs, target = binary([0.99, 0.9, 0.8, 0.7, 0.6], [False, False, True, True, True])
    worst = (1 + 1 + 2 / 3 + 2 / 4 + 2 / 5) / 5
    oracle = (1 / 4 + 2 / 5) / 5
    assert float(aurc(probs, target)) == pytest.approx(worst)
    assert float(aurc(probs, target, excess=True)) == pytest.approx(worst - oracle)
    # Geifman et al.'s large-N oracle r + (1 - r) log(1 - r) is the limit of ours.
    n, errors = 100000, 30000
    probs, target = binary([0.9] * n, [i >= errors for i in range(n)])
    rate = errors / n
    total = float(aurc(probs, target) - aurc(probs, target, excess=True))
    assert total == pytest.approx(rate + (1 - rate) * math.log(1 - rate), abs=1e-3)


def test_all_tied_gives_the_error_rate_and_edges() -> None:
    probs, target = binary([0.7] * 4, [True, False, False, True])
    assert float(aurc(probs, target)) == pytest.approx(0.5, abs=1e-15)
    assert math.isnan(float(aurc(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64))))
    with pytest.raises(TypeError, match="`excess` must be a bool, got 1"):
        aurc(probs, target, excess=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`target` must be class indices in \[0, 1\], got 2"):
        aurc(probs, torch.tensor([0, 1, 2, 0]))
