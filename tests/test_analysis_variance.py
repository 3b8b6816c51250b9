"""TSLA's delta (Xu et al., Eq. 4): a closed form, a per-example autograd loop twin, identities."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

from smoothlab.analysis import gradient_variance_ratio
from smoothlab.targets import smooth_targets

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Bias(nn.Module):
    """Logits that are one parameter vector for every input: the gradient is p - q exactly."""

    def __init__(self, k: int, generator: torch.Generator) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(k, generator=generator, dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1)


def _naive(model: nn.Module, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor) -> float:
    """Definition of Eq. 4, one backward pass per example, float64 Python sums."""

    def grad_of(i: int, q: torch.Tensor) -> torch.Tensor:
        model.zero_grad()
        loss = -(q * torch.log_softmax(model(x[i : i + 1])[0], -1)).sum()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()]).double().clone()

    n, k = len(y), labels.shape[1]
    g = [grad_of(i, torch.eye(k, dtype=labels.dtype)[y[i]]) for i in range(n)]
    h = [grad_of(i, labels[i]) for i in range(n)]
    g_bar = sum(g) / n
    one_hot = sum(float(((gi - g_bar) ** 2).sum()) for gi in g) / n
    smoothed = sum(float(((hi - g_bar) ** 2).sum()) for hi in h) / n
    return smoothed / one_hot


@given(counts=st.lists(st.integers(0, 6), min_size=2, max_size=5), theta=st.floats(0.0, 1.0))
def test_closed_form_for_a_constant_input(counts: list[int], theta: float) -> None:
    # g_i(q) = p - q, so sigma^2 = 1 - |pi|^2 and the smoothed label (1-t) e_y + t u gives
    # (1-t)^2 sigma^2 + t^2 |pi - u|^2: delta = (1-t)^2 + t^2 |pi - u|^2 / (1 - |pi|^2).
    target = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    k = len(counts)
    assume(0 < max(counts) < target.numel())  # one class only: sigma^2 = 0, delta undefined
    pi = torch.tensor(counts, dtype=F64) / target.numel()
    model = _Bias(k, _gen())
    x = torch.ones(target.numel(), 1, dtype=F64)
    spread = float(((pi - 1 / k) ** 2).sum() / (1 - (pi**2).sum()))
    out = gradient_variance_ratio(model, x, target)
    assert out.delta.item() == pytest.approx(spread, rel=1e-9, abs=1e-12)
    assert out.one_hot_variance.item() == pytest.approx(1 - float((pi**2).sum()), rel=1e-9)
    smoothed = smooth_targets(target, k, theta, dtype=F64)
    expected = (1 - theta) ** 2 + theta**2 * spread
    got = gradient_variance_ratio(model, x, target, smoothed).delta.item()
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("hidden", [0, 5])
def test_matches_per_example_loop(hidden: int) -> None:
    gen = _gen(1)
    torch.manual_seed(0)  # nn.Linear's initialisation only; the data come from `gen`
    head = (
        nn.Linear(3, 4)
        if hidden == 0
        else nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))
    )
    model = head.double()
    x = torch.randn(11, 3, generator=gen, dtype=F64)
    y = torch.randint(0, 4, (11,), generator=gen)
    labels = torch.softmax(torch.randn(11, 4, generator=gen, dtype=F64), 1)
    expected = _naive(model, x, y, labels)
    for batch_size in (1, 4, 256):
        got = gradient_variance_ratio(model, x, y, labels, batch_size=batch_size)
        assert got.delta.item() == pytest.approx(expected, rel=1e-10)


def test_one_hot_labels_give_one_and_a_shared_prior_broadcasts() -> None:
    gen = _gen(2)
    torch.manual_seed(0)
    model = nn.Linear(2, 3).double()
    x, y = torch.randn(9, 2, generator=gen, dtype=F64), torch.randint(0, 3, (9,), generator=gen)
    one_hot = torch.eye(3, dtype=F64)[y]
    assert gradient_variance_ratio(model, x, y, one_hot).delta.item() == pytest.approx(1.0)
    prior = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    shared = gradient_variance_ratio(model, x, y, prior).delta
    assert shared.item() == pytest.approx(_naive(model, x, y, prior.expand(9, 3)), rel=1e-10)
    uniform = gradient_variance_ratio(model, x, y).delta
    assert uniform.item() == pytest.approx(
        _naive(model, x, y, torch.full((9, 3), 1 / 3, dtype=F64))
    )
    assert uniform.dtype == F64 and uniform.dim() == 0


def test_frozen_parameters_are_left_out() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    model[0].requires_grad_(False)
    gen = _gen(3)
    x, y = torch.randn(7, 2, generator=gen, dtype=F64), torch.randint(0, 3, (7,), generator=gen)
    head_only = nn.Sequential(nn.Linear(3, 3)).double()
    head_only[0].load_state_dict(model[2].state_dict())
    features = torch.tanh(model[0](x)).detach()
    expected = gradient_variance_ratio(head_only, features, y).delta
    assert gradient_variance_ratio(model, x, y).delta.item() == pytest.approx(expected.item())


@pytest.mark.parametrize(
    ("kwargs", "kind", "message"),
    [
        (
            {"target": torch.zeros(3, dtype=torch.long)},
            ValueError,
            "`target` must be of shape (N,) for inputs of N examples, got a torch.int64 tensor of shape (3,)",
        ),
        (
            {"target": torch.zeros(0, dtype=torch.long), "inputs": torch.zeros(0, 2)},
            ValueError,
            "`target` must be non-empty, got a torch.int64 tensor of shape (0,)",
        ),
        (
            {"target": torch.tensor([0, 3, 1, 0])},
            ValueError,
            "`target` must be class indices in [0, 2], got 3",
        ),
        (
            {"labels": torch.ones(4, 2) / 2},
            ValueError,
            "`labels` must be of shape (3,) or (4, 3), got shape (4, 2)",
        ),
        (
            {"labels": torch.tensor([0.5, 0.6, 0.1])},
            ValueError,
            "`labels` must be a distribution summing to 1 along dim -1, got sums off by 0.2",
        ),
        ({"labels": [0.2, 0.3, 0.5]}, TypeError, "`labels` must be a torch.Tensor, got list"),
        ({"inputs": [[0.0, 1.0]]}, TypeError, "`inputs` must be a torch.Tensor, got list"),
        ({"batch_size": 0}, ValueError, "`batch_size` must be >= 1, got 0"),
    ],
)
def test_errors(kwargs: dict[str, object], kind: type[Exception], message: str) -> None:
    args: dict[str, object] = {
        "model": nn.Linear(2, 3),
        "inputs": torch.zeros(4, 2),
        "target": torch.tensor([0, 1, 2, 0]),
    }
    args.update(kwargs)
    with pytest.raises(kind, match=re.escape(message)):
        gradient_variance_ratio(**args)  # type: ignore[arg-type]


def test_a_model_without_trainable_parameters_is_refused() -> None:
    frozen = nn.Linear(2, 3).requires_grad_(False)
    with pytest.raises(
        ValueError,
        match=re.escape("`model` must be a module with trainable parameters, got Linear"),
    ):
        gradient_variance_ratio(frozen, torch.zeros(4, 2), torch.tensor([0, 1, 2, 0]))
