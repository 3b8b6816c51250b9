"""The f-divergence loss (Wei & Liu, ICLR 2021) and its table of variational forms."""

from __future__ import annotations

import math
import re

import pytest
import torch

from smoothlab.losses.fdivergence import DIVERGENCES, f_divergence_loss


def _log_softmax(z: list[float]) -> list[float]:
    top = max(z)
    lse = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - lse for v in z]


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=torch.float64) * 2, torch.randint(
        0, 3, (n,), generator=g
    )


Z, Y = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])

# The activations g_f written out again (f-GAN, Table 2), in plain math.
ACTIVATIONS = {
    "total-variation": lambda v: 0.5 * math.tanh(v),
    "jensen-shannon": lambda v: math.log(2) - math.log(1 + math.exp(-v)),
    "pearson": lambda v: v,
    "neyman": lambda v: 1 - math.exp(-v),
    "kl": lambda v: v,
    "reverse-kl": lambda v: -math.exp(-v),
    "squared-hellinger": lambda v: 1 - math.exp(-v),
    "jeffrey": lambda v: v,
}
# u = 1 is where total variation's kink attains the supremum.
U = torch.cat([torch.logspace(-6, 3, 400_001, dtype=torch.float64), torch.ones(1).double()])


def conjugate_by_search(name: str, t: float) -> float:
    """``sup_u u t - f(u)`` over a fine grid: the Fenchel conjugate, from its definition."""
    f = DIVERGENCES[name].generator(U)
    return float((U * t - f).max())


def test_table_names_the_papers_divergences() -> None:
    assert set(DIVERGENCES) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_conjugates_are_fenchel_conjugates(name: str) -> None:
    ts = [ACTIVATIONS[name](v) for v in (0.0, 0.1, 0.35, 0.7, 1.0)]
    if name == "jeffrey":
        ts += [-3.0, 2.5]
    got = DIVERGENCES[name].conjugate(torch.tensor(ts, dtype=torch.float64))
    expected = torch.tensor([conjugate_by_search(name, t) for t in ts], dtype=torch.float64)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_f_divergence_matches_loop(name: str) -> None:
    z, y = _data(4, 12)
    labels = y.tolist()
    pi = [labels.count(j) / len(labels) for j in range(3)]
    expected = []
    for row, label in zip(z.tolist(), labels, strict=True):
        g = [ACTIVATIONS[name](math.exp(lp)) for lp in _log_softmax(row)]
        product = sum(pi[j] * conjugate_by_search(name, g[j]) for j in range(3))
        expected.append(product - g[label])
    got = f_divergence_loss(z, y, divergence=name, reduction="none")
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)


def test_f_divergence_product_term_is_the_mean_over_all_peer_pairs() -> None:
    # The authors estimate E_Q with a random (input, label) pair; the exact mean over pairs is ours.
    z, y = _data(5, 13)
    form = DIVERGENCES["jensen-shannon"]
    conj = form.conjugate(form.activation(torch.softmax(z, dim=1)))[:, y]  # [n, m]
    joint = form.activation(torch.softmax(z, dim=1)).gather(1, y[:, None]).mean()
    expected = conj.mean() - joint
    torch.testing.assert_close(f_divergence_loss(z, y, divergence="jensen-shannon"), expected)


def test_f_divergence_prior_and_ignored_positions() -> None:
    z, y = _data(6, 14)
    marginal = torch.bincount(y, minlength=3).double() / 6
    for name in ("kl", "pearson"):
        torch.testing.assert_close(
            f_divergence_loss(z, y, divergence=name, prior=marginal),
            f_divergence_loss(z, y, divergence=name),
        )
    ignored = y.clone()
    ignored[0] = -100
    kept = f_divergence_loss(z[1:], y[1:], reduction="sum")
    torch.testing.assert_close(f_divergence_loss(z, ignored, reduction="sum"), kept)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_f_divergence_gradcheck(name: str) -> None:
    x = torch.randn(3, 3, 2, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    y = torch.tensor([[0, 2], [1, -100], [2, 1]])
    assert torch.autograd.gradcheck(
        lambda v: f_divergence_loss(v, y, divergence=name), x.requires_grad_()
    )


F_ERRORS = [
    (
        lambda: f_divergence_loss(Z, Y, divergence="hellinger"),
        ValueError,
        "`divergence` must be one of 'total-variation', 'jensen-shannon', 'pearson', 'neyman', "
        "'kl', 'reverse-kl', 'squared-hellinger', 'jeffrey', got 'hellinger'",
    ),
    (lambda: f_divergence_loss(Z, Y, divergence=["kl"]), ValueError, "got ['kl']"),
    (
        lambda: f_divergence_loss(Z, Y, prior=torch.ones(4) / 4),
        ValueError,
        "`prior` must be of shape (3,) (one probability per class), got shape (4,)",
    ),
    (
        lambda: f_divergence_loss(Z, Y, prior=torch.tensor([0.5, 0.5, 0.5])),
        ValueError,
        "`prior` must be a distribution summing to 1 along dim 0, got sums off by 0.5",
    ),
    (
        lambda: f_divergence_loss(Z, Y, prior=torch.tensor([1, 0, 0])),
        TypeError,
        "`prior` must be a floating-point tensor, got a torch.int64 tensor of shape (3,)",
    ),
]


@pytest.mark.parametrize(("call", "kind", "message"), F_ERRORS)
def test_f_divergence_errors(call: object, kind: type[Exception], message: str) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call()  # type: ignore[operator]
