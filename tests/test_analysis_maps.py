"""The curves behind two seed figures: 000's barycentric loss maps and 004's Fig. 2 noise curve."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smoothlab.analysis import logistic_noise_curve, simplex_grid, simplex_loss_grid

from reference import xlogy

F64 = torch.float64


# ------------------------------------------------------------------------------- simplex lattice
@pytest.mark.parametrize("n", [3, 4, 7, 30])
def test_simplex_grid_is_the_interior_lattice(n: int) -> None:
    points = simplex_grid(n)
    assert points.shape == ((n - 1) * (n - 2) // 2, 3)
    assert torch.allclose(points.sum(1), torch.ones(len(points), dtype=F64), atol=1e-15)
    counts = (points * n).round().long()
    assert torch.allclose(counts.double() / n, points, rtol=0, atol=1e-15)
    assert counts.min() >= 1
    assert len({tuple(row) for row in counts.tolist()}) == len(points)


# --------------------------------------------------------------------------------- loss maps
@pytest.mark.parametrize(("true_class", "rate", "n"), [(0, 0.25, 12), (1, 0.5, 6), (2, 0.1, 30)])
def test_ls_minimum_is_the_smoothed_target(true_class: int, rate: float, n: int) -> None:
    out = simplex_loss_grid("ls", rate=rate, true_class=true_class, resolution=n)
    q = [(1 - rate) * (k == true_class) + rate / 3 for k in range(3)]
    best = out.points[out.loss.argmin()]
    assert best.tolist() == pytest.approx(q, abs=1e-12)
    entropy = -sum(xlogy(v, math.log(v)) for v in q)
    assert out.loss.min().item() == pytest.approx(entropy, rel=1e-12)
    assert out.true_class == true_class


@pytest.mark.parametrize("loss", ["ls", "relaxation"])
@given(rate=st.floats(0.05, 0.95), true_class=st.integers(0, 2))
def test_losses_match_loop(loss: str, rate: float, true_class: int) -> None:
    out = simplex_loss_grid(loss, rate=rate, true_class=true_class, resolution=7)  # type: ignore[arg-type]
    for p, got in zip(out.points.tolist(), out.loss.tolist(), strict=True):
        py = p[true_class]
        if loss == "ls":
            q = [(1 - rate) * (k == true_class) + rate / 3 for k in range(3)]
            expected = -sum(q[k] * math.log(p[k]) for k in range(3))
        elif py >= 1 - rate:
            expected = 0.0
        else:
            expected = (1 - rate) * math.log((1 - rate) / py) + rate * math.log(rate / (1 - py))
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("alpha", "true_class"), [(0.25, 0), (0.5, 2)])
def test_relaxation_is_zero_exactly_on_the_credal_set(alpha: float, true_class: int) -> None:
    out = simplex_loss_grid("relaxation", rate=alpha, true_class=true_class, resolution=40)
    inside = out.points[:, true_class] >= 1 - alpha
    assert inside.any() and (~inside).any()
    assert out.loss[inside].abs().max() < 1e-12  # every point of the set is a minimum
    assert out.loss[~inside].min() > 1e-6
    # Outside the set the loss depends on p_y alone (Prop. 1) and falls as p_y rises.
    levels = (out.points[~inside, true_class] * 40).round()
    per_level = [out.loss[~inside][levels == v] for v in levels.unique()]
    assert all(float(v.max() - v.min()) < 1e-12 for v in per_level)
    firsts = torch.stack([v[0] for v in per_level])
    assert (firsts.diff() < 0).all()


@pytest.mark.parametrize(
    ("kwargs", "kind", "message"),
    [
        ({"loss": "kl"}, ValueError, "`loss` must be one of 'ls', 'relaxation', got 'kl'"),
        ({"loss": "ls", "rate": 0.0}, ValueError, "`rate` must be > 0.0, got 0.0"),
        ({"loss": "ls", "rate": 1.0}, ValueError, "`rate` must be < 1.0, got 1.0"),
        (
            {"loss": "ls", "true_class": 3},
            ValueError,
            "`true_class` must be a class index in [0, 2], got 3",
        ),
        ({"loss": "ls", "true_class": 1.0}, TypeError, "`true_class` must be an integer, got 1.0"),
        ({"loss": "ls", "resolution": 2}, ValueError, "`resolution` must be >= 3, got 2"),
    ],
)
def test_loss_grid_errors(kwargs: dict[str, object], kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        simplex_loss_grid(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- 004's Fig. 2 curve
def _trapezoid_noise(mu: float, s: float) -> float:
    """|sigma(mu) - E sigma(mu + s e)| by the trapezoid rule on [-12, 12], float64."""
    e = np.linspace(-12.0, 12.0, 48_001)
    density = np.exp(-0.5 * e * e) / math.sqrt(2 * math.pi)
    expected = np.trapezoid(density / (1 + np.exp(-(mu + s * e))), e)
    return abs(1 / (1 + math.exp(-mu)) - float(expected))


@pytest.mark.parametrize("s", [0.5, 1.0, 2.0])
def test_noise_curve_matches_trapezoid_integration(s: float) -> None:
    mu = [-6.0, -1.5, -0.2, 0.0, 0.7, 1.53, 4.0]
    got = logistic_noise_curve(torch.tensor(mu, dtype=F64), logit_std=s)
    assert got.tolist() == pytest.approx([_trapezoid_noise(m, s) for m in mu], abs=1e-9)


def test_noise_curve_has_the_shape_of_fig_2() -> None:
    mu = torch.linspace(-8, 8, 1601, dtype=F64)
    curve = logistic_noise_curve(mu)
    assert torch.allclose(curve, curve.flip(0), atol=1e-15)  # even in mu
    assert curve[800] == 0  # no noise exactly at the boundary
    peak = mu[curve.argmax()].abs().item()
    assert 1.4 < peak < 1.7  # "large around 0 (but not at 0) with large peaks on both sides"
    assert curve[mu.abs() > 7].max() < 0.25 * curve.max()
    assert logistic_noise_curve(torch.tensor([40.0], dtype=F64)).item() < 1e-12


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (
            lambda: logistic_noise_curve(torch.zeros(2), logit_std=0.0),
            ValueError,
            "`logit_std` must be > 0.0, got 0.0",
        ),
        (
            lambda: logistic_noise_curve([0.0]),
            TypeError,
            "`mean_logit` must be a torch.Tensor, got list",
        ),
        (
            lambda: logistic_noise_curve(torch.zeros(2), degree=0),
            ValueError,
            "`degree` must be >= 1, got 0",
        ),
    ],
)
def test_noise_curve_errors(call: object, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call()  # type: ignore[operator]
