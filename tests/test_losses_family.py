"""The newer smoothing-family losses (MaxSup, MbLS, LogitNorm, logit penalty, focal, FLSD)."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from smoothlab.losses.focal import focal_loss, sample_dependent_focal_loss
from smoothlab.losses.regularized import (
    logit_norm_loss,
    logit_penalty_loss,
    margin_label_smoothing_loss,
    max_suppression_loss,
    max_suppression_schedule,
)
from smoothlab.losses.smoothing import label_smoothing_cross_entropy


def _log_softmax(z: list[float]) -> list[float]:
    top = max(z)
    lse = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - lse for v in z]


def naive(kind: str, z: list[float], y: int, **h: float) -> float:
    """One example's loss, from the formulas, in float64 loops."""
    k = len(z)
    if kind == "logit_norm":
        norm = math.sqrt(sum(v * v for v in z))
        z = [v / (h["temperature"] * (norm + 1e-7)) for v in z]
    log_p = _log_softmax(z)
    ce = -log_p[y]
    if kind == "maxsup":
        return ce + h["alpha"] * (max(z) - sum(z) / k)
    if kind == "mbls":
        return ce + h["alpha"] * sum(max(0.0, max(z) - v - h["margin"]) for v in z)
    if kind == "penalty":
        return ce + h["beta"] / 2 * sum(v * v for v in z)
    if kind == "focal":
        return (1 - math.exp(log_p[y])) ** h["gamma"] * ce
    if kind == "flsd":
        gamma = 5.0 if math.exp(log_p[y]) < 0.2 else 3.0
        return (1 - math.exp(log_p[y])) ** gamma * ce
    return ce


CALLS = {
    "maxsup": lambda z, y, **kw: max_suppression_loss(z, y, alpha=0.3, **kw),
    "mbls": lambda z, y, **kw: margin_label_smoothing_loss(z, y, margin=1.5, alpha=0.2, **kw),
    "logit_norm": lambda z, y, **kw: logit_norm_loss(z, y, temperature=0.3, **kw),
    "penalty": lambda z, y, **kw: logit_penalty_loss(z, y, beta=0.05, **kw),
    "focal": lambda z, y, **kw: focal_loss(z, y, gamma=1.5, **kw),
    "flsd": lambda z, y, **kw: sample_dependent_focal_loss(z, y, **kw),
}
HYPER = {
    "maxsup": {"alpha": 0.3},
    "mbls": {"alpha": 0.2, "margin": 1.5},
    "logit_norm": {"temperature": 0.3},
    "penalty": {"beta": 0.05},
    "focal": {"gamma": 1.5},
    "flsd": {},
}


def _data(n: int = 6, k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64) * 2
    return z, torch.randint(0, k, (n,), generator=g)


@pytest.mark.parametrize("kind", sorted(CALLS))
def test_matches_loop_with_weights_and_ignored(kind: str) -> None:
    z, y = _data()
    y[2] = -100
    w = torch.tensor([0.5, 2.0, 1.0, 1.5], dtype=torch.float64)
    per = [
        0.0 if int(t) == -100 else naive(kind, row.tolist(), int(t), **HYPER[kind])
        for row, t in zip(z, y, strict=True)
    ]
    got = CALLS[kind](z, y, reduction="none")
    torch.testing.assert_close(got, torch.tensor(per, dtype=torch.float64))
    wy = [0.0 if int(t) == -100 else float(w[t]) for t in y]
    mean = sum(a * b for a, b in zip(per, wy, strict=True)) / sum(wy)
    assert float(CALLS[kind](z, y, weight=w)) == pytest.approx(mean, rel=1e-12)


@pytest.mark.parametrize("kind", sorted(CALLS))
def test_gradcheck(kind: str) -> None:
    x = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([[0, 3], [1, -100], [2, 1]])
    w = torch.tensor([1.0, 0.5, 2.0, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: CALLS[kind](v, y, weight=w), x.requires_grad_())


def test_maxsup_is_label_smoothing_with_the_top_logit() -> None:
    # LS(z, c) = CE(z, c) + alpha (z_c - mean z): MaxSup puts the top class in place of y.
    z, y = _data(n=8, seed=2)
    top = z.argmax(dim=1)
    ls_term = label_smoothing_cross_entropy(z, top, 0.3, reduction="none") - F.cross_entropy(
        z, top, reduction="none"
    )
    got = max_suppression_loss(z, y, alpha=0.3, reduction="none") - F.cross_entropy(
        z, y, reduction="none"
    )
    torch.testing.assert_close(got, ls_term)
    torch.testing.assert_close(
        max_suppression_loss(z, top, alpha=0.3), F.cross_entropy(z, top, label_smoothing=0.3)
    )


def test_probability_targets_follow_pytorch() -> None:
    z, y = _data(seed=3)
    onehot = F.one_hot(y, 4).double()
    for kind in ("maxsup", "mbls", "logit_norm", "penalty"):
        torch.testing.assert_close(CALLS[kind](z, onehot), CALLS[kind](z, y))
    soft = torch.softmax(torch.randn(6, 4, dtype=torch.float64), dim=1)
    expected = F.cross_entropy(z, soft) + 0.05 / 2 * (z * z).sum(1).mean()
    torch.testing.assert_close(logit_penalty_loss(z, soft, beta=0.05), expected)


def test_zero_regularisers_are_cross_entropy() -> None:
    z = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([[0, 3], [-100, 1], [2, 2]])
    w = torch.tensor([1.0, 0.5, 2.0, 1.5])
    ce = F.cross_entropy(z, y, weight=w)
    torch.testing.assert_close(max_suppression_loss(z, y, alpha=0.0, weight=w), ce)
    torch.testing.assert_close(margin_label_smoothing_loss(z, y, margin=1e3, weight=w), ce)
    torch.testing.assert_close(logit_penalty_loss(z, y, beta=0.0, weight=w), ce)
    torch.testing.assert_close(focal_loss(z, y, gamma=0.0, weight=w), ce)
    torch.testing.assert_close(
        sample_dependent_focal_loss(z, y, gamma_below=1.5, gamma_above=1.5),
        focal_loss(z, y, gamma=1.5),
    )


@given(
    st.lists(st.floats(-30, 30), min_size=3, max_size=3).filter(lambda v: max(map(abs, v)) > 0.1),
    st.integers(0, 2),
    st.floats(0.01, 100.0),
)
def test_logit_norm_ignores_the_logits_scale(z: list[float], y: int, scale: float) -> None:
    logits, target = torch.tensor([z], dtype=torch.float64), torch.tensor([y])
    # eps (default 1e-7) is the one scale-dependent term; make it negligible here.
    a = logit_norm_loss(logits, target, temperature=0.1, eps=1e-13)
    b = logit_norm_loss(logits * scale, target, temperature=0.1, eps=1e-13)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@given(st.lists(st.floats(-30, 30), min_size=3, max_size=3), st.integers(0, 2))
def test_focal_is_below_cross_entropy_and_flsd_between(z: list[float], y: int) -> None:
    logits, target = torch.tensor([z], dtype=torch.float64), torch.tensor([y])
    ce = float(F.cross_entropy(logits, target))
    flsd = float(sample_dependent_focal_loss(logits, target))
    assert float(focal_loss(logits, target, gamma=5.0)) <= flsd + 1e-12
    assert flsd <= float(focal_loss(logits, target, gamma=3.0)) + 1e-12 <= ce + 2e-12


def test_max_suppression_schedule() -> None:
    s = max_suppression_schedule(90)
    assert [s(0), s(45), s(90), s(200)] == [0.1, pytest.approx(0.15), 0.2, 0.2]


Z, Y = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
ERRORS = [
    (lambda: max_suppression_loss(Z, Y, alpha=-0.1), ValueError, "`alpha` must be >= 0.0"),
    (
        lambda: margin_label_smoothing_loss(Z, Y, margin=-1.0),
        ValueError,
        "`margin` must be >= 0.0, got -1.0",
    ),
    (
        lambda: margin_label_smoothing_loss(Z, Y, alpha=math.inf),
        ValueError,
        "`alpha` must be finite, got inf",
    ),
    (
        lambda: logit_norm_loss(Z, Y, temperature=0.0),
        ValueError,
        "`temperature` must be > 0.0, got 0.0",
    ),
    (lambda: logit_norm_loss(Z, Y, eps=0), ValueError, "`eps` must be > 0.0, got 0"),
    (lambda: logit_penalty_loss(Z, Y, beta="1"), TypeError, "`beta` must be a real number"),
    (lambda: focal_loss(Z, Y, gamma=-1.0), ValueError, "`gamma` must be >= 0.0, got -1.0"),
    (
        lambda: focal_loss(Z, Z),
        TypeError,
        "`target` must be an integer tensor of class indices, got a torch.float32 tensor",
    ),
    (
        lambda: sample_dependent_focal_loss(Z, Y, threshold=1.5),
        ValueError,
        "`threshold` must be <= 1.0, got 1.5",
    ),
    (
        lambda: sample_dependent_focal_loss(Z, Y, gamma_below=-5),
        ValueError,
        "`gamma_below` must be >= 0.0, got -5",
    ),
    (
        lambda: sample_dependent_focal_loss(Z, Y, gamma_above=None),
        TypeError,
        "`gamma_above` must be a real number, got None",
    ),
    (lambda: max_suppression_schedule(0), ValueError, "`steps` must be >= 1, got 0"),
]


@pytest.mark.parametrize(("call", "kind", "message"), ERRORS)
def test_errors(call: object, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call()  # type: ignore[operator]
