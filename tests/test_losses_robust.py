"""Noise-robust baselines (loss correction, peer loss, GCE, SCE) against float64 loops."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from smoothlab.losses.robust import (
    backward_corrected_cross_entropy,
    forward_corrected_cross_entropy,
    generalized_cross_entropy,
    peer_loss,
    symmetric_cross_entropy,
)
from smoothlab.noise import estimate_transition, pairflip, symmetric

T3 = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.05, 0.7]], dtype=torch.float64)


def _log_softmax(z: list[float]) -> list[float]:
    top = max(z)
    lse = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - lse for v in z]


def _rows(logits: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in logits.double()]


def _mean(values: list[float], weights: list[float]) -> float:
    return sum(w * v for v, w in zip(values, weights, strict=True)) / sum(weights)


def naive_forward(logits: torch.Tensor, target: list[int], t: torch.Tensor) -> list[float]:
    out = []
    for z, y in zip(_rows(logits), target, strict=True):
        p = [math.exp(v) for v in _log_softmax(z)]
        out.append(-math.log(sum(p[i] * float(t[i, y]) for i in range(len(z)))))
    return out


def naive_backward(logits: torch.Tensor, target: list[int], t: torch.Tensor) -> list[float]:
    inv = torch.linalg.inv(t.double()).tolist()
    return [
        sum(-inv[y][j] * lp for j, lp in enumerate(_log_softmax(z)))
        for z, y in zip(_rows(logits), target, strict=True)
    ]


def naive_gce(logits: torch.Tensor, target: list[int], q: float) -> list[float]:
    return [
        (1 - math.exp(_log_softmax(z)[y]) ** q) / q
        for z, y in zip(_rows(logits), target, strict=True)
    ]


def naive_sce(logits: torch.Tensor, target: list[int], a: float, b: float, big_a: float) -> list:
    out = []
    for z, y in zip(_rows(logits), target, strict=True):
        log_p = _log_softmax(z)
        q_log = [0.0 if j == y else big_a for j in range(len(z))]
        rce = -sum(math.exp(lp) * ql for lp, ql in zip(log_p, q_log, strict=True))
        out.append(a * -log_p[y] + b * rce)
    return out


def _data(n: int = 6, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=torch.float64) * 2, torch.randint(
        0, k, (n,), generator=g
    )


# --- against the loops, weights included --------------------------------------------------


def test_forward_and_backward_match_loops() -> None:
    z, y = _data()
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    wy = [float(w[i]) for i in y]
    for fn, twin in (
        (forward_corrected_cross_entropy, naive_forward),
        (backward_corrected_cross_entropy, naive_backward),
    ):
        per = twin(z, y.tolist(), T3)
        got = fn(z, y, T3, reduction="none")
        torch.testing.assert_close(got, torch.tensor(per, dtype=torch.float64))
        got_w = fn(z, y, T3, weight=w)
        assert float(got_w) == pytest.approx(_mean(per, wy), rel=1e-12)


def test_gce_and_sce_match_loops() -> None:
    z, y = _data(seed=1)
    for q in (0.1, 0.7, 1.0):
        got = generalized_cross_entropy(z, y, q=q, reduction="none")
        torch.testing.assert_close(got, torch.tensor(naive_gce(z, y.tolist(), q)).double())
    got = symmetric_cross_entropy(z, y, alpha=0.3, beta=0.7, log_zero=-6.0, reduction="sum")
    assert float(got) == pytest.approx(sum(naive_sce(z, y.tolist(), 0.3, 0.7, -6.0)), rel=1e-12)


def test_peer_loss_matches_loop_with_the_same_permutations() -> None:
    z, y = _data(n=5, seed=2)
    w = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    got = peer_loss(z, y, alpha=0.4, weight=w, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    sigma, rho = torch.randperm(5, generator=g).tolist(), torch.randperm(5, generator=g).tolist()
    rows, labels = _rows(z), y.tolist()
    total = 0.0
    for n in range(5):
        own = -_log_softmax(rows[n])[labels[n]] * float(w[labels[n]])
        peer = -_log_softmax(rows[sigma[n]])[labels[rho[n]]] * float(w[labels[rho[n]]])
        total += own - 0.4 * peer
    assert float(got) == pytest.approx(total / sum(float(w[i]) for i in labels), rel=1e-12)


def test_peer_term_is_unbiased_over_permutations() -> None:
    # E[peer term] over independent uniform permutations = mean over all (input, label) pairs.
    z, y = _data(n=8, seed=3)
    ce_all = -torch.log_softmax(z, dim=1)[:, y]  # [n, m] = CE(z_n, y_m)
    exact = float(F.cross_entropy(z, y)) - 0.5 * float(ce_all.mean())
    g = torch.Generator().manual_seed(11)
    draws = torch.stack([peer_loss(z, y, alpha=0.5, generator=g) for _ in range(3000)])
    se = float(draws.std()) / math.sqrt(len(draws))
    assert abs(float(draws.mean()) - exact) < 5 * se


# --- identities ----------------------------------------------------------------------------


def test_identity_transition_is_cross_entropy() -> None:
    z = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([[0, 3], [-100, 1], [2, 2]])
    w = torch.tensor([1.0, 0.5, 2.0, 1.5])
    expected = F.cross_entropy(z, y, weight=w)
    eye = torch.eye(4)
    torch.testing.assert_close(forward_corrected_cross_entropy(z, y, eye, weight=w), expected)
    torch.testing.assert_close(backward_corrected_cross_entropy(z, y, eye, weight=w), expected)


def test_backward_correction_is_unbiased() -> None:
    # sum over the noisy label of T[y, y~] * loss(z, y~) is the clean cross-entropy.
    z, y = _data(n=4, seed=5)
    clean = F.cross_entropy(z, y, reduction="none")
    mixed = sum(
        T3[y, j] * backward_corrected_cross_entropy(z, torch.full_like(y, j), T3, reduction="none")
        for j in range(3)
    )
    torch.testing.assert_close(mixed, clean)


def test_forward_correction_accepts_estimate_transition() -> None:
    g = torch.Generator().manual_seed(6)
    clean = torch.arange(4).repeat(50)
    noisy = torch.where(torch.rand(200, generator=g) < 0.2, (clean + 1) % 4, clean)
    t_hat = estimate_transition(clean, noisy, 4)
    z = torch.randn(200, 4, generator=g)
    got = forward_corrected_cross_entropy(z, noisy, t_hat, reduction="none")
    assert got.dtype == torch.float32
    ref = naive_forward(z, noisy.tolist(), t_hat)
    torch.testing.assert_close(got, torch.tensor(ref, dtype=torch.float32))


def test_gce_tends_to_cross_entropy_and_sce_beta_zero() -> None:
    z, y = _data(seed=8)
    ce = F.cross_entropy(z, y, reduction="none")
    torch.testing.assert_close(
        generalized_cross_entropy(z, y, q=1e-9, reduction="none"), ce, rtol=1e-7, atol=1e-7
    )
    p_y = torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(generalized_cross_entropy(z, y, q=1.0, reduction="none"), 1 - p_y)
    torch.testing.assert_close(symmetric_cross_entropy(z, y, alpha=0.3, beta=0.0), 0.3 * ce.mean())
    torch.testing.assert_close(peer_loss(z, y, alpha=0.0), ce.mean())


@given(
    st.lists(st.floats(-20, 20), min_size=3, max_size=3),
    st.integers(0, 2),
    st.floats(0.01, 1.0),
)
def test_gce_lies_between_mae_and_cross_entropy(z: list[float], y: int, q: float) -> None:
    logits, target = torch.tensor([z], dtype=torch.float64), torch.tensor([y])
    gce = float(generalized_cross_entropy(logits, target, q=q))
    assert float(generalized_cross_entropy(logits, target, q=1.0)) <= gce + 1e-12
    assert gce <= float(F.cross_entropy(logits, target)) + 1e-12


def test_unbatched_and_ignored_positions() -> None:
    z = torch.tensor([1.0, -1.0, 0.5])
    y = torch.tensor(2)
    torch.testing.assert_close(
        forward_corrected_cross_entropy(z, y, torch.eye(3), reduction="none"),
        F.cross_entropy(z, y, reduction="none"),
    )
    zz, yy = _data(n=4, seed=9)
    yy[1] = -100
    got = peer_loss(zz, yy, alpha=1.0, generator=torch.Generator(), reduction="none")
    assert got.shape == (4,) and torch.isfinite(got).all()


# --- gradcheck (float64) ----------------------------------------------------------------------


def test_gradcheck() -> None:
    g = torch.Generator().manual_seed(10)
    x = torch.randn(3, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[0, 2], [1, -100], [2, 1]])
    w = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    t = symmetric(3, 0.3)
    checks = [
        lambda v: forward_corrected_cross_entropy(v, y, t, weight=w),
        lambda v: forward_corrected_cross_entropy(v, y, pairflip(3, 0.2)),
        lambda v: backward_corrected_cross_entropy(v, y, t, weight=w),
        lambda v: peer_loss(v, y, alpha=0.7, generator=torch.Generator().manual_seed(1)),
        lambda v: generalized_cross_entropy(v, y, q=0.5, weight=w),
        lambda v: symmetric_cross_entropy(v, y, alpha=0.2, beta=1.5),
    ]
    for fn in checks:
        assert torch.autograd.gradcheck(fn, x)


# --- errors ----------------------------------------------------------------------------------

Z, Y = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
ERRORS = [
    (
        lambda: forward_corrected_cross_entropy(Z, Y, torch.eye(4)),
        ValueError,
        "`transition` must be of shape (3, 3) (one row and column per class of the input), "
        "got shape (4, 4)",
    ),
    (
        lambda: forward_corrected_cross_entropy(Z, Y, torch.full((3, 3), 0.5)),
        ValueError,
        "`transition` must be row-stochastic (rows summing to 1), got row 0 summing to 1.5",
    ),
    (
        lambda: forward_corrected_cross_entropy(torch.zeros(4, 4), Y, estimate_transition(Y, Y, 4)),
        ValueError,
        "`transition` must be finite, got a matrix containing NaN or inf",
    ),
    (
        lambda: backward_corrected_cross_entropy(Z, Y, torch.full((3, 3), 1 / 3)),
        ValueError,
        "`transition` must be invertible for backward correction (condition number <= 1e+12), "
        "got a condition number of",
    ),
    (
        lambda: forward_corrected_cross_entropy(Z, Z, torch.eye(3)),
        TypeError,
        "`target` must be an integer tensor of class indices, got a torch.float32 tensor",
    ),
    (lambda: peer_loss(Z, Y, alpha=-1.0), ValueError, "`alpha` must be >= 0.0, got -1.0"),
    (
        lambda: peer_loss(Z, Y, generator=0),
        TypeError,
        "`generator` must be a torch.Generator or None, got int",
    ),
    (
        lambda: generalized_cross_entropy(Z, Y, q=0.0),
        ValueError,
        "`q` must be > 0.0, got 0.0",
    ),
    (lambda: generalized_cross_entropy(Z, Y, q=1.5), ValueError, "`q` must be <= 1.0, got 1.5"),
    (
        lambda: symmetric_cross_entropy(Z, Y, log_zero=0.0),
        ValueError,
        "`log_zero` must be < 0.0, got 0.0",
    ),
    (lambda: symmetric_cross_entropy(Z, Y, alpha=-0.1), ValueError, "`alpha` must be >= 0.0"),
    (lambda: symmetric_cross_entropy(Z, Y, beta=-2), ValueError, "`beta` must be >= 0.0, got -2"),
    (
        lambda: generalized_cross_entropy(Z, torch.tensor([0, 1, 3, 0])),
        ValueError,
        "`target` must be class indices in [0, 2] or ignore_index=-100, got 3",
    ),
]


@pytest.mark.parametrize(("call", "kind", "message"), ERRORS)
def test_errors(call: object, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call()  # type: ignore[operator]
