"""Validation helpers shared by every layer (L0: imports torch only).

Every message follows one template, ``"`name` must be <expected>, got <got>"``, so that a user
reading an error learns which argument was wrong, what was expected, and what they passed.
Validation happens at the public boundary; internal code trusts its callers.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from numbers import Real
from typing import Literal, cast

import torch
from torch import Tensor

__all__ = [
    "Reduction",
    "assert_on_device",
    "check_bool",
    "check_class_indices",
    "check_distribution",
    "check_floating",
    "check_generator",
    "check_int",
    "check_real",
    "check_reduction",
    "check_same_shape",
    "check_tensor",
    "check_weight",
    "describe",
    "device_checks",
    "fail",
    "host_reads",
    "reduce_loss",
]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")
_DEVICE = threading.local()


def host_reads(tensor: Tensor) -> bool:
    """Whether a check may read ``tensor``'s values in Python (``int(t)``, ``bool(t)``): off
    CUDA devices, outside ``torch.compile``.

    On a GPU such a read waits for every kernel queued before it (a host synchronisation: the
    host stops queueing work ahead of the device), and under ``torch.compile`` it breaks the
    graph. There the losses' per-call checks run on the device instead
    (:func:`assert_on_device`), as PyTorch's own losses check their targets on CUDA. Other
    accelerators (MPS, XLA) keep the host checks: their support of device asserts varies.

    >>> host_reads(torch.zeros(2))
    True
    >>> with device_checks():
    ...     host_reads(torch.zeros(2))
    False
    """
    forced = int(getattr(_DEVICE, "depth", 0)) > 0
    return tensor.device.type != "cuda" and not forced and not torch.compiler.is_compiling()


@contextlib.contextmanager
def device_checks() -> Iterator[None]:
    """Private test switch: CPU tensors take the checks and code paths of device tensors
    (:func:`host_reads` is false in this thread), so that tests without a GPU can show that
    they read nothing on the host."""
    _DEVICE.depth = getattr(_DEVICE, "depth", 0) + 1
    try:
        yield
    finally:
        _DEVICE.depth -= 1


def assert_on_device(condition: Tensor, name: str, expected: str) -> None:
    """Raise ``"`name` must be <expected>"`` unless the boolean tensor ``condition`` is all true,
    without reading it on the host: on a CUDA device the kernel asserts (a device-side assert,
    reported by a later CUDA call, as PyTorch's losses report an index out of range); on the
    CPU it raises a ``RuntimeError`` at once.

    >>> assert_on_device(torch.tensor([True, True]), "target", "class indices in [0, 2]")
    >>> assert_on_device(torch.tensor([True, False]), "target", "class indices in [0, 2]")
    Traceback (most recent call last):
    ...
    RuntimeError: `target` must be class indices in [0, 2]
    """
    torch._assert_async(torch.all(condition), f"`{name}` must be {expected}")


def describe(value: object) -> str:
    """A short, readable rendering of ``value`` for error messages."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, str):
        return repr(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fail(name: str, expected: str, got: object, *, kind: type[Exception] = ValueError) -> Exception:
    """Build (not raise) the house error: ``"`name` must be expected, got got"``.

    ``got`` is rendered with :func:`describe` unless it is already a string starting with ``"!"``,
    in which case the rest of the string is used verbatim (for computed descriptions).
    """
    shown = got[1:] if isinstance(got, str) and got.startswith("!") else describe(got)
    return kind(f"`{name}` must be {expected}, got {shown}")


def check_real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside ``[low, high]`` (ends open where asked).

    >>> check_real("smoothing", 0.1, high=1.0)
    0.1
    >>> check_real("smoothing", 1.2, high=1.0)
    Traceback (most recent call last):
    ...
    ValueError: `smoothing` must be <= 1.0, got 1.2
    """
    if isinstance(value, Tensor) and value.numel() == 1 and not value.requires_grad:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise fail(name, "a real number", value, kind=TypeError)
    number = float(value)
    if math.isnan(number):
        raise fail(name, "a number, not NaN", value)
    if low is not None and (number <= low if low_open else number < low):
        raise fail(name, f"{'>' if low_open else '>='} {low}", value)
    if high is not None and (number >= high if high_open else number > high):
        raise fail(name, f"{'<' if high_open else '<='} {high}", value)
    if math.isinf(number):
        raise fail(name, "finite", value)
    return number


def check_int(name: str, value: object, *, low: int | None = None) -> int:
    """Return ``value`` as an int (bools rejected), at least ``low`` when given.

    >>> check_int("num_classes", 3, low=2)
    3
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(name, "an integer", value, kind=TypeError)
    if low is not None and value < low:
        raise fail(name, f">= {low}", value)
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool (``0``/``1`` and other truthy values are rejected).

    >>> check_bool("exact", 1)
    Traceback (most recent call last):
    ...
    TypeError: `exact` must be a bool, got 1
    """
    if not isinstance(value, bool):
        raise fail(name, "a bool", value, kind=TypeError)
    return value


def check_reduction(reduction: object) -> Reduction:
    """Return ``reduction`` if it is one of ``"mean"``, ``"sum"``, ``"none"``."""
    if reduction not in _REDUCTIONS:
        raise fail("reduction", "one of 'mean', 'sum', 'none'", reduction)
    return cast(Reduction, reduction)


def check_tensor(name: str, value: object) -> Tensor:
    """Return ``value`` if it is a tensor, else raise ``TypeError``."""
    if not isinstance(value, Tensor):
        raise fail(name, "a torch.Tensor", f"!{type(value).__name__}", kind=TypeError)
    return value


def check_floating(name: str, value: object, *, min_dim: int = 0) -> Tensor:
    """Return ``value`` if it is a floating-point tensor with at least ``min_dim`` dimensions."""
    tensor = check_tensor(name, value)
    if not tensor.is_floating_point():
        raise fail(name, "a floating-point tensor", tensor, kind=TypeError)
    if tensor.dim() < min_dim:
        raise fail(name, f"a tensor with at least {min_dim} dimensions", tensor)
    return tensor


def check_class_indices(
    name: str, target: Tensor, num_classes: int, *, ignore_index: int | None = None
) -> None:
    """Check that ``target`` holds integer class indices in ``[0, num_classes)``.

    Entries equal to ``ignore_index`` are allowed anywhere.
    """
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise fail(name, "an integer tensor of class indices", target, kind=TypeError)
    if target.numel() == 0:
        return
    valid = target if ignore_index is None else target[target != ignore_index]
    if valid.numel() == 0:
        return
    low, high = int(valid.min()), int(valid.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise fail(name, f"class indices in [0, {num_classes - 1}]{extra}", f"!{bad}")


def check_distribution(
    name: str, probs: Tensor, *, dim: int = -1, atol: float = 1e-4, on_device: bool = False
) -> None:
    """Check that ``probs`` is non-negative, finite and sums to 1 along ``dim``.

    Two passes over ``probs`` (its sums and its minimum): a NaN or an infinity makes its sum
    non-finite, and only then is the element-wise finiteness test run (a finite row whose sum
    overflows is reported as off by inf). Float32 and float64 sums accumulate in their own
    type, half precision in float32.

    With ``on_device`` (a loss's per-call prior), where reading the values would synchronise
    (:func:`host_reads` is false) the same conditions are asserted on the device instead
    (:func:`assert_on_device`), in one message that names no value.

    >>> rows = torch.tensor([[0.5, 0.5], [0.9, 0.2]])
    >>> with device_checks():
    ...     check_distribution("prior", rows, dim=1, on_device=True)
    Traceback (most recent call last):
    ...
    RuntimeError: `prior` must be finite non-negative probabilities summing to 1 along dim 1
    """
    if not probs.is_floating_point():
        raise fail(name, "a floating-point tensor of probabilities", probs, kind=TypeError)
    if probs.numel() == 0:
        return
    probs = probs.detach()
    wide = probs if probs.dtype in (torch.float32, torch.float64) else probs.float()
    sums = wide.sum(dim=dim)
    if on_device and not host_reads(probs):
        fine = torch.all(torch.isfinite(probs) & (probs >= 0)) & torch.all((sums - 1).abs() <= atol)
        expected = f"finite non-negative probabilities summing to 1 along dim {dim}"
        assert_on_device(fine, name, expected)
        return
    if not bool(torch.isfinite(sums).all()) and not bool(torch.isfinite(probs).all()):
        raise fail(name, "finite probabilities", "!a tensor containing NaN or inf")
    low = float(probs.min())
    if low < 0:
        raise fail(name, "non-negative probabilities", f"!a minimum of {low:.4g}")
    worst = float((sums.double() - 1).abs().max())
    if worst > atol:
        raise fail(
            name, f"a distribution summing to 1 along dim {dim}", f"!sums off by {worst:.3g}"
        )


def check_same_shape(name: str, value: Tensor, expected: tuple[int, ...], what: str) -> None:
    """Check that ``value`` has shape ``expected`` (described as ``what`` in the message)."""
    if tuple(value.shape) != tuple(expected):
        raise fail(name, f"of shape {tuple(expected)} ({what})", f"!shape {tuple(value.shape)}")


def check_weight(weight: Tensor | None, num_classes: int) -> Tensor | None:
    """Check a per-class ``weight`` of shape ``(C,)``, finite and non-negative."""
    if weight is None:
        return None
    check_floating("weight", weight)
    check_same_shape("weight", weight, (num_classes,), "one weight per class")
    if not host_reads(weight):
        fine = torch.isfinite(weight) & (weight >= 0)
        assert_on_device(fine, "weight", "finite and non-negative")
    elif not bool(torch.isfinite(weight).all()) or bool((weight < 0).any()):
        raise fail("weight", "finite and non-negative", weight)
    return weight


def check_generator(generator: object) -> torch.Generator | None:
    """Return ``generator`` if it is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise fail(
            "generator", "a torch.Generator or None", f"!{type(generator).__name__}", kind=TypeError
        )
    return generator


def reduce_loss(loss: Tensor, reduction: Reduction, denominator: Tensor | None = None) -> Tensor:
    """Reduce a per-element loss.

    ``mean`` divides the sum by ``denominator`` (the total weight of the non-ignored elements) when
    given, else by the number of elements. Like PyTorch, a mean over nothing (an empty batch or a
    batch whose every element is ignored) is NaN, a sum over nothing is 0, and ``none`` returns the
    per-element tensor unchanged.

    >>> reduce_loss(torch.tensor([1.0, 3.0]), "mean")
    tensor(2.)
    >>> reduce_loss(torch.tensor([1.0, 3.0]), "sum", torch.tensor(4.0))
    tensor(4.)
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if denominator is None:
        return loss.mean()
    return loss.sum() / denominator
