"""The NoiseKind table behind ``--noise``: a contract test over every kind, and its errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from scipy.stats import binom, truncnorm

from smoothlab.noise import NOISE_KINDS, NoiseKind, noise_kind

from reference import FIVE_SIGMA

N, K = 100_000, 10
CLEAN = torch.arange(K).repeat(N // K)
FEATURES = torch.randn(N, 12, generator=torch.Generator().manual_seed(0))
NAMES = [kind.name for kind in NOISE_KINDS]
# Expected flip rate at rate 0.3 with balanced classes, from each kind's definition.
EXPECTED_RATE = {
    "symmetric": 0.3,
    "uniform": 0.3 * (K - 1) / K,
    "pairflip": 0.3,
    "asymmetric-cifar10": 0.3 * 5 / K,
    "class-dependent": 0.3 + 0.5 / K * (K + 1) / 2,  # mean of kappa + beta i, beta = 0.5 / K
    "instance": float(truncnorm.mean(-3.0, 7.0, loc=0.3, scale=0.1)),
}


def _build(kind: NoiseKind, rate: float, seed: int, labels: torch.Tensor = CLEAN) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return kind.build(
        labels, rate, num_classes=K, features=FEATURES[: len(labels)], generator=generator
    )


def test_the_table() -> None:
    assert NAMES == [
        "symmetric",
        "uniform",
        "pairflip",
        "asymmetric-cifar10",
        "class-dependent",
        "instance",
    ]
    assert all(kind.description for kind in NOISE_KINDS)
    assert all(noise_kind(name) is kind for name, kind in zip(NAMES, NOISE_KINDS, strict=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        NOISE_KINDS[0].name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_contract(name: str) -> None:
    kind = noise_kind(name)
    if name == "class-dependent":  # rate is kappa; beta = 0.5 / K keeps flipping class i
        zero = _build(kind, 0.0, seed=1)
        low, high = binom.interval(FIVE_SIGMA, N, 0.5 / K * (K + 1) / 2)
        assert low <= int((zero != CLEAN).sum()) <= high
    else:  # rate 0 is the identity
        assert torch.equal(_build(kind, 0.0, seed=1), CLEAN)
    noisy = _build(kind, 0.3, seed=1)
    assert noisy.shape == CLEAN.shape
    assert noisy.dtype == CLEAN.dtype
    assert torch.equal(noisy, _build(kind, 0.3, seed=1))
    assert not torch.equal(noisy, _build(kind, 0.3, seed=2))
    low, high = binom.interval(FIVE_SIGMA, N, EXPECTED_RATE[name])
    assert low <= int((noisy != CLEAN).sum()) <= high


@pytest.mark.parametrize("name", [name for name in NAMES if name != "instance"])
def test_exact_through_the_table(name: str) -> None:
    kind = noise_kind(name)
    generator = torch.Generator().manual_seed(0)
    noisy = kind.build(CLEAN, 0.3, num_classes=K, generator=generator, exact=True)
    # Per class the flips are whole counts within one of the expectation, summing to N * rate.
    assert abs(int((noisy != CLEAN).sum()) - N * EXPECTED_RATE[name]) <= K


def test_errors() -> None:
    valid = (
        "'symmetric', 'uniform', 'pairflip', 'asymmetric-cifar10', 'class-dependent', 'instance'"
    )
    with pytest.raises(ValueError, match=rf"^`noise` must be one of {valid}, got 'gaussian'$"):
        noise_kind("gaussian")
    with pytest.raises(ValueError, match=r"^`num_classes` must be 10 for asymmetric-cifar10 noise"):
        noise_kind("asymmetric-cifar10").build(CLEAN[:5] % 3, 0.2, num_classes=3)
    with pytest.raises(ValueError, match=r"^`features` must be a \(N, ...\) tensor for instance-"):
        noise_kind("instance").build(CLEAN[:5], 0.2, num_classes=K)
    with pytest.raises(ValueError, match=r"^`exact` must be False for instance-dependent noise"):
        noise_kind("instance").build(
            CLEAN[:5], 0.2, num_classes=K, features=FEATURES[:5], exact=True
        )
    with pytest.raises(ValueError, match=r"got 1.05 for class i = 10 \(kappa=0.55, beta=0.05"):
        noise_kind("class-dependent").build(CLEAN[:5], 0.55, num_classes=K)
    with pytest.raises(ValueError, match=r"^`rate` must be < 1.0, got 1.0$"):
        noise_kind("pairflip").build(CLEAN[:5], 1.0, num_classes=K)
