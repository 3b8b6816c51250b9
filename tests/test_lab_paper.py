"""configs/paper/: each seed experiment as published loads with the published numbers, and runs
one reduced run (tiny data, one epoch) on the CPU through the real loop."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("safetensors")
pytest.importorskip("sklearn")

from smoothlab.lab.plan.grid import plan_runs, run_key, run_seeds, teacher_file
from smoothlab.lab.plan.loading import load_config
from smoothlab.lab.plan.schema import Config, ConfigError
from smoothlab.lab.train.loop import RunTask, execute

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
SQRT_TENTH = math.sqrt(0.1)

# file -> (dataset, model, epochs, batch, lr, schedule milestones, gamma, weight decay)
PUBLISHED = {
    "relaxation_mlp_mnist": ("mnist", "mlp", 25, 64, 0.05, (), 0.1, 0.0),
    "relaxation_mlp_fashion_mnist": ("fashion-mnist", "mlp", 50, 64, 0.05, (30,), SQRT_TENTH, 0.0),
    "relaxation_resnet56v2_cifar10": (
        "cifar10", "resnet56v2", 200, 64, 0.1, (50, 100, 150), SQRT_TENTH, 0.0,
    ),
    "relaxation_resnet56v2_cifar100": (
        "cifar100", "resnet56v2", 300, 64, 0.1, (75, 150, 225), SQRT_TENTH, 0.0,
    ),
    "relaxation_vgg16bn_cifar10": ("cifar10", "vgg16bn", 200, 64, 0.01, (50, 100, 150), 0.1, 0.0),
    "relaxation_vgg16bn_cifar100": ("cifar100", "vgg16bn", 300, 64, 0.01, (150, 225), 0.1, 0.0),
    "relaxation_densenet_cifar10": (
        "cifar10", "densenet-bc", 200, 64, 0.1, (50, 100, 150), 0.1, 0.0,
    ),
    "relaxation_densenet_cifar100": ("cifar100", "densenet-bc", 300, 64, 0.1, (150, 225), 0.1, 0.0),
    "tsla_resnet18_cifar100": ("cifar100", "resnet18", 200, 256, 0.1, (60, 120, 180), 0.1, 5e-4),
    "tsla_resnet18_dogs": ("stanford-dogs", "resnet18-imagenet", 90, 256, 0.1, (30, 60), 0.1, 1e-4),
    "tsla_resnet18_cub": ("cub-200-2011", "resnet18-imagenet", 90, 256, 0.1, (30, 60), 0.1, 1e-4),
    "variational_resnet34_cifar10": ("cifar10", "resnet34", 200, 50, 0.05, (100, 150), 0.1, 1e-3),
    "variational_cnn3_mnist": ("mnist", "cnn3", 200, 50, 0.05, (100, 150), 0.1, 1e-3),
    # 004's Table 1 (CIFAR-100): [train] carries LS's (and SAM's) lr and the weight decay
    "variational_resnet34_cifar100_sym20": ("cifar100", "resnet34", 200, 50, 0.1, (100, 150), 0.1, 2e-4),
    "variational_resnet34_cifar100_sym20_sam": ("cifar100", "resnet34", 200, 50, 0.05, (100, 150), 0.1, 2e-4),
    "variational_resnet34_cifar100_sym40": ("cifar100", "resnet34", 200, 50, 0.1, (100, 150), 0.1, 2e-4),
    "variational_resnet34_cifar100_pairflip20": ("cifar100", "resnet34", 200, 50, 0.1, (100, 150), 0.1, 5e-4),
    "tsla_pre_resnet18_cifar100": ("cifar100", "resnet18", 200, 256, 0.1, (60, 120, 180), 0.1, 5e-4),
    # 002's slides give the noise and smoothing rates only: the recipe is ours (the header says)
    "smooth_or_not_cifar10": ("cifar10", "resnet34", 200, 128, 0.1, (100, 150), 0.1, 5e-4),
    "smooth_or_not_cifar100": ("cifar100", "resnet34", 200, 128, 0.1, (100, 150), 0.1, 5e-4),
    # Table 5 (CIFAR-N): the authors' released code, cross-entropy warm-up with plain SGD
    "smooth_or_not_cifar10n": ("cifar10", "resnet34", 220, 128, 0.1, (40, 80), 0.1, 0.0),
    "smooth_or_not_cifar100n": ("cifar100", "resnet34", 220, 128, 0.1, (40, 80), 0.1, 0.0),
}  # fmt: skip
MOMENTUM = {"smooth_or_not_cifar10n": 0.0, "smooth_or_not_cifar100n": 0.0}  # else 0.9

TINY = ["data.train_subset=40", "data.test_subset=16", "train.epochs=1", "train.batch_size=40"]


def _load(name: str, overrides: list[str], tmp_path: Path) -> Config:
    if name.startswith("tsla_resnet18_") and name != "tsla_resnet18_cifar100":
        weights = tmp_path / "resnet18-imagenet.safetensors"  # stands in for ImageNet weights
        overrides = [*overrides, f"model.checkpoint={str(weights)!r}"]
        if not weights.exists():
            _imagenet_like_weights(weights)
    if name == "tsla_pre_resnet18_cifar100":  # a teacher of the run's model and classes
        teacher = tmp_path / "teacher.safetensors"
        classes = 10 if "data.dataset=cifar10-synthetic" in overrides else 100
        _teacher_weights(teacher, classes)
        overrides = [*overrides, f"methods.ls-teacher.teacher={str(teacher)!r}"]
    return load_config(PAPER / f"{name}.toml", overrides)


def _teacher_weights(path: Path, classes: int) -> None:
    from safetensors.torch import save_file

    from smoothlab.lab.plan.models import build_model

    torch.manual_seed(0)
    save_file(build_model("resnet18", (3, 32, 32), classes).state_dict(), str(path))


def _imagenet_like_weights(path: Path) -> None:
    from safetensors.torch import save_file

    from smoothlab.lab.plan.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18-imagenet", (3, 224, 224), 1000)  # ImageNet's 1000-class head
    save_file(model.state_dict(), str(path))


def test_every_paper_config_is_listed() -> None:
    assert sorted(p.stem for p in PAPER.glob("*.toml")) == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_loads_with_the_published_recipe(name: str, tmp_path: Path) -> None:
    config = _load(name, [], tmp_path)
    dataset, model, epochs, batch, lr, milestones, gamma, decay = PUBLISHED[name]
    train = config.train
    assert (config.data.dataset, config.model.name) == (dataset, model)
    momentum = MOMENTUM.get(name, 0.9)
    assert (train.epochs, train.batch_size, train.lr, train.momentum) == (
        epochs,
        batch,
        lr,
        momentum,
    )
    assert train.lr_milestones == milestones and train.weight_decay == decay
    assert train.lr_gamma == pytest.approx(gamma, rel=1e-15)
    assert train.nesterov == name.startswith(
        "relaxation"
    )  # A.2: Nesterov; 001 and 004 say momentum
    keras = name.startswith("relaxation") and "cifar" in name  # A.2.5's Keras augmentation
    expected = (0.1, True, "replicate") if keras else (0, False, "zeros")
    if name.startswith("smooth_or_not"):
        expected = (4, True, "zeros")
    augment = config.data.augment
    assert (augment.shift, augment.flip, augment.padding) == expected
    if name.startswith("relaxation"):
        assert config.data.scaling == "center"  # x / 255 minus the training pixel mean


def test_pretrained_configs_need_their_checkpoint() -> None:
    with pytest.raises(ConfigError, match=r"`model.checkpoint` must be a safetensors file, got"):
        load_config(PAPER / "tsla_resnet18_dogs.toml")
    dogs = load_config(PAPER / "tsla_resnet18_dogs.toml", ["model.checkpoint=''"])
    cub = load_config(PAPER / "tsla_resnet18_cub.toml", ["model.checkpoint=''"])
    assert (dogs.train.backbone_lr, cub.train.backbone_lr) == (0.001, 0.01)
    assert dict(dogs.methods["tsla"])["drop_at"] == (20, 30, 40, 50, 60, 70, 80)


def test_variational_ivon_recipe() -> None:
    config = load_config(PAPER / "variational_resnet34_cifar10.toml")
    ivon = {k: v[0] for k, v in config.methods["ivon"].items()}
    assert ivon == {
        "lr": 0.2,
        "lr_schedule": "cosine",
        "warmup_epochs": 5,
        "hess_init": 0.9,
        "beta2": 1 - 1e-5,
        "weight_decay": 1e-3,
        "ess": 0.0,  # the number of training examples
    }
    assert config.noise.kinds == ("symmetric", "pairflip")


@pytest.mark.parametrize(
    ("setting", "noise", "sam_lr", "ivon_lr", "hess_init"),
    [
        ("sym20", ("symmetric", 0.2), 0.05, 0.8, 0.2),
        ("sym40", ("symmetric", 0.4), 0.1, 0.8, 0.2),
        ("pairflip20", ("pairflip", 0.2), 0.1, 0.5, 0.5),
    ],
)
def test_variational_cifar100_has_table_1(
    setting: str, noise: tuple[str, float], sam_lr: float, ivon_lr: float, hess_init: float
) -> None:
    config = load_config(PAPER / f"variational_resnet34_cifar100_{setting}.toml")
    assert (config.noise.kinds, config.noise.rates, config.seeds) == ((noise[0],), (noise[1],), 5)
    ivon = {k: v[0] for k, v in config.methods["ivon"].items()}
    assert (ivon["lr"], ivon["hess_init"], ivon["beta2"]) == (ivon_lr, hess_init, 1 - 1e-5)
    assert ivon["weight_decay"] == config.train.weight_decay and ivon["warmup_epochs"] == 5
    assert config.train.lr == 0.1  # LS's in every column
    if sam_lr != config.train.lr:  # [train].lr is shared: SAM at its own rate, in its own file
        assert "sam" not in config.methods
        config = load_config(PAPER / f"variational_resnet34_cifar100_{setting}_sam.toml")
        assert list(config.methods) == ["sam"] and config.noise.rates == (noise[1],)
    assert config.train.lr == sam_lr
    assert dict(config.methods["sam"])["rho"] == (0.01, 0.05, 0.1, 0.2, 0.5)


def test_tsla_pre_smooths_towards_a_teacher_and_drops_it() -> None:
    config = load_config(PAPER / "tsla_pre_resnet18_cifar100.toml")
    method = dict(config.methods["ls-teacher"])
    assert method["smoothing"] == (0.1,) and method["drop_at"] == (0, 120, 140, 160, 180)
    with pytest.raises(ConfigError, match=r"`methods.ls-teacher.teacher` file not found"):
        plan_runs(config)  # the placeholder path: no grid without the teacher


def test_smooth_or_not_has_the_slides_rates() -> None:
    config = load_config(PAPER / "smooth_or_not_cifar10.toml")
    assert dict(config.methods["nls"])["smoothing"] == (-0.4, -0.8, -1.0, -2.0, -4.0, -6.0)
    assert dict(config.methods["ls"])["smoothing"] == (0.4, 0.6, 0.8)
    assert config.noise.kinds == ("symmetric", "asymmetric-cifar10")
    assert {0.2, 0.3, 0.4, 0.6} <= set(config.noise.rates) and config.train.switch_epoch == 120


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("smooth_or_not_cifar10n", ("cifar10n:aggre", "cifar10n:random1", "cifar10n:worse")),
        ("smooth_or_not_cifar100n", ("cifar100n:fine",)),
    ],
)
def test_smooth_or_not_cifar_n_has_table_5s_label_sets_and_methods(
    name: str, kinds: tuple[str, ...]
) -> None:
    config = load_config(PAPER / f"{name}.toml")
    assert config.noise.kinds == kinds and config.noise.rates == (0.0,)
    assert list(config.methods) == ["ce", "bcorrect", "fcorrect", "peer", "fdiv", "ls", "nls"]
    assert dict(config.methods["fcorrect"])["transition"] == ("estimated",)
    assert dict(config.methods["ls"])["smoothing"] == (0.2, 0.4, 0.6, 0.8)
    nls = (-0.2, -0.4, -0.6, -0.8, -1.0, -2.0, -4.0, -6.0, -8.0)
    assert dict(config.methods["nls"])["smoothing"] == nls
    train = config.train  # 120 epochs of warm-up, then 100 at 1e-6 with momentum 0.9
    assert (train.switch_epoch, train.switch_lr, train.weight_decay) == (120, 1e-5, 0.0)
    teachers = {r.method for r in plan_runs(config) if r.variant.needs_teacher}
    assert teachers == {"bcorrect", "fcorrect"}


def test_pairflip_moves_each_cifar10_class_to_the_next_as_in_the_paper() -> None:
    from smoothlab.noise import CIFAR10_CLASSES, pairflip

    order = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    assert list(CIFAR10_CLASSES) == [*order, "truck"]
    matrix = pairflip(10, 0.2)
    for i in range(10):
        assert matrix[i, (i + 1) % 10] == pytest.approx(0.2) and matrix[i, i] == pytest.approx(0.8)


def _reduced(name: str) -> list[str]:
    dataset = PUBLISHED[name][0]
    small = "digits" if "mnist" in dataset else "cifar10-synthetic"
    return [*TINY, f"data.dataset={small}", "seeds=1"]


def _human_labels(root: Path) -> list[str]:
    """A CIFAR-N-shaped label file for the synthetic stand-in (every third label moved to the
    next class), and the overrides that read it: the reduced run of a human-noise config."""
    import numpy as np

    from smoothlab.datasets import load_dataset

    clean = load_dataset("cifar10-synthetic").y_train
    worse = torch.where(torch.arange(len(clean)) % 3 == 0, (clean + 1) % 10, clean)
    (root / "cifar-n").mkdir()
    np.savez(root / "cifar-n" / "CIFAR-10_human.npz", clean_label=clean, worse_label=worse)
    return [f"data.root={str(root)!r}", "noise.kinds=['cifar10n:worse']"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_one_reduced_run_trains_on_the_cpu(name: str, tmp_path: Path) -> None:
    human = []  # CIFAR-N label sets; one epoch leaves no room for a rate after the switch
    if name.endswith("n"):
        human = [*_human_labels(tmp_path), "train.switch_lr=0.0"]
    config = _load(name, [*_reduced(name), *human], tmp_path)
    runs = plan_runs(config)
    # the last method of the grid (cp, tsla, ivon); IVON's posterior predictive on ResNet-34
    # is a minute on a CPU, so there the first (ce): variational_cnn3_mnist runs IVON
    run = runs[0] if "resnet34" in name else runs[-1]
    teacher = teacher_file(run).read_bytes() if run.variant.needs_teacher else None  # the runner's
    task = RunTask(run_key(run), run, *run_seeds(run), "cpu", teacher)
    result = execute(task)
    assert result.error == "", result.error
    assert math.isfinite(result.metrics["nll"]) and len(result.curves["train_loss"]) == 1
