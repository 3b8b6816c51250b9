"""The examples the README points to run (briefly) and print what they claim."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart_runs_and_prints_every_loss(capsys: pytest.CaptureFixture[str]) -> None:
    module = _load("quickstart")
    module.main(epochs=1)
    out = capsys.readouterr().out
    assert "30% of training labels flipped" in out
    for name in module.LOSSES:
        assert name in out


def test_lightning_example_resumes_bitwise_and_predicts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("lightning")
    _load("lightning_ivon").main(epochs=2, workdir=tmp_path)
    out = capsys.readouterr().out
    assert "resumed run equals the uninterrupted run bit for bit: True" in out
    assert (tmp_path / "halves" / "last.ckpt").is_file()
    found = re.search(r"posterior predictive ([0-9.]+), mean weights ([0-9.]+)", out)
    assert found is not None
    assert min(float(found[1]), float(found[2])) > 0.6  # 4 classes: chance is 0.25
