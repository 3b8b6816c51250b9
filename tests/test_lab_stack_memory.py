"""Stacks sized by memory: bytes per run, the split into stacks, the CLI's cap."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from safetensors.torch import load as load_weights

from smoothlab.lab import cli
from smoothlab.lab.plan.grid import expand_grid, run_key, run_seeds
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.run import stacking
from smoothlab.lab.run.executors import StackedExecutor, make_executor
from smoothlab.lab.train import stack_memory, stacked
from smoothlab.lab.train.data import prepare_data
from smoothlab.lab.train.loop import RunResult, RunTask, _Trainer
from smoothlab.lab.train.stack_memory import available_bytes, run_bytes, stack_budget

TINY = {
    "data": {"dataset": "digits", "train_subset": 200, "test_subset": 100, "val_fraction": 0.2},
    "model": {"hidden": [16, 8]},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.1, "momentum": 0.9},
    "noise": {"rates": [0.2]},
    "methods": {"ce": {}, "ls": {"smoothing": 0.1}},
    "seeds": 3,
}


def _tasks(methods: dict[str, dict[str, object]] | None = None) -> list[RunTask]:
    runs = expand_grid(config_from_dict(TINY if methods is None else {**TINY, "methods": methods}))
    return [RunTask(run_key(r), r, *run_seeds(r), "cpu") for r in runs]


def _trainer(task: RunTask) -> _Trainer:
    return _Trainer(task, prepare_data(task.run, task.data_seed), torch.device("cpu"))


def test_run_bytes_counts_data_thrice_parameters_six_times_activations_twice() -> None:
    trainer = _trainer(_tasks()[0])
    data = trainer.data
    held = 0
    for tensor in (data.x_train, data.y_train, data.y_train_clean, data.x_val, data.y_val,
                   data.x_test, data.y_test):  # fmt: skip
        held += tensor.numel() * tensor.element_size()
    features, classes = data.x_train[0].numel(), data.num_classes
    weights = features * 16 + 16 + 16 * 8 + 8 + 8 * classes + classes
    # flatten, linear, relu, linear, relu, linear: the outputs of one batch of 32, float32
    activations = 32 * (features + 16 + 16 + 8 + 8 + classes) * 4
    assert run_bytes(data, trainer.model, 32) == 3 * held + 6 * weights * 4 + 2 * activations
    # an optimizer's own per-run state (IVON's five buffers) adds parameter-sized copies
    assert (
        run_bytes(data, trainer.model, 32, 5) == run_bytes(data, trainer.model, 32) + 20 * weights
    )


def test_ivon_stacks_are_sized_with_ivon_state(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    original = stacked.run_bytes

    def spy(*args: object) -> int:
        seen.append(args[3] if len(args) > 3 else 0)  # type: ignore[arg-type]
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(stacked, "run_bytes", spy)
    stacked.execute_stacked(_tasks({"ivon": {}})[:1])
    stacked.execute_stacked(_tasks()[:1])
    assert seen == [5, 0]


def _close(a: RunResult, b: RunResult) -> None:
    assert a.key == b.key and a.error == b.error == ""
    wa, wb = load_weights(a.weights), load_weights(b.weights)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-5, atol=1e-6)
    assert a.curves["test_accuracy"] == b.curves["test_accuracy"]


def test_a_memory_budget_splits_the_runs_into_stacks(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = _tasks()  # six runs
    trainer = _trainer(tasks[0])
    per_run = run_bytes(trainer.data, trainer.model, 32)
    whole = stacked.execute_stacked(tasks, max_bytes=100 * per_run)
    sizes: list[int] = []
    train = stacked._train

    def spy(trainers: list[_Trainer], *args: object) -> list[RunResult]:
        sizes.append(len(trainers))
        return train(trainers, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(stacked, "_train", spy)
    split = stacked.execute_stacked(tasks, max_bytes=int(2.5 * per_run))
    assert sizes == [2, 2, 2]
    for a, b in zip(whole, split, strict=True):
        _close(a, b)
    sizes.clear()
    stacked.execute_stacked(tasks[:2], max_bytes=1)  # too small for one run: each alone
    assert sizes == [1, 1]


def test_a_stack_on_cuda_takes_at_most_half_the_free_device_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (800, 1000))
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert stack_budget(10**9, cuda) == 400 and stack_budget(300, cuda) == 300
    assert stack_budget(10**9, cpu) == 10**9  # the CPU: the given bytes
    monkeypatch.setattr(stack_memory, "available_bytes", lambda: 10**6)
    assert stack_budget(0, cpu) == 5 * 10**5 and stack_budget(0, cuda) == 400


def test_available_bytes_is_at_most_the_machine_memory() -> None:
    total = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    assert 0 < available_bytes() <= total


def test_the_executor_passes_its_stack_budget_to_each_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    budgets: list[int] = []

    def record(tasks: list[RunTask], progress: object, max_bytes: int) -> list[RunResult]:
        budgets.append(max_bytes)
        return [RunResult(t.key) for t in tasks]

    monkeypatch.setattr(stacking, "execute_stacked", record)
    tasks = _tasks()
    assert len(list(StackedExecutor(1, stack_memory=3).run_batch(tasks))) == len(tasks)
    assert budgets == [3 * 2**20]
    list(StackedExecutor(1).run_batch(tasks))  # default: half the available memory
    assert 0 < budgets[1] <= available_bytes() // 2 * 1.5


def test_stack_memory_messages(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^`stack_memory` must be >= 0, got -1$"):
        make_executor("stacked", stack_memory=-1)
    with pytest.raises(ValueError, match=r"^`stack_memory` must be 0 unless the executor is stacked or auto, got 8 with 'ray'$"):  # fmt: skip
        make_executor("ray", stack_memory=8)
    argv = ["demo", "--out", str(tmp_path), "--no-report"]
    with pytest.raises(cli.ConfigError, match=r"^`--stack-memory` needs --executor stacked or auto, got --executor local$"):  # fmt: skip
        cli._stack_options(cli._parser().parse_args([*argv, "--executor", "local", "--stack-memory", "64"]))  # fmt: skip
    auto = cli._parser().parse_args([*argv, "--stack-memory", "64"])  # the default executor
    assert auto.executor == "auto" and cli._stack_options(auto) == {"stack_memory": 64}
    bad = [*argv, "--executor", "stacked", "--stack-memory", "0"]
    with pytest.raises(cli.ConfigError, match=r"^`--stack-memory` must be >= 1 \(MiB\), got 0$"):
        cli._stack_options(cli._parser().parse_args(bad))
    good = [*argv, "--executor", "stacked", "--stack-memory", "64"]
    assert cli._stack_options(cli._parser().parse_args(good)) == {"stack_memory": 64}
