"""The lab's training loop, in process: every registered method trains and is measured; runs are
reproducible from their key; schedules; models."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from smoothlab.lab.plan.grid import RunConfig, canonical_json, expand_grid, run_key, seed_from
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.methods import METHODS
from smoothlab.lab.plan.models import MODELS, build_model
from smoothlab.lab.run.store import DIVERGED
from smoothlab.lab.train.loop import Diverged, RunResult, RunTask, execute, lr_schedule

TINY = {
    "data": {"dataset": "digits", "train_subset": 400, "test_subset": 200, "val_fraction": 0.25},
    "model": {"hidden": [32]},
    "train": {"epochs": 2, "batch_size": 100, "lr": 0.1, "select": "val_nll"},
    "noise": {"rates": [0.2]},
    "seeds": 1,
}


def _run(method: str, params: dict[str, object] | None = None, **train: object) -> RunConfig:
    raw = {**TINY, "methods": {method: params or {}}}
    raw["train"] = {**TINY["train"], **train}  # type: ignore[dict-item]
    return expand_grid(config_from_dict(raw))[0]


def _task(run: RunConfig, teacher: bytes | None = None) -> RunTask:
    key = run_key(run)
    data_seed = seed_from(canonical_json(run.data_dict()))
    return RunTask(key, run, seed_from(key), data_seed, "cpu", teacher)


def _check(result: RunResult, epochs: int = 2) -> None:
    assert result.error == ""
    m = result.metrics
    for name in ("accuracy", "top5_accuracy", "nll", "ece", "brier", "ece_ts", "nll_ts"):
        assert math.isfinite(m[name]), name
    assert 0 <= m["ece"] <= 1 and 0 <= m["accuracy"] <= 1
    assert m["temperature"] > 0
    assert abs(m["realised_noise_rate"] - 0.2) < 0.08
    assert m["wall_time"] > 0
    assert len(result.curves["test_accuracy"]) == epochs
    assert len(result.extras["reliability"]["count"]) == 15
    assert sum(result.extras["reliability"]["count"]) == 200
    assert result.weights


@pytest.fixture(scope="module")
def ce_result() -> RunResult:
    return execute(_task(_run("ce")))


def test_every_method_trains_and_is_measured(ce_result: RunResult) -> None:
    _check(ce_result)
    for name in METHODS:
        if name == "ce":
            continue
        run = _run(name)
        teacher = ce_result.weights if METHODS[name].needs_teacher else None
        result = execute(_task(run, teacher))
        _check(result)
        if name == "ivon":
            noisy = result.extras["noisy_examples"]
            assert len(noisy["most"]["x"]) == 8
            assert min(noisy["most"]["noise"]) >= max(noisy["least"]["noise"])


def test_a_run_is_reproducible_from_its_key(ce_result: RunResult) -> None:
    again = execute(_task(_run("ce")))
    assert again.metrics["accuracy"] == ce_result.metrics["accuracy"]
    assert again.curves["train_loss"] == ce_result.curves["train_loss"]
    assert again.weights == ce_result.weights


def test_switch_epoch_trains_with_cross_entropy_first(ce_result: RunResult) -> None:
    # nls with the switch after the last epoch is plain cross-entropy, bit for bit
    run = _run("nls", {"smoothing": -0.5}, switch_epoch=5)
    ce = _run("ce", switch_epoch=5)
    same_seed = RunTask(run_key(run), run, seed_from(run_key(ce)), _task(ce).data_seed, "cpu")
    assert execute(same_seed).curves["train_loss"] == execute(_task(ce)).curves["train_loss"]


def test_a_failing_run_is_reported_not_raised() -> None:
    run = _run("ls-teacher")
    result = execute(_task(run, teacher=None))
    assert "teacher_weights" in result.error
    assert result.metrics == {}


def test_lr_schedules() -> None:
    cosine = lr_schedule(_run("ce", lr_schedule="cosine", warmup_epochs=1, epochs=3), 0.3, 10)
    assert cosine(0) == pytest.approx(0.03)
    assert cosine(9) == pytest.approx(0.03 + 0.27 * 0.9)  # linear warm-up over 10 steps
    assert cosine(10) == pytest.approx(0.3)
    assert cosine(30) == pytest.approx(0.0)
    steps = lr_schedule(_run("ce", lr_schedule="step", lr_milestones=[1, 2], lr_gamma=0.5), 1.0, 4)
    assert [steps(t) for t in (0, 3, 4, 8)] == pytest.approx([1.0, 1.0, 0.5, 0.25])
    assert lr_schedule(_run("ce"), 0.1, 4)(7) == 0.1


def test_switch_lr_is_the_rate_after_the_switch() -> None:
    run = _run("nls", {"smoothing": -0.4}, lr_schedule="cosine", switch_epoch=2, switch_lr=1e-6,
               epochs=4)  # fmt: skip
    schedule = lr_schedule(run, 0.1, 10)
    assert schedule(0) == 0.1 and 0 < schedule(19) < 0.1  # cosine during the warm-up phase
    assert schedule(20) == schedule(39) == 1e-6
    assert lr_schedule(_run("ce", lr_schedule="cosine", epochs=4), 0.1, 10)(20) > 1e-3


def _optimizer_lrs(run: RunConfig, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The learning rate in the optimizer's param groups at every training step of ``run``."""
    from smoothlab.lab.train.optimizers import OPTIMIZERS

    seen: list[float] = []

    def recording(step):  # type: ignore[no-untyped-def]
        def spy(model, optimizer, loss_fn, batch, epoch):  # type: ignore[no-untyped-def]
            seen.append(optimizer.param_groups[0]["lr"])
            return step(model, optimizer, loss_fn, batch, epoch)

        return spy

    for name, kind in OPTIMIZERS.items():
        monkeypatch.setitem(OPTIMIZERS, name, dataclasses.replace(kind, step=recording(kind.step)))
    assert execute(_task(run)).error == ""
    return seen


def test_ivon_schedule_overrides_reach_the_optimizer(monkeypatch: pytest.MonkeyPatch) -> None:
    # [train] is step decay (x0.1 after epoch 2); IVON overrides it with lr 0.2, cosine to zero
    # after a 1-epoch linear warm-up, as Yang et al. (2025, App. C.2) train it.
    recipe = {"epochs": 3, "lr_schedule": "step", "lr_milestones": [2], "lr_gamma": 0.1}
    params = {"lr": 0.2, "lr_schedule": "cosine", "warmup_epochs": 1}
    ivon = _optimizer_lrs(_run("ivon", params, **recipe), monkeypatch)
    # 300 training examples (400 minus the 25 % validation split) in batches of 100: 3 steps
    # per epoch, so 3 warm-up steps from 0.2 / 3, then a half cosine over the other 6 steps
    warm = [0.2 / 3 + (0.2 - 0.2 / 3) * t / 3 for t in range(3)]
    cos = [0.1 * (1 + math.cos(math.pi * t / 6)) for t in range(6)]
    assert ivon == pytest.approx(warm + cos, rel=1e-12)
    assert ivon[2] == pytest.approx(0.2 / 3 + 0.8 / 9) and ivon[-1] == pytest.approx(0.01339746)
    # unset overrides keep [train]'s schedule, with IVON's own lr
    inherited = _optimizer_lrs(_run("ivon", {"lr": 0.2}, **recipe), monkeypatch)
    assert inherited == pytest.approx([0.2] * 6 + [0.02] * 3)
    # the other methods of the grid keep the [train] recipe
    sam = _optimizer_lrs(_run("sam", {}, **recipe), monkeypatch)
    assert sam == pytest.approx([0.1] * 6 + [0.01] * 3)


def test_ivon_train_samples_draw_that_many_forward_backward_passes_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smoothlab.optim import IVON

    recorded: list[int] = []
    original = IVON._record

    def counting(self: IVON, swapped: object) -> None:
        recorded.append(self._samples)
        original(self, swapped)  # type: ignore[arg-type]

    monkeypatch.setattr(IVON, "_record", counting)
    run = _run("ivon", {"train_samples": 3}, epochs=1)
    assert dict(run.params)["train_samples"] == 3 and "train_samples=3" in run.label()
    assert execute(_task(run)).error == ""
    # 300 training examples in batches of 100: 3 steps, each recording samples 0, 1, 2
    assert recorded == [0, 1, 2] * 3
    # at its default the parameter stays out of the run's params, so stored keys do not change
    default = _run("ivon", {}, epochs=1)
    assert "train_samples" not in dict(default.params)
    assert default == _run("ivon", {"train_samples": 1}, epochs=1)


def test_models_shapes_and_sizes() -> None:
    assert set(MODELS) == {
        "mlp",
        "cnn",
        "logreg",
        "resnet18",
        "resnet56v2",
        "resnet34",
        "resnet18-imagenet",
        "vgg16bn",
        "densenet-bc",
        "cnn3",
    }
    x = torch.randn(3, 1, 28, 28)
    for name in ("mlp", "cnn", "logreg"):
        assert build_model(name, (1, 28, 28), 10, (16,))(x).shape == (3, 10)
    # the relaxation supplement's MLP: 784-1024-1024-10
    mlp = build_model("mlp", (784,), 10, (1024, 1024))
    assert (
        sum(p.numel() for p in mlp.parameters()) == 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 10250
    )
    resnet = build_model("resnet18", (3, 32, 32), 10)
    assert sum(p.numel() for p in resnet.parameters()) == 11_173_962  # CIFAR ResNet-18
    with pytest.raises(ValueError, match=r"`model.name` must be one of mlp, cnn"):
        build_model("vgg", (3, 32, 32), 10)


@pytest.mark.parametrize("method", ["ols", "ivon", "sam"])
def test_a_run_resumed_from_its_checkpoint_equals_an_uninterrupted_one(
    tmp_path: Path, method: str
) -> None:
    run = _run(method, epochs=3)
    whole = execute(_task(run))
    folder = tmp_path / "checkpoint"
    task = dataclasses.replace(_task(run), checkpoint_dir=str(folder), checkpoint_every=1)

    def killed_after_two_epochs(key: str, done: int, total: int) -> None:
        if done == 2:
            raise RuntimeError("killed")

    assert "RuntimeError: killed" in execute(task, killed_after_two_epochs).error
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["best-1.safetensors", "model-1.safetensors", "state.pt"]
    epochs_run: list[int] = []
    resumed = execute(task, lambda key, done, total: epochs_run.append(done))
    assert epochs_run == [3]  # only the last epoch was trained again
    assert resumed.weights == whole.weights
    assert resumed.curves == whole.curves
    del resumed.metrics["wall_time"], whole.metrics["wall_time"]
    assert resumed.metrics == whole.metrics


def test_center_scaling_subtracts_the_training_mean_and_divides_by_the_largest_value() -> None:
    from smoothlab.lab.train.data import prepare_data

    run = _run("ce")
    centered = dataclasses.replace(run, data=dataclasses.replace(run.data, scaling="center"))
    data = prepare_data(centered, 0)
    assert data.x_train.mean(dim=0).abs().max() < 1e-5
    assert 0.5 < float(data.x_train.abs().max()) <= 1.0  # digits are 0..16: (x - mean) / 16
    raw = data.unscale(data.x_train)
    assert torch.allclose(raw, raw.round(), atol=1e-4) and float(raw.max()) == pytest.approx(16)
    standard = prepare_data(run, 0)
    assert torch.equal(standard.y_train, data.y_train)  # same labels, same split
    stds = standard.x_train.std(dim=0, correction=0)
    varying = stds[stds > 0.01]  # constant corner pixels stay 0
    assert torch.allclose(varying, torch.ones_like(varying), atol=1e-4)


def test_a_diverged_run_says_at_which_epoch_not_that_logits_must_be_finite() -> None:
    from smoothlab.lab.run.store import Failure

    result = execute(_task(_run("ce", None, lr=1e30, epochs=2)))
    assert "Traceback (most recent call last)" in result.error  # the full traceback is kept
    failure = Failure(result.key, "e", "ce", "symmetric", 0.2, 0, result.error)
    assert failure.reason() == "diverged at epoch 1 (non-finite loss)"
    assert "logits" not in failure.reason()
    assert result.error.count("diverged at epoch") == 1  # said once (smoothlab failures)
    # store.reason strips the exception's name by a literal prefix: it must stay the class's
    assert f"{Diverged.__module__}.{Diverged.__qualname__}: " == DIVERGED
