"""NLL, Brier score, accuracies and the logits helper against naive loops and PyTorch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from smoothlab.metrics import (
    accuracy,
    brier_score,
    negative_log_likelihood,
    probs_from_logits,
    top_k_accuracy,
)

F64 = torch.float64


def problem(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=generator, dtype=F64) * 2
    return logits, torch.softmax(logits, 1), torch.randint(c, (n,), generator=generator)


def test_nll_equals_cross_entropy_of_the_logits() -> None:
    logits, probs, target = problem(300, 7, seed=0)
    for reduction in ("mean", "sum", "none"):
        ours = negative_log_likelihood(probs, target, reduction=reduction)
        torch.testing.assert_close(ours, F.cross_entropy(logits, target, reduction=reduction))


def test_nll_of_a_zero_probability_is_inf() -> None:
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=F64)
    assert negative_log_likelihood(probs, torch.tensor([1, 0]), reduction="none").tolist() == [
        math.inf,
        math.log(2),
    ]


def naive_brier(probs: torch.Tensor, target: torch.Tensor) -> list[float]:
    scores = []
    for row, label in zip(probs.tolist(), target.tolist(), strict=True):
        scores.append(sum((p - (k == label)) ** 2 for k, p in enumerate(row)))
    return scores


def test_brier_matches_naive_loop_and_sums_over_classes() -> None:
    _, probs, target = problem(200, 5, seed=1)
    expected = naive_brier(probs, target)
    per_sample = brier_score(probs, target, reduction="none")
    assert per_sample.tolist() == pytest.approx(expected, rel=1e-12)
    assert float(brier_score(probs, target)) == pytest.approx(sum(expected) / 200, rel=1e-12)
    assert float(brier_score(probs, target, reduction="sum")) == pytest.approx(sum(expected))


def test_brier_extremes() -> None:
    perfect = torch.eye(3, dtype=F64)
    assert float(brier_score(perfect, torch.arange(3))) == 0.0
    assert float(brier_score(perfect, torch.tensor([1, 2, 0]))) == 2.0  # confidently wrong
    uniform = torch.full((1, 4), 0.25, dtype=F64)
    assert float(brier_score(uniform, torch.tensor([0]))) == pytest.approx(0.75)  # 1 - 1/C


def test_accuracy_and_top_k_match_naive_loops_with_ties() -> None:
    generator = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 4, (400, 6), generator=generator).to(F64)  # many ties
    target = torch.randint(6, (400,), generator=generator)
    for k in range(1, 7):
        hits = 0
        for row, label in zip(scores.tolist(), target.tolist(), strict=True):
            ranking = sorted(range(6), key=lambda j, row=row: (-row[j], j))
            hits += label in ranking[:k]
        assert float(top_k_accuracy(scores, target, k=k)) == pytest.approx(hits / 400)
    assert float(accuracy(scores, target)) == float(top_k_accuracy(scores, target, k=1))
    assert float(top_k_accuracy(scores, target, k=6)) == 1.0


@given(n=st.integers(1, 50), c=st.integers(2, 8), seed=st.integers(0, 2**31))
def test_accuracy_is_the_same_on_logits_and_probabilities(n: int, c: int, seed: int) -> None:
    logits, probs, target = problem(n, c, seed)
    assert float(accuracy(logits, target)) == float(accuracy(probs, target))
    k = 1 + seed % c
    assert float(top_k_accuracy(logits, target, k=k)) == float(top_k_accuracy(probs, target, k=k))
    expected = sum(int(row.argmax()) == int(t) for row, t in zip(logits, target, strict=True)) / n
    assert float(accuracy(logits, target)) == pytest.approx(expected)


def test_top_k_matches_torchmetrics() -> None:
    tm = pytest.importorskip("torchmetrics.functional.classification")
    logits, _, target = problem(500, 10, seed=3)
    for k in (1, 3, 5):
        theirs = tm.multiclass_accuracy(logits, target, 10, top_k=k, average="micro")
        assert float(top_k_accuracy(logits, target, k=k)) == pytest.approx(float(theirs))


def test_empty_inputs_give_nan() -> None:
    probs, target = torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64)
    for value in (
        negative_log_likelihood(probs, target),
        brier_score(probs, target),
        accuracy(probs, target),
        top_k_accuracy(probs, target, k=2),
    ):
        assert math.isnan(float(value))
    assert float(brier_score(probs, target, reduction="sum")) == 0.0


def test_probs_from_logits() -> None:
    logits = torch.tensor([[1000.0, 0.0], [0.0, 0.0]], dtype=torch.float16)
    probs = probs_from_logits(logits)
    assert probs.dtype == F64
    assert probs.tolist() == [[1.0, 0.0], [0.5, 0.5]]
    single = probs_from_logits(torch.randn(4, 3), dtype=torch.float32)
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.sum(1), torch.ones(4))


@pytest.mark.parametrize(
    ("logits", "kwargs", "error", "match"),
    [
        ([[0.0]], {}, TypeError, "`logits` must be a torch.Tensor, got list"),
        (torch.zeros(3), {}, ValueError, r"`logits` must be a 2-D tensor of shape \(N, C\)"),
        (torch.tensor([[math.nan, 0.0]]), {}, ValueError, "`logits` must be finite"),
        (torch.zeros(1, 2), {"dtype": torch.float16}, ValueError, "`dtype` must be torch.float32"),
    ],
)
def test_probs_from_logits_errors(logits, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        probs_from_logits(logits, **kwargs)


def test_score_errors() -> None:
    probs = torch.tensor([[0.5, 0.5]])
    with pytest.raises(ValueError, match="`reduction` must be one of 'mean', 'sum', 'none'"):
        negative_log_likelihood(probs, torch.tensor([0]), reduction="avg")
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        brier_score(probs, torch.tensor([0]), reduction="avg")
    with pytest.raises(ValueError, match="summing to 1 along dim 1"):
        brier_score(torch.tensor([[0.5, 0.4]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\], got 5"):
        negative_log_likelihood(probs, torch.tensor([5]))
    with pytest.raises(ValueError, match="`scores` must be free of NaN"):
        accuracy(torch.tensor([[math.nan, 1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"`scores` must be a 2-D tensor"):
        accuracy(torch.tensor([1.0, 2.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"one class index per row of `scores`"):
        accuracy(probs, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"`k` must be <= the number of classes \(2\), got 3"):
        top_k_accuracy(probs, torch.tensor([0]), k=3)
    with pytest.raises(ValueError, match="`k` must be >= 1, got 0"):
        top_k_accuracy(probs, torch.tensor([0]), k=0)
    with pytest.raises(TypeError, match=r"`k` must be an integer, got 1\.5"):
        top_k_accuracy(probs, torch.tensor([0]), k=1.5)


def test_nll_and_brier_gradients() -> None:
    _, probs, target = problem(6, 4, seed=5)
    probs.requires_grad_()
    # Off-simplex perturbations of 1e-6 stay inside the 1e-4 row-sum tolerance.
    for function in (negative_log_likelihood, brier_score):
        assert torch.autograd.gradcheck(lambda p, f=function: f(p, target), (probs,))
    (gradient,) = torch.autograd.grad(brier_score(probs, target, reduction="sum"), probs)
    expected = 2 * (probs - F.one_hot(target, 4))  # d/dp of sum_k (p_k - y_k)^2
    torch.testing.assert_close(gradient, expected.detach())
