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


# ---- data.augment_* in the lab: config, the training loop, checkpoints ----

_TINY = {
    "data": {"dataset": "digits", "train_subset": 120, "test_subset": 60, "val_fraction": 0.25},
    "model": {"name": "cnn", "hidden": [8]},
    "train": {"epochs": 2, "batch_size": 40, "lr": 0.05},
    "noise": {"rates": [0.0]},
    "methods": {"ce": {}},
    "seeds": 1,
}


def _lab_task(augment: dict[str, object], **top: object):  # type: ignore[no-untyped-def]
    from smoothlab.lab.plan.grid import expand_grid, run_key, run_seeds
    from smoothlab.lab.plan.loading import config_from_dict
    from smoothlab.lab.train.loop import RunTask

    keys = {f"augment_{k}": v for k, v in augment.items()}
    raw = {**_TINY, **top, "data": {**_TINY["data"], **keys}}
    run = expand_grid(config_from_dict(raw))[0]
    return RunTask(run_key(run), run, *run_seeds(run), "cpu")


def test_config_augment_keys_are_checked() -> None:
    from smoothlab.lab.plan.loading import apply_overrides, config_from_dict
    from smoothlab.lab.plan.schema import AugmentConfig, ConfigError

    data = {**_TINY["data"], "augment_shift": 0.1, "augment_flip": True}
    raw = {**_TINY, "data": data}
    config = config_from_dict(raw)
    assert config.data.augment == AugmentConfig(shift=0.1, flip=True) and config.data.augment.active
    over = config_from_dict(apply_overrides(raw, ["data.augment_padding=replicate"]))
    assert over.data.augment.padding == "replicate"
    bad = [
        ({"augment_shfit": 1}, r"^unknown key `data.augment_shfit`; did you mean `augment_shift`"),
        ({"augment_shift": -1}, r"^`data.augment_shift` must be >= 0, got -1.0$"),
        ({"augment_shift": 1.5}, r"^`data.augment_shift` must be a whole number of pixels or in"),
        ({"augment_cutout": -2}, r"^`data.augment_cutout` must be >= 0, got -2$"),
        ({"augment_padding": "wrap"}, r"^`data.augment_padding` must be one of zeros, replicate"),
        ({"augment_flip": 1}, r"^`data.augment_flip` must be true or false, got 1$"),
    ]
    for keys, message in bad:
        with pytest.raises(ConfigError, match=message):
            config_from_dict({**raw, "data": {**_TINY["data"], **keys}})


def test_augmentation_on_a_table_stops_at_load() -> None:
    from smoothlab.lab.plan.loading import config_from_dict
    from smoothlab.lab.plan.schema import ConfigError

    message = (
        r"^`data.augment_\*` must be off for data.dataset `twonorm` \(a table of 20 features; "
        r"augmentation needs images\), got AugmentConfig\(.*flip=True.*\)$"
    )
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"data": {"dataset": "twonorm", "augment_flip": True}})
    config_from_dict({"data": {"dataset": "twonorm", "augment_flip": False}})  # off: fine


def test_the_loop_augments_training_batches_only_from_the_runs_stream(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from smoothlab.lab.train import loop

    seen: list[tuple[int, ...]] = []
    real = loop.augment_batch

    def spy(images: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
        seen.append(tuple(images.shape))
        return real(images, augment, generator)

    monkeypatch.setattr(loop, "augment_batch", spy)
    task = _lab_task({"shift": 2, "flip": True, "cutout": 3})
    first = loop.execute(task)
    assert first.error == ""
    # 90 training images in batches of 40, two epochs: six calls, never on 60 test or 30 val
    assert seen == [(40, 1, 8, 8), (40, 1, 8, 8), (10, 1, 8, 8)] * 2
    again = loop.execute(task)
    assert again.metrics["accuracy"] == first.metrics["accuracy"]  # reproducible per seed
    plain = loop.execute(_lab_task({}))
    assert plain.curves["train_loss"] != first.curves["train_loss"]  # it changed the batches


def test_a_resumed_augmented_run_continues_the_same_stream(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from smoothlab.lab.train.loop import execute

    task = _lab_task({"shift": 2, "flip": True}, train={**_TINY["train"], "epochs": 3})
    whole = execute(task)
    resumable = dataclasses.replace(task, checkpoint_dir=str(tmp_path), checkpoint_every=1)

    def killed(key: str, done: int, total: int) -> None:
        if done == 2:
            raise RuntimeError("killed")

    assert "killed" in execute(resumable, killed).error
    resumed = execute(resumable)
    assert resumed.curves == whole.curves and resumed.weights == whole.weights


def test_augmented_runs_do_not_stack() -> None:
    from smoothlab.lab.train.stacked import stack_key

    assert stack_key(_lab_task({"flip": True})) is None
    assert stack_key(_lab_task({})) is not None
