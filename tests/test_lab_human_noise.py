"""Human label noise (CIFAR-N label sets) as noise kinds of the lab, on tiny label files: the
run trains on the human labels of its own examples and keeps the clean ones beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from smoothlab.datasets import load_dataset
from smoothlab.lab.plan.grid import RunConfig, expand_grid
from smoothlab.lab.plan.human_noise import HUMAN_NOISE, human_labels
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.schema import ConfigError
from smoothlab.lab.train.data import prepare_data

DATASET = "cifar10-synthetic"  # 5000 CIFAR-shaped training images, 10 classes


def _flipped() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The synthetic set's labels, its first pixels, and human labels that move an example to
    the next class exactly when its first pixel lies above the median."""
    dataset = load_dataset(DATASET)
    pixel = dataset.x_train[:, 0, 0, 0].double()
    flip = pixel > pixel.median()
    return dataset.y_train, pixel, torch.where(flip, (dataset.y_train + 1) % 10, dataset.y_train)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    (folder / "cifar-n").mkdir()
    clean, _, human = _flipped()
    np.savez(folder / "cifar-n" / "CIFAR-10_human.npz", clean_label=clean, worse_label=human)
    return folder


def _run(root: Path, **data: Any) -> RunConfig:
    raw = {
        "data": {"dataset": DATASET, "root": str(root), **data},
        "noise": {"kinds": ["cifar10n:worse"], "rates": [0.0]},
        "methods": {"ce": {}},
        "seeds": 1,
    }
    (run,) = expand_grid(config_from_dict(raw))
    return run


def test_a_run_trains_on_the_human_labels_of_its_own_examples(root: Path) -> None:
    run = _run(root, train_subset=600, val_fraction=0.2)
    assert (run.noise_kind, run.noise_rate) == ("cifar10n:worse", 0.0)
    data = prepare_data(run, data_seed=3)
    _, pixel, _ = _flipped()
    first = data.unscale(data.x_train)[:, 0, 0, 0].double()
    clear = (first - pixel.median()).abs() > 1e-3  # away from the threshold's rounding
    moved = data.y_train != data.y_train_clean
    assert torch.equal(moved[clear], (first > pixel.median())[clear])
    assert torch.equal(data.y_train[moved], (data.y_train_clean[moved] + 1) % 10)
    assert 0.3 < data.realised_noise_rate < 0.7 and len(data.y_train) == 480


def test_the_whole_training_set_has_the_files_noise_rate(root: Path) -> None:
    data = prepare_data(_run(root, val_fraction=0.0), data_seed=0)
    clean, _, human = _flipped()
    assert torch.equal(data.y_train_clean, clean) and torch.equal(data.y_train, human)
    assert data.realised_noise_rate == float((human != clean).double().mean())


def test_labels_of_another_training_set_are_refused(root: Path) -> None:
    clean, _, _ = _flipped()
    with pytest.raises(ValueError, match=r"^`cifar10n:worse` labels must") as error:
        human_labels("cifar10n:worse", str(root), (clean + 1) % 10)
    expected = (
        "`cifar10n:worse` labels must have clean labels equal to the dataset's 5000 training "
        "labels, in order, got 5000 that differ"
    )
    assert str(error.value) == expected


@pytest.mark.parametrize(
    ("noise", "message"),
    [
        (
            {"kinds": ["cifar10n:worse"], "rates": [0.0, 0.2]},
            "`noise.rates` must be [0] with the human noise kind `cifar10n:worse` (a label set "
            "as published has no rate), got [0.0, 0.2]",
        ),
        (
            {"kinds": ["cifar100n:fine"], "rates": [0.0]},
            "`noise.kinds` has `cifar100n:fine`, which needs 100 classes, but data.dataset "
            "`cifar10-synthetic` has 10",
        ),
    ],
)
def test_bad_human_noise_settings_say_what_is_wrong(noise: dict[str, Any], message: str) -> None:
    raw = {"data": {"dataset": DATASET}, "noise": noise, "methods": {"ce": {}}}
    with pytest.raises(ConfigError) as error:
        config_from_dict(raw)
    assert str(error.value) == message


def test_every_human_kind_names_a_cifar_n_variant() -> None:
    from smoothlab.datasets import get_dataset_info

    for kind in HUMAN_NOISE.values():
        info = get_dataset_info(kind.variant)
        assert info.variant is not None and info.num_classes == kind.num_classes


def test_loss_correction_sees_the_human_noise(root: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("safetensors")
    from smoothlab.lab.plan.grid import run_key, run_seeds
    from smoothlab.lab.plan.methods import RunContext
    from smoothlab.lab.plan.methods.baselines import run_transition
    from smoothlab.lab.train.loop import RunTask, execute

    raw = {
        "data": {"dataset": DATASET, "root": str(root), "train_subset": 300, "test_subset": 100},
        "model": {"hidden": [16]},
        "train": {"epochs": 1, "batch_size": 100},
        "noise": {"kinds": ["cifar10n:worse"], "rates": [0.0]},
        "methods": {"fcorrect": {}},
        "seeds": 1,
    }
    (run,) = expand_grid(config_from_dict(raw))
    seed, data_seed = run_seeds(run)
    data = prepare_data(run, data_seed)
    matrix = run_transition("true", RunContext(10, data.y_train, data.y_train_clean, 0))
    classes = torch.arange(10)
    moved = matrix[classes, (classes + 1) % 10]  # the human labels' only flip: to the next class
    assert torch.allclose(matrix.diagonal() + moved, torch.ones(10, dtype=torch.float64))
    assert 0.2 < float(moved.mean()) < 0.8
    result = execute(RunTask(run_key(run), run, seed, data_seed, "cpu"))
    assert result.error == "" and result.metrics["realised_noise_rate"] > 0.3
