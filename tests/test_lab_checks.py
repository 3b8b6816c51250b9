"""Config checks at load: finite numbers everywhere, and models that fit the dataset's inputs."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import typing
from pathlib import Path

import pytest

pytest.importorskip("rich")

from smoothlab.lab.cli import main
from smoothlab.lab.plan.inputs import DATASET_INPUTS, dataset_inputs, models_for
from smoothlab.lab.plan.loading import config_from_dict, load_config
from smoothlab.lab.plan.methods import METHODS, method_fields
from smoothlab.lab.plan.models import MODELS, build_model
from smoothlab.lab.plan.schema import (
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    NoiseConfig,
    TrainConfig,
)

NON_FINITE = [("inf", "inf"), ("-inf", "-inf"), ("nan", "nan")]


def _float_fields() -> list[tuple[str, str, bool]]:
    """(section, key, is a list) of every number field: sections and method parameters."""
    found = []
    sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
    for section, cls in {**sections, "noise": NoiseConfig}.items():
        for name, tp in typing.get_type_hints(cls).items():
            if tp is float or tp == tuple[float, ...]:
                found.append((section, name, tp is not float))
    for method in METHODS:
        for name, tp in method_fields(method).items():
            if tp is float:
                found.append((f"methods.{method}", name, False))
    return found


FLOAT_FIELDS = _float_fields()


def test_every_family_of_number_fields_is_covered() -> None:
    # sections, list-valued sweeps of sections, and method parameters all have float fields
    keys = {f"{section}.{key}" for section, key, _ in FLOAT_FIELDS}
    expected = {"data.val_fraction", "train.lr", "train.momentum", "train.weight_decay"}
    expected |= {"train.lr_gamma", "noise.rates", "methods.ls.smoothing", "methods.relax.alpha"}
    expected |= {"methods.cp.beta", "methods.ols.alpha", "methods.tsla.smoothing"}
    expected |= {"methods.ivon.lr", "methods.ivon.weight_decay", "methods.sam.rho"}
    assert expected <= keys
    assert not [f for f in dataclasses.fields(Config) if f.type in ("float", float)]


@pytest.mark.parametrize(("section", "key", "is_list"), FLOAT_FIELDS)
@pytest.mark.parametrize(("toml", "shown"), NON_FINITE)
def test_non_finite_numbers_are_rejected_at_load(
    tmp_path: Path, section: str, key: str, is_list: bool, toml: str, shown: str
) -> None:
    path = tmp_path / "c.toml"
    value = f"[0.1, {toml}]" if is_list else toml
    header = section if not section.startswith("methods.") else f'methods."{section[8:]}"'
    path.write_text(f"[{header}]\n{key} = {value}\n")
    message = rf"^c.toml: `{section}.{key}` must be a finite number, got {shown}$"
    with pytest.raises(ConfigError, match=message):
        load_config(path)


@pytest.mark.parametrize(("toml", "shown"), NON_FINITE)
def test_non_finite_overrides_are_rejected(tmp_path: Path, toml: str, shown: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[methods.ce]\n")
    for key in ("train.lr", "methods.sam.rho", "noise.rates"):
        with pytest.raises(ConfigError, match=rf"`{key}` must be a finite number, got {shown}$"):
            load_config(path, [f"{key}={toml}"])


def test_finite_numbers_still_load() -> None:
    config = config_from_dict(
        {"train": {"lr": 1e30, "weight_decay": 0}, "methods": {"nls": {"smoothing": -8}}}
    )
    assert config.train.lr == 1e30
    assert config.methods["nls"]["smoothing"] == (-8.0,)


# --- models that fit the dataset's inputs -------------------------------------------------------

TABLES = [name for name, row in DATASET_INPUTS.items() if row.kind == "table"]
IMAGE_MODELS = [spec.name for spec in MODELS.values() if spec.inputs == ("image",)]


def test_every_registered_dataset_has_an_inputs_row() -> None:
    from smoothlab.datasets import list_datasets

    assert tuple(DATASET_INPUTS) == list_datasets()
    assert {row.kind for row in DATASET_INPUTS.values()} == {"image", "table"}
    assert all(spec.inputs and set(spec.inputs) <= {"image", "table"} for spec in MODELS.values())
    assert TABLES == ["twonorm", "splice"] and IMAGE_MODELS == [
        "cnn",
        "resnet18",
        "resnet56v2",
        "resnet34",
        "resnet18-imagenet",
        "vgg16bn",
        "densenet-bc",
        "cnn3",
    ]
    with pytest.raises(
        ValueError, match=r"^`data.dataset` must be one of digits, mnist, .*'nope'$"
    ):
        dataset_inputs("nope")


def test_inputs_rows_match_what_the_loaders_return(shared_datasets: Path) -> None:
    from smoothlab.datasets import load_dataset

    for name in ("digits", "twonorm", "splice", "mnist"):
        dataset = load_dataset(name, root=shared_datasets)
        assert tuple(dataset.x_train.shape[1:]) == dataset_inputs(name).shape, name
        assert tuple(dataset.x_test.shape[1:]) == dataset_inputs(name).shape, name


def test_every_accepted_pair_builds_and_runs_rejected_image_models_fail_on_tables() -> None:
    import torch

    for name, row in DATASET_INPUTS.items():
        if name not in ("digits", "twonorm", "splice", "mnist", "cifar10"):
            continue  # the other rows repeat these shapes
        for model in models_for(name):
            net = build_model(model, row.shape, 3, (8,)).eval()
            assert net(torch.zeros(2, *row.shape)).shape == (2, 3), (model, name)
    # the reason for the load-time check: these pairs fail where a worker builds the model
    for name, model in itertools.product(TABLES, IMAGE_MODELS):
        with pytest.raises(ValueError, match=r"`input shape` must be an image or a square"):
            build_model(model, dataset_inputs(name).shape, 3, (8,))


@pytest.mark.parametrize(("dataset", "model"), list(itertools.product(TABLES, IMAGE_MODELS)))
def test_image_models_on_tables_are_rejected_at_load(
    tmp_path: Path, dataset: str, model: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[data]\ndataset = "{dataset}"\n[model]\nname = "{model}"\n')
    shown = dataset_inputs(dataset).describe()
    message = (
        rf"^c.toml: `model.name` must be one of mlp, logreg for data.dataset `{dataset}` "
        rf"\({shown}; {model} needs images\), got '{model}'$"
    )
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match=message[9:]):  # and through --set
        load_config(tmp_path / "c.toml", [f"model.name={model}"])


def test_image_models_on_images_and_flat_models_on_tables_load() -> None:
    for dataset, model in [("digits", "cnn"), ("mnist", "resnet18"), ("twonorm", "logreg")]:
        config = config_from_dict({"data": {"dataset": dataset}, "model": {"name": model}})
        assert (config.data.dataset, config.model.name) == (dataset, model)


def test_the_cli_rejects_an_image_model_on_a_table_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.toml").write_text('[data]\ndataset = "splice"\n[model]\nname = "cnn"\n')
    message = (
        "smoothlab: error: c.toml: `model.name` must be one of mlp, logreg for data.dataset "
        "`splice` (a table of 360 features; cnn needs images), got 'cnn'\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", "c.toml", "--no-report"]) == 2
    assert capsys.readouterr().err == message
    assert main(["run", "c.toml", "--set", "data.dataset=digits", "--set", "train.epochs=0"]) == 2
    assert "`train.epochs` must be >= 1" in capsys.readouterr().err  # digits + cnn passes the check
    done = subprocess.run(
        [sys.executable, "-m", "smoothlab.lab", "show-config", "c.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)
    assert not (tmp_path / "results").exists()
