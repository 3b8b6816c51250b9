"""The examples the README points to run (briefly) and print what they claim."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import torch

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


def test_hf_trainer_example_learns_tokens_and_ignores_padding(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    module = _load("hf_trainer_tokens")
    data = module.sequences(6, seed=0)
    labels = torch.stack([d["labels"] for d in data])
    assert (labels == -100).any() and (labels != -100).any()
    logits = torch.randn(
        6, labels.shape[1], module.VOCAB, generator=torch.Generator().manual_seed(0)
    )
    per_token = module.token_loss({"logits": logits}, labels, (labels != -100).sum())
    torch.testing.assert_close(per_token, module.token_loss({"logits": logits}, labels))
    result = module.main(epochs=3, workdir=tmp_path)
    assert result["loss_after"] < 0.7 * result["loss_before"]
    assert result["accuracy"] > 0.3  # 15 tokens: chance is 1/15
    assert "next-token accuracy on labelled test tokens" in capsys.readouterr().out
