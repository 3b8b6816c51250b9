"""Slow truths: naive float64 loops over examples and classes, written from the formulas.

They share no code with the library, so agreement means the vectorised code computes the
formula, not itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Row = Sequence[float]

#: Statistical tests accept within 5 standard errors (a fixed generator, and a tolerance wide
#: enough that neither test order nor an unlucky draw can fail them): the two-sided 5-sigma
#: normal quantile, and the matching coverage for exact (e.g. binomial) intervals.
Z5 = 5.0
FIVE_SIGMA = 1 - 5.733e-7


def log_softmax(z: Row) -> list[float]:
    top = max(z)
    if top == -math.inf:
        return [-math.inf] * len(z)
    lse = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - lse for v in z]


def xlogy(x: float, log_y: float) -> float:
    """``x * log_y`` with 0 * (-inf) = 0."""
    return 0.0 if x == 0 else x * log_y


def smoothed_row(y: int, k: int, r: float, prior: Row | None, exclusive: bool) -> list[float]:
    pi = list(prior) if prior is not None else [1.0 / k] * k
    if exclusive:
        rest = sum(pi[j] for j in range(k) if j != y)
        pi = [0.0 if j == y else pi[j] / rest for j in range(k)]
    return [(1 - r) * (j == y) + r * pi[j] for j in range(k)]


def ls_ce(
    logits: Sequence[Row],
    target: Sequence[int],
    r: float,
    *,
    prior: Sequence[Row] | Row | None = None,
    exclusive: bool = False,
    weight: Row | None = None,
    weighting: str = "pytorch",
    ignore_index: int = -100,
    reduction: str = "mean",
) -> float | list[float]:
    """Label-smoothing cross-entropy for ``(N, C)`` logits and class indices."""
    k = len(logits[0])
    w = list(weight) if weight is not None else [1.0] * k
    losses, denominator = [], 0.0
    for n, (z, y) in enumerate(zip(logits, target, strict=True)):
        if y == ignore_index:
            losses.append(0.0)
            continue
        row_prior = None
        if prior is not None:
            row_prior = prior[n] if isinstance(prior[0], Sequence) else prior  # type: ignore[assignment]
        if exclusive and row_prior is None:
            pi = [0.0 if j == y else 1.0 / (k - 1) for j in range(k)]
        elif exclusive:
            rest = sum(row_prior[j] for j in range(k) if j != y)  # type: ignore[index]
            pi = [0.0 if j == y else row_prior[j] / rest for j in range(k)]  # type: ignore[index]
        else:
            pi = list(row_prior) if row_prior is not None else [1.0 / k] * k  # type: ignore[arg-type]
        lp = log_softmax(z)
        if weighting == "pytorch":
            value = -(1 - r) * w[y] * lp[y] - r * sum(xlogy(w[j] * pi[j], lp[j]) for j in range(k))
        else:
            q = [(1 - r) * (j == y) + r * pi[j] for j in range(k)]
            value = -w[y] * sum(xlogy(q[j], lp[j]) for j in range(k))
        losses.append(value)
        denominator += w[y]
    return _reduce(losses, reduction, denominator)


def soft_ce(
    logits: Sequence[Row],
    target: Sequence[Row],
    r: float,
    *,
    weight: Row | None = None,
    reduction: str = "mean",
) -> float | list[float]:
    k = len(logits[0])
    w = list(weight) if weight is not None else [1.0] * k
    losses = []
    for z, t in zip(logits, target, strict=True):
        lp = log_softmax(z)
        q = [(1 - r) * t[j] + r / k for j in range(k)]
        losses.append(-sum(xlogy(w[j] * q[j], lp[j]) for j in range(k)))
    return _reduce(losses, reduction, float(len(losses)))


def relaxation(
    logits: Sequence[Row],
    target: Sequence[int],
    alpha: float,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> float | list[float]:
    losses, count = [], 0.0
    for z, y in zip(logits, target, strict=True):
        if y == ignore_index:
            losses.append(0.0)
            continue
        count += 1
        e = [math.exp(v) for v in z]
        p_y = e[y] / sum(e)
        if p_y >= 1 - alpha:
            losses.append(0.0)
        else:
            a = alpha
            losses.append((1 - a) * math.log((1 - a) / p_y) + a * math.log(a / (1 - p_y)))
    return _reduce(losses, reduction, count)


def confidence_penalty(
    logits: Sequence[Row],
    target: Sequence[int],
    beta: float,
    *,
    threshold: float | None = None,
    weight: Row | None = None,
    reduction: str = "mean",
) -> float | list[float]:
    k = len(logits[0])
    w = list(weight) if weight is not None else [1.0] * k
    losses, denominator = [], 0.0
    for z, y in zip(logits, target, strict=True):
        lp = log_softmax(z)
        entropy = -sum(xlogy(math.exp(v), v) for v in lp)
        penalty = -entropy if threshold is None else max(0.0, threshold - entropy)
        losses.append(w[y] * (-lp[y] + beta * penalty))
        denominator += w[y]
    return _reduce(losses, reduction, denominator)


def _reduce(losses: list[float], reduction: str, denominator: float) -> float | list[float]:
    if reduction == "none":
        return losses
    if reduction == "sum":
        return sum(losses)
    return sum(losses) / denominator if denominator else math.nan
