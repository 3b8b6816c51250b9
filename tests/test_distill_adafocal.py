"""Self-distillation targets (PS-KD, Zipf's LS) and the stateful AdaFocal loss."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from smoothlab.adafocal import AdaFocalLoss
from smoothlab.distill import (
    progressive_self_distillation_schedule,
    progressive_self_distillation_targets,
    zipf_targets,
)
from smoothlab.losses.smoothing import label_smoothing_cross_entropy
from smoothlab.targets import smooth_targets


def _probs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64), dim=1)


# --- PS-KD ------------------------------------------------------------------------------------


def test_pskd_matches_formula_and_feeds_the_soft_loss() -> None:
    prev = _probs((5, 4, 2), seed=0)
    y = torch.randint(0, 4, (5, 2), generator=torch.Generator().manual_seed(1))
    q = progressive_self_distillation_targets(y, prev, 0.3)
    for n in range(5):
        for d in range(2):
            for j in range(4):
                expected = 0.7 * (j == int(y[n, d])) + 0.3 * float(prev[n, j, d])
                assert float(q[n, j, d]) == pytest.approx(expected, abs=1e-15)
    z = torch.randn(5, 4, 2, dtype=torch.float64)
    torch.testing.assert_close(label_smoothing_cross_entropy(z, q, 0.0), F.cross_entropy(z, q))


def test_pskd_limits() -> None:
    y = torch.tensor([2, 0, 1])
    uniform = torch.full((3, 3), 1 / 3)
    torch.testing.assert_close(
        progressive_self_distillation_targets(y, uniform, 0.2), smooth_targets(y, 3, 0.2)
    )
    torch.testing.assert_close(
        progressive_self_distillation_targets(y, _probs((3, 3), 2), 0.0),
        F.one_hot(y, 3).double(),
    )
    s = progressive_self_distillation_schedule(0.8, 300)
    assert [s(0), s(150), s(300), s(400)] == [0.0, pytest.approx(0.4), 0.8, 0.8]


# --- Zipf -------------------------------------------------------------------------------------


def naive_zipf(y: int, scores: list[float], eps: float, s: float) -> list[float]:
    others = sorted((j for j in range(len(scores)) if j != y), key=lambda j: (-scores[j], j))
    harmonic = sum(r**-s for r in range(1, len(scores)))
    q = [0.0] * len(scores)
    q[y] = 1 - eps
    for rank, j in enumerate(others, start=1):
        q[j] = eps * rank**-s / harmonic
    return q


def test_zipf_matches_loop_with_ties() -> None:
    scores = torch.tensor([[0.3, 2.0, 2.0, -1.0, 0.3], [5.0, 1.0, 4.0, 3.0, 1.0]])
    y = torch.tensor([3, 0])
    got = zipf_targets(y, scores, smoothing=0.3, power=1.5)
    for n in range(2):
        expected = naive_zipf(int(y[n]), scores[n].tolist(), 0.3, 1.5)
        torch.testing.assert_close(got[n], torch.tensor(expected, dtype=torch.float32))


def test_zipf_power_zero_is_exclusive_smoothing_and_works_per_position() -> None:
    scores = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 5, (4, 3), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(
        zipf_targets(y, scores, smoothing=0.2, power=0.0),
        smooth_targets(y, 5, 0.2, exclusive=True),
    )
    got = zipf_targets(y, scores.requires_grad_(), smoothing=0.2)
    assert not got.requires_grad
    expected = naive_zipf(int(y[1, 2]), scores[1, :, 2].tolist(), 0.2, 1.0)
    torch.testing.assert_close(got[1, :, 2], torch.tensor(expected))


@given(st.lists(st.floats(-10, 10), min_size=2, max_size=6), st.data())
def test_zipf_is_a_distribution_ordered_like_the_scores(scores: list[float], data: object) -> None:
    y = data.draw(st.integers(0, len(scores) - 1))  # type: ignore[attr-defined]
    q = zipf_targets(torch.tensor([y]), torch.tensor([scores], dtype=torch.float64))[0]
    assert float(q.sum()) == pytest.approx(1.0, abs=1e-12)
    others = [j for j in range(len(scores)) if j != y]
    for i in others:
        for j in others:
            if scores[i] > scores[j]:
                assert float(q[i]) > float(q[j])


# --- AdaFocal ---------------------------------------------------------------------------------


def naive_adafocal(z: torch.Tensor, y: torch.Tensor, edges: list[float], gammas: list[float]):
    total = 0.0
    for row, label in zip(z.tolist(), y.tolist(), strict=True):
        top = max(row)
        log_p = row[label] - top - math.log(sum(math.exp(v - top) for v in row))
        p = math.exp(log_p)
        b = max(i for i in range(len(gammas)) if p >= edges[i])
        g = gammas[b]
        total += -((1 - p) ** g if g >= 0 else (1 + p) ** -g) * log_p
    return total / len(y)


def naive_update(logits: torch.Tensor, y: torch.Tensor, gammas: list[float], bins: int) -> list:
    probs = torch.softmax(logits.double(), 1).tolist()
    rows = sorted(
        (max(p), int(p.index(max(p)) == t)) for p, t in zip(probs, y.tolist(), strict=True)
    )
    size, extra = divmod(len(rows), bins)
    out, start = [], 0
    for b in range(bins):
        chunk = rows[start : start + size + (b < extra)]
        start += len(chunk)
        gap = sum(c for c, _ in chunk) / len(chunk) - sum(a for _, a in chunk) / len(chunk)
        g = gammas[b] * math.exp(gap if gammas[b] >= 0 else -gap)
        g = (-0.2 if g > 0 else 0.2) if abs(g) < 0.2 else g
        out.append(min(max(g, -2.0), 20.0))
    return out


def test_adafocal_forward_and_update_match_loops() -> None:
    g = torch.Generator().manual_seed(5)
    loss_fn = AdaFocalLoss(num_bins=3)
    val, val_y = torch.randn(20, 4, generator=g) * 3, torch.randint(0, 4, (20,), generator=g)
    expected = naive_update(val, val_y, [1.0, 1.0, 1.0], 3)
    loss_fn.update(val, val_y)
    assert loss_fn.gammas.tolist() == pytest.approx(expected, rel=1e-12)
    loss_fn.gammas[1] = -1.5  # the inverse focal loss too
    z, y = torch.randn(9, 4, generator=g, dtype=torch.float64) * 2, torch.randint(0, 4, (9,))
    got = float(loss_fn(z, y))
    edges = loss_fn.edges.tolist()
    assert got == pytest.approx(naive_adafocal(z, y, edges, loss_fn.gammas.tolist()), rel=1e-12)
    assert torch.autograd.gradcheck(lambda v: loss_fn(v, y), z.requires_grad_())


def test_adafocal_switches_sign_and_clips() -> None:
    loss_fn = AdaFocalLoss(num_bins=1, gamma_init=0.3, lam=2.0)
    under = (torch.tensor([[1.0, 0.0]]).repeat(4, 1), torch.zeros(4, dtype=torch.long))
    loss_fn.update(*under)  # confidence 0.73, accuracy 1: 0.3 e^{-0.54} = 0.17 < S
    assert loss_fn.gammas.tolist() == [-0.2]
    loss_fn.update(*under)  # still underconfident: more inverse focal
    assert loss_fn.gammas.tolist() == [pytest.approx(-0.2 * math.exp(2 * 0.2689414), rel=1e-6)]
    over = (torch.tensor([[9.0, 0.0]]).repeat(4, 1), torch.ones(4, dtype=torch.long))
    big = AdaFocalLoss(num_bins=1, lam=100.0)
    big.update(*over)
    assert big.gammas.tolist() == [20.0]


def test_adafocal_with_zero_gamma_is_cross_entropy_and_keeps_state() -> None:
    z = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(6))
    y = torch.tensor([[0, 3], [-100, 1], [2, 2]])
    w = torch.tensor([1.0, 0.5, 2.0, 1.5])
    loss_fn = AdaFocalLoss(gamma_init=0.0, weight=w)
    torch.testing.assert_close(loss_fn(z, y), F.cross_entropy(z, y, weight=w))
    loss_fn.update(torch.randn(30, 4), torch.randint(0, 4, (30,)))
    copy = AdaFocalLoss(gamma_init=0.0, weight=w)
    copy.load_state_dict(loss_fn.state_dict())
    torch.testing.assert_close(copy(z, y), loss_fn(z, y))


# --- errors -----------------------------------------------------------------------------------

Y = torch.tensor([0, 1])
P = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
ERRORS = [
    (
        lambda: progressive_self_distillation_targets(Y, P, 1.5),
        ValueError,
        "`alpha` must be <= 1.0, got 1.5",
    ),
    (
        lambda: progressive_self_distillation_targets(
            Y, torch.tensor([[0.5, 0.6], [0.2, 0.8]]), 0.5
        ),
        ValueError,
        "`prior` must be a distribution summing to 1 along dim 1, got sums off by 0.1",
    ),
    (
        lambda: progressive_self_distillation_targets(Y, torch.tensor([0.5, 0.5]), 0.5),
        ValueError,
        "`previous_probs` must be a tensor with at least 2 dimensions",
    ),
    (
        lambda: progressive_self_distillation_schedule(2.0, 10),
        ValueError,
        "`final` must be <= 1.0, got 2.0",
    ),
    (lambda: zipf_targets(Y, P, smoothing=-0.1), ValueError, "`smoothing` must be >= 0.0"),
    (lambda: zipf_targets(Y, P, power=-1), ValueError, "`power` must be >= 0.0, got -1"),
    (
        lambda: zipf_targets(Y, P.long()),
        TypeError,
        "`scores` must be a floating-point tensor, got a torch.int64 tensor of shape (2, 2)",
    ),
    (
        lambda: zipf_targets(torch.tensor([0, 1, 1]), P),
        ValueError,
        "`target` must be of shape (2,) with scores of shape (N, C >= 2, ...), got shape (3,) "
        "with scores of shape (2, 2)",
    ),
    (
        lambda: zipf_targets(torch.tensor([0, 2]), P),
        ValueError,
        "`target` must be class indices in [0, 1], got 2",
    ),
    (lambda: AdaFocalLoss(num_bins=0), ValueError, "`num_bins` must be >= 1, got 0"),
    (lambda: AdaFocalLoss(lam=-1.0), ValueError, "`lam` must be >= 0.0, got -1.0"),
    (lambda: AdaFocalLoss(gamma_min=2.0), ValueError, "`gamma_min` must be <= 1.0, got 2.0"),
    (lambda: AdaFocalLoss(gamma_max=0.5), ValueError, "`gamma_max` must be >= 1.0, got 0.5"),
    (lambda: AdaFocalLoss(switch=-0.2), ValueError, "`switch` must be >= 0.0, got -0.2"),
    (lambda: AdaFocalLoss(reduction="avg"), ValueError, "`reduction` must be one of"),
    (
        lambda: AdaFocalLoss(num_bins=3).update(P, Y),
        ValueError,
        "`logits` must be of shape (M, C) with M >= num_bins=3, got a torch.float32 tensor "
        "of shape (2, 2)",
    ),
    (
        lambda: AdaFocalLoss(num_bins=1).update(P, torch.tensor([0, 5])),
        ValueError,
        "`target` must be class indices in [0, 1] or ignore_index=-100, got 5",
    ),
]


@pytest.mark.parametrize(("call", "kind", "message"), ERRORS)
def test_errors(call: object, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call()  # type: ignore[operator]
