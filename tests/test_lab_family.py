"""The smoothing family's newer members as lab methods: each objective is its library function,
bad parameters say what is wrong, every method trains alone and stacked to the same numbers,
and the stateful ones (AdaFocal, PS-KD) resume from checkpoints as if never stopped."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from smoothlab import losses
from smoothlab.adafocal import AdaFocalLoss
from smoothlab.distill import zipf_targets
from smoothlab.lab.plan.methods import RunContext, make_method
from smoothlab.lab.plan.schema import ConfigError
from smoothlab.lab.plan.stateful import AdaFocalObjective, SelfDistillationObjective
from smoothlab.schedules import constant, linear

FAMILY = ["maxsup", "mbls", "logitnorm", "logit-penalty", "focal", "flsd53", "adafocal", "ps-kd",
          "zipf"]  # fmt: skip


def _batch(n: int = 6, k: int = 4, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(n, k, generator=generator, dtype=torch.float64)).requires_grad_()
    return logits, torch.randint(0, k, (n,), generator=generator)


def _zipf_ce(x: Tensor, y: Tensor) -> Tensor:
    return losses.label_smoothing_cross_entropy(x, zipf_targets(y, x, smoothing=0.2, power=2.0), 0)


STATELESS: list[tuple[str, dict[str, Any], Callable[[Tensor, Tensor], Tensor]]] = [
    ("maxsup", {"alpha": 0.3}, lambda x, y: losses.max_suppression_loss(x, y, alpha=0.3)),
    ("mbls", {"margin": 1.0, "alpha": 0.2},
     lambda x, y: losses.margin_label_smoothing_loss(x, y, margin=1.0, alpha=0.2)),
    ("logitnorm", {"temperature": 0.5},
     lambda x, y: losses.logit_norm_loss(x, y, temperature=0.5)),
    ("logit-penalty", {"beta": 0.05}, lambda x, y: losses.logit_penalty_loss(x, y, beta=0.05)),
    ("focal", {"gamma": 3.0}, lambda x, y: losses.focal_loss(x, y, gamma=3.0)),
    ("flsd53", {"threshold": 0.5},
     lambda x, y: losses.sample_dependent_focal_loss(x, y, threshold=0.5)),
    ("zipf", {"smoothing": 0.2, "power": 2.0}, _zipf_ce),
]  # fmt: skip


@pytest.mark.parametrize(("name", "params", "library"), STATELESS, ids=[c[0] for c in STATELESS])
def test_each_objective_is_its_library_function(
    name: str, params: dict[str, Any], library: Callable[[Tensor, Tensor], Tensor]
) -> None:
    x, y = _batch()
    objective = make_method(name, params).objective(4)
    ours, expected = objective(x, y, torch.arange(6), 3), library(x, y)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
    grads = [torch.autograd.grad(v, x)[0] for v in (ours, expected)]
    torch.testing.assert_close(*grads, rtol=0, atol=1e-12)


def test_maxsup_ramps_alpha_by_epoch_as_the_paper_and_holds_it_after() -> None:
    x, y = _batch()
    objective = make_method("maxsup", {"alpha": 0.1, "alpha_end": 0.3, "ramp_epochs": 4})
    for epoch in range(7):
        alpha = 0.1 + 0.2 * min(epoch / 4, 1.0)  # the schedule written out
        expected = losses.max_suppression_loss(x, y, alpha=alpha)
        got = objective.objective(4)(x, y, torch.arange(6), epoch)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    constant_alpha = make_method("maxsup", {"alpha": 0.1, "alpha_end": 0.3})  # ramp_epochs = 0
    expected = losses.max_suppression_loss(x, y, alpha=0.1)
    torch.testing.assert_close(constant_alpha.objective(4)(x, y, torch.arange(6), 9), expected)


def _naive_soft_ce(logits: Tensor, q: list[list[float]]) -> float:
    """Mean over rows of -sum_j q_j log softmax(z)_j, with Python floats."""
    total = 0.0
    for row, target in zip(logits.tolist(), q, strict=True):
        top = max(row)
        log_norm = top + math.log(sum(math.exp(v - top) for v in row))
        total -= sum(t * (v - log_norm) for t, v in zip(target, row, strict=True))
    return total / len(q)


def test_ps_kd_mixes_the_label_with_last_epochs_prediction_of_the_same_example() -> None:
    n, k, batch, alpha, ramp = 6, 3, 2, 0.6, 3
    objective = make_method("ps-kd", {"alpha": alpha, "ramp_epochs": ramp}).objective(k)
    seen: dict[int, list[float]] = {}  # example -> its softmax in the previous epoch
    for epoch in range(3):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        now: dict[int, list[float]] = {}
        for b in range(0, n, batch):
            index = order[b : b + batch]
            x, y = _batch(batch, k, seed=10 * epoch + b)
            a = alpha * min(epoch / ramp, 1.0)
            q = []
            for i, label in zip(index.tolist(), y.tolist(), strict=True):
                onehot = [float(j == label) for j in range(k)]
                prior = seen.get(i, onehot)  # the first epoch has no memory: the label
                q.append([(1 - a) * o + a * p for o, p in zip(onehot, prior, strict=True)])
                now[i] = torch.softmax(x.detach()[len(q) - 1], 0).tolist()
            got = float(objective(x, y, index, epoch).detach())
            assert got == pytest.approx(_naive_soft_ce(x.detach(), q), abs=1e-6)
        objective.end_epoch()
        seen = now


@given(st.integers(1, 12), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_ps_kd_remembers_each_examples_softmax_in_training_set_order(
    n: int, batch: int, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    order = torch.randperm(n, generator=generator)
    objective = SelfDistillationObjective(constant(0.5))
    for b in range(0, n, batch):
        index = order[b : b + batch]
        objective(logits[index], torch.zeros(len(index), dtype=torch.long), index, 0)
    objective.end_epoch()
    expected = torch.softmax(logits, dim=1).float()  # row i: example i, whatever the order
    torch.testing.assert_close(objective.state_dict()["previous"], expected)


def test_ps_kd_needs_every_example_once_per_epoch() -> None:
    objective = SelfDistillationObjective(constant(0.5))
    x, y = _batch(2, 3)
    objective(x, y, torch.tensor([0, 1]), 0)
    objective(x, y, torch.tensor([1, 3]), 0)
    message = r"^`index` must visit each of the 4 training examples once per epoch for PS-KD, "
    with pytest.raises(ValueError, match=message + r"got repeats or gaps$"):
        objective.end_epoch()


def test_adafocal_objective_is_the_library_loss_and_its_update() -> None:
    x, y = _batch(20, 3)
    val_x, val_y = _batch(30, 3, seed=1)
    objective = make_method("adafocal", {"num_bins": 3, "lam": 2.0, "gamma_init": 0.5})
    ours, library = objective.objective(3), AdaFocalLoss(3, lam=2.0, gamma_init=0.5)
    for epoch in range(3):
        torch.testing.assert_close(ours(x, y, torch.arange(20), epoch), library(x, y))
        ours.end_epoch()
        ours.observe_validation(val_x.detach() * (epoch + 1), val_y)
        library.update(val_x.detach() * (epoch + 1), val_y)
    assert not torch.equal(library.gammas, torch.full((3,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(ours.state_dict()["gammas"], library.gammas, rtol=0, atol=0)


def _context(k: int, epochs: int = 5) -> RunContext:
    labels = torch.zeros(8, dtype=torch.long)
    return RunContext(k, labels, labels, seed=0, epochs=epochs)


@pytest.mark.parametrize("name", ["adafocal", "ps-kd"])
def test_stateful_objectives_round_trip_their_state(name: str) -> None:
    x, y = _batch(8, 4)
    first = make_method(name, {}).run_objective(_context(4))
    first(x, y, torch.arange(8), 0)
    first.end_epoch()
    first.observe_validation(*(t.detach() for t in _batch(16, 4, seed=2)))
    state = first.state_dict()
    assert state and all(isinstance(v, Tensor) for v in state.values())
    second = make_method(name, {}).run_objective(_context(4))
    second.load_state_dict(state)
    torch.testing.assert_close(second(x, y, torch.arange(8), 1), first(x, y, torch.arange(8), 1))


def test_ps_kd_ramps_over_the_whole_run_by_default_as_the_paper() -> None:
    objective = make_method("ps-kd", {"alpha": 0.8}).run_objective(_context(3, epochs=4))
    assert isinstance(objective, SelfDistillationObjective)
    ramp = linear(0.0, 0.8, 4)
    assert [objective.alpha(t) for t in range(6)] == [ramp(t) for t in range(6)]
    assert objective.alpha(2) == pytest.approx(0.4)
    fixed = make_method("ps-kd", {"alpha": 0.8, "ramp_epochs": 0}).objective(3)
    assert isinstance(fixed, SelfDistillationObjective) and fixed.alpha(0) == 0.8
    assert isinstance(make_method("adafocal", {}).objective(3), AdaFocalObjective)


@pytest.mark.parametrize("name", ["maxsup", "ps-kd"])
def test_a_ramp_over_the_run_needs_the_runs_epochs(name: str) -> None:
    method = make_method(name, {"ramp_epochs": -1})
    message = rf"^`{name}` with ramp_epochs = -1 ramps over the run's epochs: build it with "
    with pytest.raises(ValueError, match=message + "run_objective, got no epochs$"):
        method.objective(3)
    with pytest.raises(ValueError, match=message):
        method.run_objective(_context(3, epochs=0))
    maxsup = make_method("maxsup", {"ramp_epochs": -1}).run_objective(_context(3, epochs=2))
    x, y = _batch(4, 3)
    expected = losses.max_suppression_loss(x, y, alpha=0.2)  # the end of the ramp, at epoch 2
    torch.testing.assert_close(maxsup(x, y, torch.arange(4), 2), expected)


BAD = [
    ("maxsup", {"alpha": -0.1}, "`methods.maxsup.alpha` must be >= 0, got -0.1"),
    ("maxsup", {"alpha_end": -1.0}, "`methods.maxsup.alpha_end` must be >= 0, got -1.0"),
    ("maxsup", {"ramp_epochs": -2}, "`methods.maxsup.ramp_epochs` must be >= -1, got -2"),
    ("mbls", {"margin": -1.0}, "`methods.mbls.margin` must be >= 0, got -1.0"),
    ("mbls", {"alpha": -0.5}, "`methods.mbls.alpha` must be >= 0, got -0.5"),
    ("logitnorm", {"temperature": 0.0}, "`methods.logitnorm.temperature` must be > 0, got 0.0"),
    ("logit-penalty", {"beta": -0.1}, "`methods.logit-penalty.beta` must be >= 0, got -0.1"),
    ("focal", {"gamma": -1.0}, "`methods.focal.gamma` must be >= 0, got -1.0"),
    ("flsd53", {"threshold": 1.5}, "`methods.flsd53.threshold` must be in [0, 1], got 1.5"),
    ("adafocal", {"num_bins": 0}, "`methods.adafocal.num_bins` must be >= 1, got 0"),
    ("adafocal", {"lam": -1.0}, "`methods.adafocal.lam` must be >= 0, got -1.0"),
    ("adafocal", {"gamma_init": 25.0}, "`methods.adafocal.gamma_init` must be in [-2, 20], got 25.0"),
    ("ps-kd", {"alpha": 1.2}, "`methods.ps-kd.alpha` must be in [0, 1], got 1.2"),
    ("ps-kd", {"ramp_epochs": -3}, "`methods.ps-kd.ramp_epochs` must be >= -1, got -3"),
    ("zipf", {"smoothing": -0.1}, "`methods.zipf.smoothing` must be in [0, 1], got -0.1"),
    ("zipf", {"power": -1.0}, "`methods.zipf.power` must be >= 0, got -1.0"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "params", "message"), BAD, ids=[m for _, _, m in BAD])
def test_bad_parameters_say_what_is_wrong(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_method(name, params)
    assert str(error.value) == message


TINY = {
    "data": {"dataset": "digits", "train_subset": 300, "test_subset": 150, "val_fraction": 0.2},
    "model": {"hidden": [32]},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "nesterov": True},
    "noise": {"rates": [0.3]},
    "seeds": 1,
}
SETTINGS: dict[str, dict[str, Any]] = {
    "maxsup": {"ramp_epochs": -1},
    "ps-kd": {"alpha": 0.5},
    "adafocal": {"num_bins": 5},
}


def _tasks(methods: dict[str, dict[str, Any]]) -> list[Any]:
    from smoothlab.lab.plan.grid import expand_grid, run_key, run_seeds
    from smoothlab.lab.plan.loading import config_from_dict
    from smoothlab.lab.train.loop import RunTask

    runs = expand_grid(config_from_dict({**TINY, "methods": methods}))
    return [RunTask(run_key(r), r, *run_seeds(r), "cpu") for r in runs]


def test_every_member_trains_alone_and_stacked_to_the_same_numbers() -> None:
    pytest.importorskip("sklearn")
    from safetensors.torch import load as load_weights

    from smoothlab.lab.train.loop import execute
    from smoothlab.lab.train.stacked import execute_stacked, stack_key

    tasks = _tasks({name: SETTINGS.get(name, {}) for name in FAMILY})
    assert len({stack_key(t) for t in tasks}) == 1  # one stack: no method is routed away
    for task, stacked in zip(tasks, execute_stacked(tasks), strict=True):
        alone = execute(task)
        assert alone.error == stacked.error == "", task.run.method
        assert math.isfinite(alone.metrics["accuracy"]) and len(alone.curves["lr"]) == 3
        wa, wb = load_weights(alone.weights), load_weights(stacked.weights)
        for name in wa:
            torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-4)
        for name in alone.curves:
            assert alone.curves[name] == pytest.approx(stacked.curves[name], abs=1e-4), name


@pytest.mark.parametrize("name", ["adafocal", "ps-kd"])
def test_a_resumed_stateful_run_equals_an_uninterrupted_one(name: str, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from smoothlab.lab.train.loop import execute

    (whole_task,) = _tasks({name: SETTINGS[name]})
    whole = execute(whole_task)
    folder = tmp_path / "checkpoint"
    task = dataclasses.replace(whole_task, checkpoint_dir=str(folder), checkpoint_every=1)

    def killed_after_two_epochs(key: str, done: int, total: int) -> None:
        if done == 2:
            raise RuntimeError("killed")

    assert "RuntimeError: killed" in execute(task, killed_after_two_epochs).error
    state = torch.load(folder / "state.pt", weights_only=True)["objective"]
    if name == "adafocal":  # the loop handed it the validation logits after each epoch
        assert not torch.equal(state["gammas"], torch.ones(5, dtype=torch.float64))
    else:  # last epoch's predictions of all 240 training examples
        assert state["previous"].shape == (240, 10)
    epochs_run: list[int] = []
    resumed = execute(task, lambda key, done, total: epochs_run.append(done))
    assert epochs_run == [3]  # only the last epoch was trained again
    assert resumed.weights == whole.weights
    assert resumed.curves == whole.curves
    del resumed.metrics["wall_time"], whole.metrics["wall_time"]
    assert resumed.metrics == whole.metrics


CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smoothing_family_fashion_mnist.toml"


def test_the_family_config_compares_every_member_and_each_run_trains_reduced() -> None:
    pytest.importorskip("sklearn")
    from smoothlab.lab.plan.grid import plan_runs, run_key, run_seeds
    from smoothlab.lab.plan.loading import load_config
    from smoothlab.lab.train.loop import RunTask, execute

    config = load_config(CONFIG)
    assert set(FAMILY) | {"ce", "ls", "nls", "relax", "cp"} == set(config.methods)
    assert config.noise.rates == (0.0, 0.4) and config.seeds == 3 and config.train.switch_epoch
    assert len(plan_runs(config)) == 14 * 2 * 3
    tiny = ["data.dataset=digits", "data.train_subset=200", "data.test_subset=30", "seeds=1",
            "noise.rates=[0.4]", "train.epochs=2", "train.switch_epoch=1"]  # fmt: skip
    for run in plan_runs(load_config(CONFIG, tiny)):
        result = execute(RunTask(run_key(run), run, *run_seeds(run), "cpu"))
        assert result.error == "", result.error
        assert math.isfinite(result.metrics["nll"]) and len(result.curves["train_loss"]) == 2


def test_adafocal_says_when_the_validation_split_cannot_calibrate_it() -> None:
    x, y = _batch(8, 3)
    objective = make_method("adafocal", {"num_bins": 4}).objective(3)
    objective(x, y, torch.arange(8), 0)
    objective.end_epoch()
    message = r"^`data.val_fraction` must be > 0 for adafocal \(its gammas follow the "
    with pytest.raises(ValueError, match=message + r"validation split's calibration\), got no "):
        objective(x, y, torch.arange(8), 1)  # the loop had no validation logits to give
    small = r"^`data.val_fraction` must leave >= num_bins = 4 validation examples for adafocal, "
    with pytest.raises(ValueError, match=small + "got 3$"):
        objective.observe_validation(x[:3].detach(), y[:3])
