"""Schedules: functions of the step (house rule 4). ``Schedule = Callable[[int], float]``.

The training loop owns the step (an epoch or an iteration: the schedule does not care) and sets
the hyperparameter each time; modules never count steps. Two-stage label smoothing (TSLA) is the
schedule :func:`two_stage`, not a loss.

>>> s = join([linear(0.0, 0.1, 5), cosine(0.1, 10)], boundaries=[5])
>>> [round(s(t), 4) for t in (0, 5, 10, 15)]
[0.0, 0.1, 0.05, 0.0]
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence

from smoothlab._checks import check_int, check_real, fail

__all__ = ["Schedule", "constant", "cosine", "join", "linear", "step", "two_stage"]

Schedule = Callable[[int], float]


def _check_step(t: int) -> int:
    return check_int("step", t, low=0)


def constant(value: float) -> Schedule:
    """``s(t) = value`` for every step.

    >>> constant(0.1)(7)
    0.1
    """
    v = check_real("value", value)

    def schedule(t: int) -> float:
        _check_step(t)
        return v

    return schedule


def two_stage(value: float, drop_at: int) -> Schedule:
    r"""Two-stage label smoothing (TSLA): ``value`` before step ``drop_at``, then 0.

    .. math:: s(t) = \begin{cases} r & t < T_1 \\ 0 & t \ge T_1 \end{cases}

    Xu et al. train with label smoothing for the first :math:`T_1` epochs and with plain
    cross-entropy afterwards (their Algorithm 2); ``drop_at = 0`` is cross-entropy throughout.

    >>> s = two_stage(0.1, drop_at=3)
    >>> [s(t) for t in range(5)]
    [0.1, 0.1, 0.1, 0.0, 0.0]

    Reference: Y. Xu, Y. Xu, Q. Qian, H. Li, R. Jin, "Towards Understanding Label Smoothing", 2020.
    """
    v = check_real("value", value)
    boundary = check_int("drop_at", drop_at, low=0)

    def schedule(t: int) -> float:
        return v if _check_step(t) < boundary else 0.0

    return schedule


def linear(start: float, end: float, steps: int, *, begin: int = 0) -> Schedule:
    r"""Linear interpolation from ``start`` to ``end`` over ``steps`` steps after ``begin``.

    .. math:: s(t) = a + (b - a)\,\mathrm{clip}((t - t_0) / T, 0, 1)

    >>> s = linear(0.0, 1.0, 4)
    >>> [s(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    a, b = check_real("start", start), check_real("end", end)
    length = check_int("steps", steps, low=1)
    offset = check_int("begin", begin, low=0)

    def schedule(t: int) -> float:
        frac = min(max((_check_step(t) - offset) / length, 0.0), 1.0)
        return a + (b - a) * frac

    return schedule


def cosine(start: float, steps: int, *, end: float = 0.0) -> Schedule:
    r"""Cosine decay from ``start`` to ``end`` over ``steps`` steps, then ``end``.

    .. math:: s(t) = b + \tfrac{1}{2}(a - b)\,(1 + \cos(\pi \min(t, T) / T))

    Loshchilov & Hutter, "SGDR", ICLR 2017 (without restarts).

    >>> s = cosine(1.0, 4)
    >>> [round(s(t), 4) for t in range(6)]
    [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """
    a, b = check_real("start", start), check_real("end", end)
    length = check_int("steps", steps, low=1)

    def schedule(t: int) -> float:
        frac = min(_check_step(t), length) / length
        return b + 0.5 * (a - b) * (1.0 + math.cos(math.pi * frac))

    return schedule


def step(start: float, boundaries: Sequence[int], factor: float) -> Schedule:
    r"""Step decay: multiply by ``factor`` at each boundary.

    .. math:: s(t) = a \cdot \gamma^{\#\{b_i \le t\}}

    The seeds decay learning rates this way (e.g. by :math:`\sqrt{0.1}` at epochs 50, 100, 150).

    >>> s = step(1.0, [2, 4], 0.1)
    >>> [round(s(t), 6) for t in range(6)]
    [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    """
    a = check_real("start", start)
    gamma = check_real("factor", factor)
    bounds = _check_boundaries(boundaries)

    def schedule(t: int) -> float:
        return a * gamma ** bisect.bisect_right(bounds, _check_step(t))

    return schedule


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i]`` from ``boundaries[i - 1]`` on; each sees the steps since its start.

    ``len(boundaries) == len(schedules) - 1``. Warm-up then cosine decay, as IVON's paper uses:
    ``join([linear(0, lr, w), cosine(lr, total - w)], [w])``.

    >>> s = join([constant(1.0), constant(2.0)], boundaries=[3])
    >>> [s(t) for t in range(5)]
    [1.0, 1.0, 1.0, 2.0, 2.0]
    """
    parts = list(schedules)
    bounds = _check_boundaries(boundaries)
    if len(parts) != len(bounds) + 1:
        raise fail(
            "boundaries",
            f"{len(parts) - 1} boundaries for {len(parts)} schedules",
            f"!{len(bounds)}",
        )
    for i, part in enumerate(parts):
        if not callable(part):
            raise fail(f"schedules[{i}]", "callable", part, kind=TypeError)
    starts = [0, *bounds]

    def schedule(t: int) -> float:
        i = bisect.bisect_right(bounds, _check_step(t))
        return parts[i](t - starts[i])

    return schedule


def _check_boundaries(boundaries: Sequence[int]) -> list[int]:
    bounds = [check_int("boundaries", b, low=0) for b in boundaries]
    if any(x >= y for x, y in itertools.pairwise(bounds)):
        raise fail("boundaries", "strictly increasing", list(boundaries))
    return bounds
