"""Batch augmentation: a shift is a shift, a flip a flip, cutout a square; reproducible."""

from __future__ import annotations

import pytest
import torch

from smoothlab.lab.train.augment import Augment, augment_batch


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 64, c: int = 3, h: int = 8, w: int = 10) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=_g(42)) + 0.5  # no zeros: padding is visible


def _shifted(image: torch.Tensor, dy: int, dx: int, mode: str) -> torch.Tensor:
    """Naive twin: out[i, j] = image[i + dy, j + dx], outside filled as ``mode`` says."""
    _, h, w = image.shape
    out = torch.zeros_like(image)
    for i in range(h):
        for j in range(w):
            y, x = i + dy, j + dx
            if mode == "replicate":
                y, x = min(max(y, 0), h - 1), min(max(x, 0), w - 1)
            elif mode == "reflect":
                y = -y if y < 0 else (2 * (h - 1) - y if y >= h else y)
                x = -x if x < 0 else (2 * (w - 1) - x if x >= w else x)
            if 0 <= y < h and 0 <= x < w:
                out[:, i, j] = image[:, y, x]
    return out


@pytest.mark.parametrize("mode", ["zeros", "replicate", "reflect"])
def test_every_image_is_its_naive_shift_within_the_range(mode: str) -> None:
    x = _images(24)
    out = augment_batch(x, Augment(shift=2, padding=mode), _g(1))  # type: ignore[arg-type]
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for n in range(x.shape[0]):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[n], _shifted(x[n], dy, dx, mode))
        ]
        assert len(matches) == 1, (n, matches)
        seen.add(matches[0])
    assert len(seen) > 10  # the shifts vary over the batch


def test_a_flip_is_a_left_right_mirror_half_of_the_time() -> None:
    x = _images(400)
    out = augment_batch(x, Augment(flip=True), _g(2))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x, strict=True)])
    assert bool((flipped ^ kept).all())
    # Binomial(400, 1/2): 5 standard errors are 50
    assert abs(int(flipped.sum()) - 200) <= 50


def test_cutout_zeroes_one_square_clipped_at_the_border() -> None:
    x = _images(200, h=12, w=12)
    out = augment_batch(x, Augment(cutout=4), _g(3))
    holes = out == 0
    assert torch.equal(holes[:, 0], holes[:, 1])  # all channels
    for hole in holes[:, 0]:
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert int(hole.sum()) == len(rows) * len(cols)  # a rectangle: the square, clipped
    assert torch.equal(out[~holes], x[~holes])
    assert (holes.sum((1, 2, 3)) == 3 * 16).sum() > 50  # most squares lie fully inside


def test_same_generator_same_batch_on_any_call() -> None:
    x, aug = _images(), Augment(shift=4, flip=True, cutout=3)
    assert torch.equal(augment_batch(x, aug, _g(5)), augment_batch(x, aug, _g(5)))
    assert not torch.equal(augment_batch(x, aug, _g(5)), augment_batch(x, aug, _g(6)))
    assert not Augment().active and aug.active
    assert torch.equal(augment_batch(x, Augment(), _g(5)), x)


def test_keras_shift_fraction_is_whole_pixels() -> None:
    assert Augment(shift=0.1).pixels(32) == 3
    assert Augment(shift=4).pixels(32) == 4
    out = augment_batch(_images(16, h=10, w=10), Augment(shift=0.1), _g(7))
    assert out.shape == (16, 3, 10, 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_equals_the_cpu_batch() -> None:
    x, aug = _images(), Augment(shift=4, flip=True, cutout=3)
    assert torch.equal(augment_batch(x.cuda(), aug, _g(8)).cpu(), augment_batch(x, aug, _g(8)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shift": -1}, "`shift` must be >= 0, got -1"),
        ({"shift": 1.5}, "`shift` must be a whole number of pixels or in (0, 1), got 1.5"),
        ({"cutout": -2}, "`cutout` must be >= 0, got -2"),
        ({"padding": "wrap"}, "`padding` must be one of zeros, replicate, reflect, got 'wrap'"),
    ],
)
def test_bad_settings_say_what_was_expected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(
        ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"
    ):
        Augment(**kwargs)  # type: ignore[arg-type]


def test_images_must_be_four_dimensional() -> None:
    with pytest.raises(ValueError, match=r"^`images` must be \(N, C, H, W\), got shape \(3, 4\)$"):
        augment_batch(torch.zeros(3, 4), Augment(flip=True), _g())
