"""Methods that learn from the validation split (AdaFocal) are refused at load without one, or
with one too small for their bins, instead of failing in every worker after an epoch (or, run
for a single epoch, silently training plain focal loss). The table of such methods is checked
against what every registered method's objective does without validation logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from smoothlab.lab.cli import main
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.methods import METHODS, RunContext, make_method
from smoothlab.lab.plan.schema import ConfigError
from smoothlab.lab.plan.validate import VALIDATION_METHODS

K, N = 3, 8


def _error_without_validation_logits(name: str) -> str:
    """Train the objective one epoch, give it no validation logits, call it again: its error."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(N) % K
    teacher = torch.softmax(torch.randn(N, K, generator=g), dim=1)
    objective = make_method(name, {}).run_objective(RunContext(K, labels, labels, 0, 4), teacher)
    logits, index = torch.randn(N, K, generator=g, dtype=torch.float64), torch.arange(N)
    objective(logits, labels, index, 0)
    objective.end_epoch()
    try:
        objective(logits, labels, index, 1)
    except ValueError as error:
        return str(error)
    return ""


@pytest.mark.parametrize("name", list(METHODS))
def test_the_table_lists_exactly_the_methods_that_need_validation_logits(name: str) -> None:
    error = _error_without_validation_logits(name)
    if name in VALIDATION_METHODS:
        assert error.startswith(f"`data.val_fraction` must be > 0 for {name}"), error
    else:
        assert error == ""


def _config(data: dict[str, Any], adafocal: dict[str, Any] | None = None) -> Any:
    return config_from_dict(
        {"data": {"dataset": "digits", **data}, "methods": {"ce": {}, "adafocal": adafocal or {}}}
    )


@pytest.mark.parametrize(
    ("data", "adafocal", "message"),
    [
        (
            {"val_fraction": 0},
            {},
            "`data.val_fraction` must be > 0 with methods.adafocal (its gammas follow the "
            "validation split's calibration), got 0.0",
        ),
        (
            {"val_fraction": 0.1, "train_subset": 100},
            {},
            "`data.val_fraction` must leave >= num_bins = 15 validation examples for "
            "methods.adafocal (data.train_subset = 100 leaves at most 10), got 0.1",
        ),
        (  # the first variant of the sweep whose bins do not fit
            {"val_fraction": 0.05, "train_subset": 140},
            {"num_bins": [5, 8, 10]},
            "`data.val_fraction` must leave >= num_bins = 8 validation examples for "
            "methods.adafocal (data.train_subset = 140 leaves at most 7), got 0.05",
        ),
    ],
)
def test_adafocal_without_a_large_enough_split_is_refused_at_load(
    data: dict[str, Any], adafocal: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(data, adafocal)
    assert str(caught.value) == message


def test_a_split_that_fits_the_bins_loads() -> None:
    # 0.1 x 150 = exactly 15 examples for 15 bins; 0.05 x 150 = 7.5 rounds up to 8 as the split
    assert _config({"val_fraction": 0.1, "train_subset": 150}).data.val_fraction == 0.1
    assert _config({"val_fraction": 0.05, "train_subset": 150}, {"num_bins": 8}).methods
    assert _config({"val_fraction": 0.01}).methods  # the whole set: its size is not known here
    assert config_from_dict({"data": {"val_fraction": 0}, "methods": {"ps-kd": {}, "ols": {}}})


def test_the_cli_refuses_it_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.toml").write_text(
        '[data]\ndataset = "digits"\nval_fraction = 0.0\n[methods.adafocal]\nnum_bins = 5\n'
    )
    monkeypatch.chdir(tmp_path)
    message = (
        "smoothlab: error: c.toml: `data.val_fraction` must be > 0 with methods.adafocal (its "
        "gammas follow the validation split's calibration), got 0.0\n"
    )
    for command in (["run", "c.toml", "--no-report"], ["show-config", "c.toml"]):
        assert main(command) == 2
        assert capsys.readouterr().err == message
    assert not (tmp_path / "results").exists()
    assert main(["show-config", "c.toml", "--set", "data.val_fraction=0.1"]) == 0
