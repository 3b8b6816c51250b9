"""What the framework callbacks share: finding and checking the online label smoothing losses."""

from __future__ import annotations

from torch import nn

from smoothlab._checks import fail
from smoothlab.online import OnlineLabelSmoothingLoss

__all__ = ["check_losses", "online_losses"]


def check_losses(losses: tuple[object, ...]) -> list[OnlineLabelSmoothingLoss]:
    """The losses given to a callback, each checked to be an :class:`OnlineLabelSmoothingLoss`."""
    checked = []
    for loss in losses:
        if not isinstance(loss, OnlineLabelSmoothingLoss):
            raise fail("losses", "OnlineLabelSmoothingLoss instances", loss, kind=TypeError)
        checked.append(loss)
    return checked


def online_losses(
    given: list[OnlineLabelSmoothingLoss], model: nn.Module | None, name: str
) -> list[OnlineLabelSmoothingLoss]:
    """``given`` if not empty, else every online label smoothing loss among ``model``'s modules.

    Raises:
        ValueError: if there is none (``name`` is the argument the message names).
    """
    modules = model.modules() if model is not None else iter(())
    found = given or [m for m in modules if isinstance(m, OnlineLabelSmoothingLoss)]
    if not found:
        expected = "a module holding an OnlineLabelSmoothingLoss (or pass the loss to the callback)"
        raise fail(name, expected, "!none")
    return found
