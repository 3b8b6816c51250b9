"""Image augmentation on whole batches, on the batch's device, reproducible from a generator.

The seeds augment CIFAR with random shifts (a crop of a padded image: 4 pixels of padding, or
Keras' ``width_shift_range = height_shift_range = 0.1``, which is a shift of up to 3 pixels
at 32x32 with the border pixels repeated) and horizontal flips; cutout (DeVries & Taylor 2017)
is the common addition. Every random number is drawn from a CPU ``torch.Generator`` (a few per
image), so a run's augmentation is the same on a CPU and a GPU, and the pixels are moved with one
gather on the device: no Python loop over images. Evaluation never augments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from smoothlab.lab.train.device import to_device

__all__ = ["Augment", "augment_batch"]

Padding = Literal["zeros", "replicate", "reflect"]


@dataclass(frozen=True)
class Augment:
    """What to apply to each training batch of images ``(N, C, H, W)``.

    Args:
        shift: largest shift in pixels along each axis (``4``: a 32x32 crop of the image
            padded by 4); a float in (0, 1) is a fraction of the side (``0.1``: Keras'
            ``width_shift_range``), rounded to whole pixels.
        flip: flip each image left-right with probability 1/2.
        cutout: side of a square set to zero at a uniformly random centre (0: off); the square
            may extend past the border, as in DeVries & Taylor.
        padding: what a shift brings in: ``"zeros"``, ``"replicate"`` (the border pixel, Keras'
            ``fill_mode="nearest"``) or ``"reflect"``.
    """

    shift: float = 0
    flip: bool = False
    cutout: int = 0
    padding: Padding = "zeros"

    def __post_init__(self) -> None:
        if self.shift < 0:
            raise ValueError(f"`shift` must be >= 0, got {self.shift}")
        if not (self.shift < 1 or float(self.shift).is_integer()):
            raise ValueError(
                f"`shift` must be a whole number of pixels or in (0, 1), got {self.shift}"
            )
        if self.cutout < 0:
            raise ValueError(f"`cutout` must be >= 0, got {self.cutout}")
        if self.padding not in ("zeros", "replicate", "reflect"):
            raise ValueError(
                f"`padding` must be one of zeros, replicate, reflect, got {self.padding!r}"
            )

    @property
    def active(self) -> bool:
        """Whether this changes anything."""
        return bool(self.shift or self.flip or self.cutout)

    def pixels(self, side: int) -> int:
        """The largest shift in pixels for an image side of ``side``."""
        return round(self.shift * side) if 0 < self.shift < 1 else int(self.shift)


def augment_batch(images: Tensor, augment: Augment, generator: torch.Generator) -> Tensor:
    """A randomly shifted, flipped and cut-out copy of a batch ``(N, C, H, W)``.

    Image ``n`` is shifted by ``(dy_n, dx_n)``, each uniform on ``{-s, ..., s}``: output pixel
    ``(i, j)`` is input pixel ``(i + dy_n, j + dx_n)``, taken from the padding where that falls
    outside; then it is mirrored left-right with probability 1/2, then zeroed inside a
    ``cutout`` square. Draws come from ``generator``
    (a CPU generator) in a fixed order, so equal generators give equal batches on any device.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> augment_batch(x, Augment(flip=True), g)[0, 0, 0]  # this draw flips
    tensor([3., 2., 1., 0.])
    """
    if images.dim() != 4:
        raise ValueError(f"`images` must be (N, C, H, W), got shape {tuple(images.shape)}")
    n, _, height, width = images.shape
    out = images
    sy, sx = augment.pixels(height), augment.pixels(width)
    if sy or sx:
        out = _shift(out, sy, sx, augment.padding, generator)
    if augment.flip:
        flips = to_device(torch.rand(n, generator=generator) < 0.5, images.device)
        out = torch.where(flips[:, None, None, None], out.flip(-1), out)
    if augment.cutout:
        out = _cutout(out, augment.cutout, generator)
    return out


def _shift(
    images: Tensor, sy: int, sx: int, padding: Padding, generator: torch.Generator
) -> Tensor:
    n, _, height, width = images.shape
    mode = "constant" if padding == "zeros" else padding
    padded = torch.nn.functional.pad(images, (sx, sx, sy, sy), mode=mode)
    dy = to_device(torch.randint(0, 2 * sy + 1, (n,), generator=generator), images.device)
    dx = to_device(torch.randint(0, 2 * sx + 1, (n,), generator=generator), images.device)
    rows = dy[:, None] + torch.arange(height, device=images.device)  # (N, H)
    cols = dx[:, None] + torch.arange(width, device=images.device)  # (N, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def _cutout(images: Tensor, side: int, generator: torch.Generator) -> Tensor:
    n, _, height, width = images.shape
    cy = to_device(torch.randint(0, height, (n,), generator=generator), images.device)
    cx = to_device(torch.randint(0, width, (n,), generator=generator), images.device)
    low = side // 2
    ys = torch.arange(height, device=images.device)[None, :]
    xs = torch.arange(width, device=images.device)[None, :]
    inside_y = (ys >= (cy - low)[:, None]) & (ys < (cy - low + side)[:, None])  # (N, H)
    inside_x = (xs >= (cx - low)[:, None]) & (xs < (cx - low + side)[:, None])  # (N, W)
    hole = inside_y[:, None, :, None] & inside_x[:, None, None, :]
    return images.masked_fill(hole, 0)
