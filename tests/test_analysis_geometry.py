"""Logit gaps and the template projection (Müller et al. 2019): loop twins, the LS optimum, errors."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from smoothlab import label_smoothing_cross_entropy
from smoothlab.analysis import logit_gaps, model_logit_gaps, template_projection
from smoothlab.theory import optimal_logit_gap

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ logit gaps
@given(n=st.integers(1, 6), k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_logit_gaps_match_loop(n: int, k: int, seed: int) -> None:
    gen = _gen(seed)
    z = torch.randn(n, k, generator=gen, dtype=F64)
    y = torch.randint(0, k, (n,), generator=gen)
    expected = [
        z[i, y[i]].item() - sum(z[i, j].item() for j in range(k) if j != y[i]) / (k - 1)
        for i in range(n)
    ]
    assert logit_gaps(z, y).tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("smoothing", "k"), [(0.1, 3), (0.3, 5)])
def test_a_model_trained_to_the_ls_optimum_has_the_theoretical_gap(
    smoothing: float, k: int
) -> None:
    # One-hot inputs make every example's logits free parameters, so LBFGS reaches the minimum
    # of smoothed cross-entropy, where theory puts every gap at log(1 + K (1 - r) / r).
    n = 6
    torch.manual_seed(0)  # the initial weights only
    model = nn.Linear(n, k, bias=False).double()
    x, y = torch.eye(n, dtype=F64), torch.arange(n) % k
    opt = torch.optim.LBFGS(model.parameters(), max_iter=200, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = label_smoothing_cross_entropy(model(x), y, smoothing)
        loss.backward()
        return loss

    opt.step(closure)
    gaps = model_logit_gaps(model, x, y, batch_size=4)
    assert gaps.tolist() == pytest.approx([optimal_logit_gap(smoothing, k)] * n, abs=1e-6)


def test_model_logit_gaps_batches_agree_and_use_no_graph() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    x, y = torch.randn(10, 3, generator=_gen()), torch.arange(10) % 4
    whole = model_logit_gaps(model, x, y)
    assert torch.allclose(model_logit_gaps(model, x, y, batch_size=3), whole)
    assert not whole.requires_grad
    assert torch.equal(whole, logit_gaps(model(x).detach(), y))


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (
            lambda: logit_gaps(torch.zeros(3), torch.zeros(3, dtype=torch.long)),
            ValueError,
            "`logits` must be of shape (N, K) with K >= 2, got a torch.float32 tensor of shape (3,)",
        ),
        (
            lambda: logit_gaps(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long)),
            ValueError,
            "`target` must be of shape (2,), got shape (3,)",
        ),
        (
            lambda: logit_gaps(torch.zeros(2, 3), torch.tensor([0, 3])),
            ValueError,
            "`target` must be class indices in [0, 2], got 3",
        ),
        (
            lambda: logit_gaps(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1])),
            TypeError,
            "`logits` must be a floating-point tensor, got a torch.int64 tensor of shape (2, 3)",
        ),
        (
            lambda: model_logit_gaps(
                nn.Linear(2, 3), torch.zeros(2, 2), torch.tensor([0, 1]), batch_size=0
            ),
            ValueError,
            "`batch_size` must be >= 1, got 0",
        ),
        (
            lambda: model_logit_gaps(nn.Linear(2, 3), torch.tensor(1.0), torch.tensor([0])),
            ValueError,
            "`inputs` must be a batch of shape (N, ...), got a torch.float32 tensor of shape ()",
        ),
    ],
)
def test_logit_gap_errors(call: object, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call()  # type: ignore[operator]


# ---------------------------------------------------------------------------- template projection
def _naive_projection(
    h: torch.Tensor, w: torch.Tensor, classes: tuple[int, int, int]
) -> list[list[float]]:
    """Gram-Schmidt by hand in Python floats."""
    a, b, c = (w[i].tolist() for i in classes)
    dot = lambda u, v: sum(p * q for p, q in zip(u, v, strict=True))  # noqa: E731
    u1 = [q - p for p, q in zip(a, b, strict=True)]
    norm = math.sqrt(dot(u1, u1))
    e1 = [v / norm for v in u1]
    u2 = [q - p for p, q in zip(a, c, strict=True)]
    u2 = [v - dot(u2, e1) * e for v, e in zip(u2, e1, strict=True)]
    norm = math.sqrt(dot(u2, u2))
    e2 = [v / norm for v in u2]
    centre = [(p + q + r) / 3 for p, q, r in zip(a, b, c, strict=True)]
    rows = [[v - m for v, m in zip(row, centre, strict=True)] for row in h.tolist()]
    return [[dot(row, e1), dot(row, e2)] for row in rows]


@given(seed=st.integers(0, 2**16), d=st.integers(2, 6))
def test_projection_matches_gram_schmidt(seed: int, d: int) -> None:
    gen = _gen(seed)
    w, h = torch.randn(4, d, generator=gen, dtype=F64), torch.randn(5, d, generator=gen, dtype=F64)
    got = template_projection(h, w, (2, 0, 3))
    for row, twin in zip(got.tolist(), _naive_projection(h, w, (2, 0, 3)), strict=True):
        assert row == pytest.approx(twin, rel=1e-9, abs=1e-9)


def test_projection_keeps_in_plane_distances_and_drops_the_normal() -> None:
    gen = _gen(5)
    w = torch.randn(3, 6, generator=gen, dtype=F64)
    templates = template_projection(w, w, (0, 1, 2))
    assert torch.allclose(torch.cdist(templates, templates), torch.cdist(w, w))
    assert (templates[1] - templates[0])[1].abs() < 1e-12  # w_a -> w_b along the x axis
    assert templates[1, 0] > templates[0, 0]
    assert templates[2, 1] > 0  # w_c above the first axis
    assert torch.allclose(templates.mean(0), torch.zeros(2, dtype=F64), atol=1e-12)
    normal = torch.linalg.svd(torch.stack([w[1] - w[0], w[2] - w[0]])).Vh[2]
    shifted = template_projection(w + 3.0 * normal, w, (0, 1, 2))
    assert torch.allclose(shifted, templates)


@pytest.mark.parametrize(
    ("features", "weight", "classes", "kind", "message"),
    [
        (
            torch.zeros(2, 3),
            torch.zeros(4, 3),
            (0, 1),
            TypeError,
            "`classes` must be a tuple of three class indices, got (0, 1)",
        ),
        (
            torch.zeros(2, 3),
            torch.zeros(4, 3),
            (0, 1, 1),
            ValueError,
            "`classes` must be three distinct indices in [0, 3], got (0, 1, 1)",
        ),
        (
            torch.zeros(2, 3),
            torch.zeros(4, 3),
            (0, 1, 4),
            ValueError,
            "`classes` must be three distinct indices in [0, 3], got (0, 1, 4)",
        ),
        (
            torch.zeros(2, 3),
            torch.zeros(4, 3),
            (0, 1, -1),
            ValueError,
            "`classes` must be >= 0, got -1",
        ),
        (
            torch.zeros(2, 2),
            torch.zeros(4, 3),
            (0, 1, 2),
            ValueError,
            "`features` must be of shape (N, 3), got a torch.float32 tensor of shape (2, 2)",
        ),
        (
            torch.zeros(2, 3),
            torch.zeros(3),
            (0, 1, 2),
            ValueError,
            "`weight` must be of shape (K, D), got a torch.float32 tensor of shape (3,)",
        ),
        (
            torch.zeros(2, 3),
            torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]),
            (0, 1, 2),
            ValueError,
            "`weight` must be rows (0, 1, 2) that span a plane (not on one line), got collinear rows",
        ),
    ],
)
def test_projection_errors(
    features: torch.Tensor,
    weight: torch.Tensor,
    classes: object,
    kind: type[Exception],
    message: str,
) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        template_projection(features, weight, classes)  # type: ignore[arg-type]
