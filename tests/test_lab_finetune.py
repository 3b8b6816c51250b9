"""The lab's paper recipes: step decay by any factor, a pretrained backbone at its own rate
(``train.backbone_lr``, ``model.checkpoint``), bf16 autocast and torch.compile."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("safetensors")

from safetensors.torch import save_file

from smoothlab.lab.plan.grid import RunConfig, expand_grid, run_key, run_seeds
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.models import build_model
from smoothlab.lab.plan.schema import ConfigError
from smoothlab.lab.train.data import prepare_data
from smoothlab.lab.train.loop import RunTask, _Trainer, execute, load_pretrained, lr_schedule
from smoothlab.lab.train.optimizers import OPTIMIZERS
from smoothlab.lab.train.stacked import stack_key

TINY = {
    "data": {"dataset": "digits", "train_subset": 120, "test_subset": 60, "val_fraction": 0.25},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 2, "batch_size": 30, "lr": 0.1},
    "noise": {"rates": [0.0]},
    "methods": {"ce": {}},
    "seeds": 1,
}


def _raw(**sections: dict[str, object]) -> dict[str, object]:
    raw: dict[str, object] = dict(TINY)
    for name, values in sections.items():
        raw[name] = {**TINY[name], **values}  # type: ignore[dict-item]
    return raw


def _task(run: RunConfig) -> RunTask:
    return RunTask(run_key(run), run, *run_seeds(run), "cpu")


def _run(**sections: dict[str, object]) -> RunConfig:
    return expand_grid(config_from_dict(_raw(**sections)))[0]


def test_step_decay_by_the_square_root_of_a_tenth() -> None:
    # Fashion-MNIST in the relaxation supplement: lr x sqrt(0.1) after epoch 30
    run = _run(train={"lr_schedule": "step", "lr_milestones": [1], "lr_gamma": math.sqrt(0.1)})
    schedule = lr_schedule(run, 0.1, 3)
    assert [schedule(s) for s in range(6)] == pytest.approx([0.1] * 3 + [0.1 * 0.1**0.5] * 3)


def test_backbone_lr_puts_the_classifier_at_lr_and_the_rest_at_its_rate() -> None:
    run = _run(train={"backbone_lr": 0.001, "momentum": 0.9})
    model = build_model("mlp", (64,), 10, (16,))
    kind = OPTIMIZERS["default"]
    optimizer = kind.build(run.variant, model, run.train, 90, 0)
    head, body = optimizer.param_groups
    assert head["params"] == [model[3].weight, model[3].bias] and head["lr"] == 0.1
    assert body["params"] == [model[1].weight, model[1].bias] and body["lr"] == 0.001
    kind.set_lr(optimizer, 0.01)  # the schedule divides both by 10
    assert head["lr"] == 0.01 and body["lr"] == pytest.approx(1e-4, rel=1e-12)
    plain = kind.build(run.variant, model, _run().train, 90, 0)
    assert len(plain.param_groups) == 1 and "lr_scale" not in plain.param_groups[0]


def test_a_backbone_rate_trains_and_does_not_stack() -> None:
    run = _run(train={"backbone_lr": 0.001})
    assert execute(_task(run)).error == "" and stack_key(_task(run)) is None
    assert stack_key(_task(_run())) is not None


def _pretrained(tmp_path: Path, classes: int) -> tuple[Path, nn.Module]:
    torch.manual_seed(123)
    source = build_model("mlp", (1, 8, 8), classes, (16,))
    path = tmp_path / "pretrained.safetensors"
    save_file(source.state_dict(), str(path))
    return path, source


def test_a_checkpoint_is_loaded_before_training_and_a_different_head_is_skipped(
    tmp_path: Path,
) -> None:
    path, source = _pretrained(tmp_path, 7)  # 7 classes: digits has 10
    run = _run(model={"checkpoint": str(path)})
    task = _task(run)
    trainer = _Trainer(task, prepare_data(run, task.data_seed), torch.device("cpu"))
    loaded = trainer.model.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value) == (not key.startswith("3.")), key
    same, ten = _pretrained(tmp_path, 10)  # a head of the right shape is loaded too
    model = build_model("mlp", (1, 8, 8), 10, (16,))
    load_pretrained(model, str(same))
    assert all(torch.equal(v, ten.state_dict()[k]) for k, v in model.state_dict().items())
    assert execute(task).error == ""


def test_checkpoint_errors(tmp_path: Path) -> None:
    missing = tmp_path / "none.safetensors"
    message = rf"^`model.checkpoint` must be a safetensors file, got '{missing}' \(not found\)$"
    with pytest.raises(ConfigError, match=message):
        config_from_dict(_raw(model={"checkpoint": str(missing)}))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"other.weight": torch.zeros(2)}, str(wrong))
    with pytest.raises(ValueError, match=r"^`model.checkpoint` must hold the model's tensors"):
        load_pretrained(build_model("mlp", (64,), 10, (16,)), str(wrong))
    ivon = {**_raw(train={"backbone_lr": 0.01}), "methods": {"ivon": {}}}
    with pytest.raises(
        ConfigError, match=r"^`train.backbone_lr` must be 0 with methods.ivon .*got 0.01$"
    ):
        config_from_dict(ivon)
    with pytest.raises(ConfigError, match=r"^`train.backbone_lr` must be >= 0, got -1.0$"):
        config_from_dict(_raw(train={"backbone_lr": -1}))


def test_bf16_autocast_trains_on_the_cpu_with_bf16_logits_inside() -> None:
    from smoothlab.lab.train.device import TrainingForward

    run = _run(train={"precision": "bf16"})
    task = _task(run)
    trainer = _Trainer(task, prepare_data(run, task.data_seed), torch.device("cpu"))
    assert isinstance(trainer.forward, TrainingForward) and trainer.forward.model is trainer.model
    seen: list[torch.dtype] = []
    trainer.model[1].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    assert trainer.forward(torch.randn(4, 1, 8, 8)).dtype == torch.float32
    assert seen == [torch.bfloat16]  # the matmul ran in bf16, the logits come back in float32
    bf16, fp32 = execute(task), execute(_task(_run()))
    assert bf16.error == "" and bf16.curves["train_loss"] != fp32.curves["train_loss"]
    assert abs(bf16.metrics["accuracy"] - fp32.metrics["accuracy"]) < 0.3
    with pytest.raises(
        ConfigError, match=r"^`train.precision` must be one of fp32, bf16, got 'fp16'$"
    ):
        config_from_dict(_raw(train={"precision": "fp16"}))


def test_the_default_cpu_path_uses_the_model_itself_and_the_data_where_it_is() -> None:
    from smoothlab.lab.plan.schema import TrainConfig
    from smoothlab.lab.train.device import resident, training_forward

    model = build_model("mlp", (4,), 3, (8,))
    assert training_forward(model, TrainConfig(), torch.device("cpu")) is model
    x = torch.zeros(2, 4)
    assert resident(x, torch.device("cpu"), limit=0) is x
    assert resident(x, torch.device("meta"), limit=32).device.type == "meta"  # 32 bytes fit
    assert resident(x, torch.device("meta"), limit=31) is x  # too big: stays on the host


def test_compile_runs_a_tiny_mlp(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is unavailable")
    import functools

    from smoothlab.lab.train import device

    # dynamo traces the real training forward; aot_eager skips inductor's C++ build (a minute
    # on 2 cores), which is torch's to test
    compiled: list[nn.Module] = []
    real = functools.partial(torch.compile, backend="aot_eager")
    monkeypatch.setattr(device.torch, "compile", lambda m: compiled.append(m) or real(m))
    run = _run(train={"compile": True, "epochs": 1, "batch_size": 40})  # a partial last batch
    result = execute(_task(run))
    assert result.error == "", result.error
    assert len(compiled) == 1 and isinstance(compiled[0], nn.Sequential)
    task = _task(run)  # the same seeds without compiling: the same losses up to rounding
    plain_run = dataclasses.replace(run, train=dataclasses.replace(run.train, compile=False))
    plain = execute(dataclasses.replace(task, run=plain_run))
    assert result.curves["train_loss"] == pytest.approx(plain.curves["train_loss"], rel=1e-5)


def test_bf16_and_compiled_runs_do_not_stack() -> None:
    assert stack_key(_task(_run(train={"precision": "bf16"}))) is None
    assert stack_key(_task(_run(train={"compile": True}))) is None


def test_conv_nets_on_cuda_train_channels_last() -> None:
    from smoothlab.lab.plan.schema import TrainConfig
    from smoothlab.lab.train.device import TrainingForward, training_forward

    cuda = torch.device("cuda")  # only the choice is made here: nothing moves to a GPU
    cnn = build_model("cnn", (1, 8, 8), 10, (8,))
    forward = training_forward(cnn, TrainConfig(), cuda)
    assert isinstance(forward, TrainingForward) and forward.channels_last and not forward.bf16
    assert cnn.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    mlp = build_model("mlp", (64,), 10, (8,))
    assert training_forward(mlp, TrainConfig(), cuda) is mlp  # no convolutions: as it is
    out = forward(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10) and out.dtype == torch.float32
