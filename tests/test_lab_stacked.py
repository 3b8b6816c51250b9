"""Stacked training: a stacked run is the run trained alone, up to floating-point rounding."""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from safetensors.torch import load as load_weights

from smoothlab.lab.plan.grid import RunConfig, expand_grid, run_key, run_seeds
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.plan.models import build_model
from smoothlab.lab.run.executors import chunks
from smoothlab.lab.run.store import reason
from smoothlab.lab.train import stacked, stacked_state
from smoothlab.lab.train.loop import RunResult, RunTask, execute
from smoothlab.lab.train.stackable import MAX_STACK_PARAMETERS
from smoothlab.lab.train.stacked import execute_stacked, stack_key, stackable_model

TINY = {
    "data": {"dataset": "digits", "train_subset": 300, "test_subset": 200, "val_fraction": 0.2},
    "model": {"hidden": [32]},
    "train": {"epochs": 3, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "nesterov": True},
    "noise": {"rates": [0.3]},
    "seeds": 1,
}


def _runs(methods: dict[str, dict[str, object]], **changes: object) -> list[RunConfig]:
    raw = {**TINY, "methods": methods, **changes}
    return expand_grid(config_from_dict(raw))


def _task(run: RunConfig, **fields: object) -> RunTask:
    task = RunTask(run_key(run), run, *run_seeds(run), "cpu")
    return dataclasses.replace(task, **fields)  # type: ignore[arg-type]


def _close(a: RunResult, b: RunResult, tolerance: float = 1e-4) -> None:
    assert a.error == b.error == ""
    wa, wb = load_weights(a.weights), load_weights(b.weights)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=tolerance, atol=tolerance)
    for name in a.curves:
        assert a.curves[name] == pytest.approx(b.curves[name], rel=tolerance, abs=tolerance), name
    for name in a.metrics:
        if name != "wall_time":
            assert a.metrics[name] == pytest.approx(b.metrics[name], rel=1e-3, abs=1e-3), name


def test_stacked_runs_equal_the_runs_trained_alone() -> None:
    # every objective path: vectorised (ce, ls, nls after a switch) and per run (relax, cp, ols)
    methods = {
        "ce": {},
        "ls": {"smoothing": 0.2},
        "nls": {"smoothing": -0.4},
        "relax": {"alpha": 0.1},
        "cp": {"beta": 0.3},
        "ols": {},
    }
    runs = _runs(methods, train={**TINY["train"], "switch_epoch": 1})
    tasks = [_task(run) for run in runs]
    assert len({stack_key(t) for t in tasks}) == 1
    together = execute_stacked(tasks)
    for task, result in zip(tasks, together, strict=True):
        assert result.key == task.key
        _close(execute(task), result)


def test_tasks_of_several_stack_keys_are_split_by_key(capsys: pytest.CaptureFixture[str]) -> None:
    # an SGD stack, an IVON stack and a run that trains alone (adamw), interleaved
    sgd = _runs({"ce": {}, "ls": {"smoothing": 0.2}})
    ivon = _runs({"ivon": {"lr": 0.1}}, seeds=2)
    alone = _runs({"ce": {}}, train={**TINY["train"], "optimizer": "adamw", "lr": 0.01})
    tasks = [_task(r) for r in (sgd[0], ivon[0], alone[0], sgd[1], ivon[1])]
    assert len({stack_key(t) for t in tasks}) == 3 and stack_key(tasks[2]) is None
    mixed = execute_stacked(tasks)
    assert "failed" not in capsys.readouterr().err  # no stack of mixed kinds to fall back from
    assert [r.key for r in mixed] == [t.key for t in tasks]
    for group in ([0, 3], [1, 4]):
        for i, result in zip(group, execute_stacked([tasks[i] for i in group]), strict=True):
            _close(result, mixed[i], tolerance=1e-6)
    _close(execute(tasks[2]), mixed[2], tolerance=1e-6)


def test_runs_with_their_own_learning_rates_stack() -> None:
    slow = _runs({"ce": {}}, train={**TINY["train"], "lr": 0.01, "lr_schedule": "cosine"})
    fast = _runs({"ls": {"smoothing": 0.1}}, train={**TINY["train"], "lr": 0.2})
    tasks = [_task(r) for r in slow + fast]
    assert len({stack_key(t) for t in tasks}) == 1
    for task, result in zip(tasks, execute_stacked(tasks), strict=True):
        _close(execute(task), result)


def test_models_other_than_mlps_stack_through_vmap() -> None:
    # the MLP runs as batched products; a CNN (no buffers, no dropout) goes through vmap
    cnn = _runs({"ce": {}, "ls": {"smoothing": 0.3}}, model={"name": "cnn", "hidden": [16]},
                train={**TINY["train"], "epochs": 2})  # fmt: skip
    tasks = [_task(r) for r in cnn]
    assert len({stack_key(t) for t in tasks}) == 1
    for task, result in zip(tasks, execute_stacked(tasks), strict=True):
        _close(execute(task), result)


def test_only_plain_mlps_take_the_batched_product_path() -> None:
    mlp = build_model("mlp", (8,), 3, (4, 5))
    assert stacked_state.mlp_layers(mlp) == (
        "flatten",
        "linear",
        "relu",
        "linear",
        "relu",
        "linear",
    )
    assert stacked_state.mlp_layers(build_model("cnn", (1, 8, 8), 3, (4,))) is None
    assert stacked_state.mlp_layers(nn.Sequential(nn.Linear(2, 3), nn.Tanh())) is None
    assert stacked_state.mlp_layers(nn.Sequential(nn.Flatten(0), nn.Linear(2, 3))) is None


def test_mean_accuracy_over_seeds_agrees_with_the_pool() -> None:
    runs = _runs({"ls": {"smoothing": 0.1}}, seeds=4, noise={"rates": [0.3]})
    tasks = [_task(r) for r in runs]
    alone = [execute(t).metrics["accuracy"] for t in tasks]
    together = [r.metrics["accuracy"] for r in execute_stacked(tasks)]
    spread = statistics.stdev(alone) / math.sqrt(len(alone))
    assert abs(statistics.mean(alone) - statistics.mean(together)) <= 5 * spread + 1e-9


def test_a_resumed_stack_equals_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    runs = _runs({"ce": {}, "ols": {}}, noise={"rates": [0.0, 0.3]})
    tasks = [
        _task(r, checkpoint_dir=str(tmp_path / str(i)), checkpoint_every=1)
        for i, r in enumerate(runs)
    ]
    whole = execute_stacked([dataclasses.replace(t, checkpoint_dir="") for t in tasks])
    assert not list(here.iterdir())  # no checkpoint folder: no checkpoint anywhere (once: cwd)

    def killed_after_two_epochs(key: str, done: int, total: int) -> None:
        if done == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match=r"^killed$"):  # progress's exception, unchanged
        execute_stacked(tasks, killed_after_two_epochs)
    assert sorted(p.name for p in (tmp_path / "0").iterdir()) == [
        "best-1.safetensors",
        "model-1.safetensors",
        "state.pt",
    ]
    epochs: list[int] = []
    resumed = execute_stacked(tasks, lambda key, done, total: epochs.append(done))
    assert epochs == [3] * len(tasks)  # only the last epoch was trained again
    for a, b in zip(whole, resumed, strict=True):
        _close(a, b, tolerance=1e-6)
    # a stacked checkpoint is a solo checkpoint: the solo loop resumes it (after epoch 2) too
    _close(execute(tasks[0]), whole[0])


def test_a_diverging_run_fails_alone_and_says_when() -> None:
    calm = _runs({"ce": {}}, noise={"rates": [0.0]})
    wild = _runs({"nls": {"smoothing": -8.0}}, noise={"rates": [0.0]},
                 train={**TINY["train"], "lr": 1e4, "momentum": 0.9})  # fmt: skip
    tasks = [_task(r) for r in calm + wild]
    ok, failed = execute_stacked(tasks)
    assert ok.error == "" and math.isfinite(ok.metrics["accuracy"])
    alone = execute(tasks[1]).error.splitlines()
    # the last line of the run trained alone: what the driver prints
    assert failed.error.splitlines() == alone[-1:]
    assert re.fullmatch(r"diverged at epoch \d+ \(non-finite loss\)", reason(failed.error))
    _close(execute(tasks[0]), ok)


def test_what_does_not_stack() -> None:
    assert stackable_model(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)))
    assert not stackable_model(nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1)))
    assert not stackable_model(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)))
    # the size at which stacking stops paying (measured per canned config)
    assert stackable_model(nn.Linear(MAX_STACK_PARAMETERS - 1, 1))
    assert not stackable_model(nn.Linear(MAX_STACK_PARAMETERS, 1))  # weights and a bias
    assert stack_key(_task(_runs({"sam": {}})[0])) is None
    teacher = _runs({"ls-teacher": {}})[0]
    assert stack_key(_task(teacher)) is None
    adamw = _runs({"ce": {}}, train={**TINY["train"], "optimizer": "adamw"})
    assert stack_key(_task(adamw[0])) is None
    longer = _runs({"ce": {}}, train={**TINY["train"], "epochs": 4})
    assert stack_key(_task(longer[0])) != stack_key(_task(_runs({"ce": {}})[0]))


def test_models_that_cannot_stack_train_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stacked, "stackable_model", lambda model: False)
    task = _task(_runs({"ls": {}})[0])
    (result,) = execute_stacked([task])
    alone = execute(task)
    assert result.weights == alone.weights  # the solo loop itself ran


def test_chunks_split_groups_over_workers() -> None:
    tasks = [_task(r) for r in _runs({"ce": {}, "ls": {}, "ivon": {}}, seeds=3)]
    # the SGD runs, then the IVON runs (a stack of their own); groups under MIN_CHUNK runs stay
    # whole while every process of the pool has a chunk
    assert [len(c) for c in chunks(tasks, 2)] == [6, 3]
    assert [len(c) for c in chunks(tasks, 3)] == [3, 3, 3]
    assert [len(c) for c in chunks(tasks, 5)] == [2, 2, 2, 2, 1]
    assert [len(c) for c in chunks(tasks[:2], 4)] == [1, 1]  # one run per chunk at most
    assert sorted(t.key for c in chunks(tasks, 2) for t in c) == sorted(t.key for t in tasks)
    assert [len(c) for c in chunks(tasks, 1)] == [6, 3]
    sam = [_task(r) for r in _runs({"sam": {}}, seeds=2)]
    assert [len(c) for c in chunks(tasks + sam, 1)] == [6, 3, 1, 1]


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (build_model("mlp", (6,), 3, (5, 4)), (6,)),  # flatten, linear, relu, ..., linear
        (build_model("mlp", (2, 3), 4, (5,)), (2, 3)),  # flattened images
        (nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2, bias=False)), (6,)),
        (nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Flatten(), nn.Linear(10, 2)), (2, 3)),
    ],
)
def test_the_feature_major_mlp_is_each_runs_own_model(model: nn.Module, shape: tuple[int, ...]) -> None:  # fmt: skip
    # float64: the batched products against each run's own nn.Sequential, values and gradients
    runs, batch = 3, 7
    gen = torch.Generator().manual_seed(0)
    names = [name for name, _ in model.named_parameters()]
    params = {
        name: torch.randn(runs, *p.shape, generator=gen, dtype=torch.float64).requires_grad_()
        for name, p in model.named_parameters()
    }
    x = torch.randn(runs, batch, *shape, generator=gen, dtype=torch.float64)
    layers = stacked_state.mlp_layers(model)
    assert layers is not None
    logits = stacked_state.mlp_forward(layers, params, x)
    assert logits.shape == (runs, batch, model(x[0].float()).shape[-1])
    assert logits.stride(1) == 1  # a transposed view of (R, K, B): feature-major
    weights = torch.randn(logits.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((logits * weights).sum(), [params[n] for n in names])
    for r in range(runs):
        own = {name: params[name][r].detach().clone().requires_grad_() for name in names}
        alone = torch.func.functional_call(model.double(), own, (x[r],))
        torch.testing.assert_close(logits[r], alone, rtol=1e-12, atol=1e-12)
        expected = torch.autograd.grad((alone * weights[r]).sum(), [own[n] for n in names])
        for name, got, want in zip(names, grads, expected, strict=True):
            torch.testing.assert_close(got[r], want, rtol=1e-12, atol=1e-12, msg=name)


def test_a_stack_that_fails_as_a_whole_trains_its_runs_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = [_task(r) for r in _runs({"ce": {}, "ls": {"smoothing": 0.2}})]

    def broken(*args: object) -> list[RunResult]:
        raise RuntimeError("vmap: an operation that cannot batch\nmore detail")

    monkeypatch.setattr(stacked, "_train", broken)
    results = execute_stacked(tasks)
    for task, result in zip(tasks, results, strict=True):
        alone = execute(task)
        assert result.key == task.key and result.error == alone.error == ""
        assert result.metrics.keys() == alone.metrics.keys()
        assert {k: v for k, v in result.metrics.items() if k != "wall_time"} == {
            k: v for k, v in alone.metrics.items() if k != "wall_time"
        }
    assert capsys.readouterr().err == (
        "a stack of 2 runs failed (RuntimeError: vmap: an operation that cannot batch); "
        "training them alone\n"
    )


def test_an_exception_of_progress_leaves_the_stack_unchanged() -> None:
    # the executor abandons a batch by raising in progress: that is no failed stack to retry
    class Gone(Exception):
        pass

    def leave(key: str, done: int, total: int) -> None:
        if done == 2:
            raise Gone

    with pytest.raises(Gone):
        execute_stacked([_task(r) for r in _runs({"ce": {}, "ls": {"smoothing": 0.2}})], leave)


def test_a_process_training_stacked_sgd_and_ivon_runs_skips_dynamo() -> None:
    # building a torch.optim optimizer imports torch._dynamo (1 s): a stacked SGD run steps
    # none of its own, and IVON calls add_param_group past torch's _disable_dynamo wrapper,
    # so a process that trains only such stacks (the stacked demo) never imports it
    code = """
import sys
from smoothlab.lab.plan.grid import expand_grid, run_key, run_seeds
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.train.loop import RunTask
from smoothlab.lab.train.stacked import execute_stacked
raw = {**TINY, "methods": {"ce": {}, "ls": {"smoothing": 0.1}, "ivon": {"lr": 0.1}}}
runs = expand_grid(config_from_dict(raw))
results = execute_stacked([RunTask(run_key(r), r, *run_seeds(r), "cpu") for r in runs])
assert [r.error for r in results] == ["", "", ""], results
print("torch._dynamo" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", f"TINY = {TINY!r}\n{code}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False\n"


def test_a_trainers_optimizer_is_built_at_first_use() -> None:
    (run,) = _runs({"ce": {}})
    trainer = stacked._Trainer(_task(run), stacked.prepare_data(run, 0), torch.device("cpu"))
    assert trainer.built_optimizer is None
    optimizer = trainer.optimizer
    assert isinstance(optimizer, torch.optim.SGD)
    assert trainer.built_optimizer is optimizer is trainer.optimizer
    assert optimizer.param_groups[0]["params"][0] is next(trainer.model.parameters())
