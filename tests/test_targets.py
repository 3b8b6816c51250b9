"""smooth_targets against a naive twin and its identities."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from smoothlab import smooth_targets

import reference as ref


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("r", [-1.0, 0.0, 0.1, 1.0])
@pytest.mark.parametrize("prior_kind", [None, "class", "example"])
def test_matches_naive_twin(exclusive: bool, r: float, prior_kind: str | None) -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (6,), generator=g)
    prior = None
    if prior_kind == "class":
        prior = torch.softmax(torch.randn(4, generator=g, dtype=torch.float64), 0)
    elif prior_kind == "example":
        prior = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), 1)
    ours = smooth_targets(y, 4, r, prior=prior, exclusive=exclusive, dtype=torch.float64)
    rows = []
    for n, label in enumerate(y.tolist()):
        row_prior = None if prior is None else (prior if prior.dim() == 1 else prior[n]).tolist()
        rows.append(ref.smoothed_row(label, 4, r, row_prior, exclusive))
    torch.testing.assert_close(
        ours.double(), torch.tensor(rows, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_spatial_targets_put_classes_on_dim_1() -> None:
    y = torch.tensor([[[0, 1], [2, 1]]])  # (N=1, 2, 2)
    q = smooth_targets(y, 3, 0.3)
    assert q.shape == (1, 3, 2, 2)
    torch.testing.assert_close(q[0, :, 1, 0], torch.tensor([0.1, 0.1, 0.8]))


def test_probability_targets_are_smoothed_too() -> None:
    t = torch.tensor([[0.5, 0.5, 0.0]])
    torch.testing.assert_close(smooth_targets(t, 3, 0.3), torch.tensor([[0.45, 0.45, 0.1]]))


@given(r=st.floats(-5, 1), k=st.integers(2, 8), exclusive=st.booleans())
def test_rows_sum_to_one(r: float, k: int, exclusive: bool) -> None:
    y = torch.arange(k)
    q = smooth_targets(y, k, r, exclusive=exclusive, dtype=torch.float64)
    torch.testing.assert_close(q.sum(1), torch.ones(k, dtype=torch.float64))
    if r == 0:
        assert bool((q == torch.eye(k)).all())


def test_loss_is_cross_entropy_against_smoothed_targets() -> None:
    """House rule 2: the loss's fast path equals the composition target transform + soft CE."""
    from smoothlab import label_smoothing_cross_entropy

    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (5,), generator=g)
    prior = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), 1)
    for kwargs in ({}, {"prior": prior}, {"exclusive": True}, {"prior": prior, "exclusive": True}):
        q = smooth_targets(y, 4, -0.4, **kwargs)  # type: ignore[arg-type]
        fused = label_smoothing_cross_entropy(z, y, -0.4, **kwargs)  # type: ignore[arg-type]
        torch.testing.assert_close(fused, label_smoothing_cross_entropy(z, q, 0.0))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kind", ["class", "example"])
def test_exclusive_loss_normalises_like_smooth_targets(fused: bool, kind: str) -> None:
    """A prior off 1 by less than the check's tolerance (1e-4) is renormalised by its mass
    outside the true class in both: the loss once divided by ``1 - pi_y`` instead."""
    from smoothlab import label_smoothing_cross_entropy

    g = torch.Generator().manual_seed(2)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    shape = (4,) if kind == "class" else (6, 4)
    prior = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), -1) * (1 + 8e-5)
    q = smooth_targets(y, 4, 0.3, prior=prior, exclusive=True)
    torch.testing.assert_close(q.sum(1), torch.ones(6, dtype=torch.float64))
    ours = label_smoothing_cross_entropy(z, y, 0.3, prior=prior, exclusive=True, fused=fused)
    truth = -(q * torch.log_softmax(z, 1)).sum(1).mean()
    torch.testing.assert_close(ours, truth, rtol=1e-12, atol=1e-12)
