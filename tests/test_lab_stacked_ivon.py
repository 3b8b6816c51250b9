"""IVON runs trained stacked: each keeps its own optimizer, so a stacked run is the solo run."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from test_lab_stacked import TINY, _close, _runs, _task

from smoothlab.lab.plan.grid import RunConfig
from smoothlab.lab.run.store import reason
from smoothlab.lab.train import stacked_state
from smoothlab.lab.train.checkpoint import load_checkpoint
from smoothlab.lab.train.loop import execute
from smoothlab.lab.train.stacked import execute_stacked, stack_key
from smoothlab.optim import IVON

# runs that differ in everything a stack lets them differ in
VARIANTS = [
    {"lr": 0.2, "hess_init": 0.5},
    {"lr": 0.05, "hess_init": 2.0, "beta2": 0.999, "weight_decay": 1e-3, "ess": 500.0},
    {"lr": 0.1, "hess_init": 1.0, "lr_schedule": "cosine", "test_samples": 3},
]


def _ivon_runs(samples: int) -> list[RunConfig]:
    """Two seeds of one variant, then the others at other noise rates."""
    first, *others = ({"ivon": {**v, "train_samples": samples}} for v in VARIANTS)
    runs = _runs(first, seeds=2)
    for rate, method in zip((0.0, 0.1), others, strict=True):
        runs += _runs(method, noise={"rates": [rate]})
    return runs


def _ivon_state(folder: Path) -> list[dict[str, Any]]:
    """The IVON state (each parameter's step, Hessian and momentum) of a run's last
    checkpoint."""
    checkpoint = load_checkpoint(folder)
    assert checkpoint is not None
    state = checkpoint.state["optimizer"]["state"]
    return [state[i] for i in sorted(state)]


@pytest.mark.parametrize("samples", [1, 2])
def test_stacked_ivon_runs_equal_the_runs_trained_alone(samples: int, tmp_path: Path) -> None:
    runs = _ivon_runs(samples)
    tasks = [_task(r, checkpoint_every=1) for r in runs]
    assert len({stack_key(t) for t in tasks}) == 1
    solo = [dataclasses.replace(t, checkpoint_dir=str(tmp_path / f"solo{i}")) for i, t in
            enumerate(tasks)]  # fmt: skip
    stacked = [dataclasses.replace(t, checkpoint_dir=str(tmp_path / f"stack{i}")) for i, t in
               enumerate(tasks)]  # fmt: skip
    together = execute_stacked(stacked)
    for one, many, result in zip(solo, stacked, together, strict=True):
        alone = execute(one)
        _close(alone, result)
        assert alone.extras.keys() == result.extras.keys() == {"noisy_examples", *alone.extras}
        # the posterior after two epochs (the last checkpoint): mean, Hessian, momentum
        a, b = load_checkpoint(Path(one.checkpoint_dir)), load_checkpoint(Path(many.checkpoint_dir))
        assert a is not None and b is not None and a.epoch == b.epoch == 1
        for name in a.model:
            torch.testing.assert_close(a.model[name], b.model[name], rtol=1e-4, atol=1e-4)
        for sa, sb in zip(*(_ivon_state(Path(t.checkpoint_dir)) for t in (one, many)),
                          strict=True):  # fmt: skip
            assert sa["step"] == sb["step"] == 2 * math.ceil(240 / 64)
            for key in ("hess", "momentum"):
                torch.testing.assert_close(sa[key], sb[key], rtol=1e-4, atol=1e-5)


def test_ivon_runs_of_other_models_stack_through_vmap(monkeypatch: pytest.MonkeyPatch) -> None:
    # the samples go through vmap of functional_call as well as through the batched products
    runs = _runs({"ivon": {"lr": 0.1, "hess_init": 1.0, "train_samples": 2}}, seeds=2,
                 model={"name": "cnn", "hidden": [8]}, train={**TINY["train"], "epochs": 2})  # fmt: skip
    tasks = [_task(r) for r in runs]
    mapped: list[object] = []
    real = stacked_state.vmap
    monkeypatch.setattr(stacked_state, "vmap", lambda fn: mapped.append(fn) or real(fn))
    together = execute_stacked(tasks)
    assert mapped  # the stack took the vmap path
    for task, result in zip(tasks, together, strict=True):
        _close(execute(task), result)


def test_mean_accuracy_over_seeds_agrees_with_the_pool() -> None:
    runs = _runs({"ivon": {"lr": 0.2, "hess_init": 0.5}}, seeds=4)
    tasks = [_task(r) for r in runs]
    alone = [execute(t).metrics["accuracy"] for t in tasks]
    together = [r.metrics["accuracy"] for r in execute_stacked(tasks)]
    spread = statistics.stdev(alone) / math.sqrt(len(alone))
    assert abs(statistics.mean(alone) - statistics.mean(together)) <= 5 * spread + 1e-9


def test_a_resumed_ivon_stack_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    runs = _ivon_runs(2)[:3]
    tasks = [
        _task(r, checkpoint_dir=str(tmp_path / str(i)), checkpoint_every=1)
        for i, r in enumerate(runs)
    ]
    whole = execute_stacked([dataclasses.replace(t, checkpoint_dir="") for t in tasks])

    def killed_after_two_epochs(key: str, done: int, total: int) -> None:
        if done == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match=r"^killed$"):  # progress's exception, unchanged
        execute_stacked(tasks, killed_after_two_epochs)
    epochs: list[int] = []
    resumed = execute_stacked(tasks, lambda key, done, total: epochs.append(done))
    assert epochs == [3] * len(tasks)  # only the last epoch was trained again
    for a, b in zip(whole, resumed, strict=True):
        _close(a, b, tolerance=1e-6)
    # a stacked IVON checkpoint is a solo one: the solo loop resumes it too
    _close(execute(tasks[1]), whole[1])


@contextmanager
def _counted() -> Iterator[Counter[int]]:
    """Count the ``step`` and ``sampled_params`` calls of each IVON optimizer (by ``id``)."""
    calls: Counter[int] = Counter()
    step, sampled = IVON.step, IVON.sampled_params

    def counted_step(self: IVON, *args: Any) -> Any:
        calls[id(self)] += 1
        return step(self, *args)

    def counted_sampled(self: IVON, train: bool = False) -> Any:
        calls[id(self)] += 1000
        return sampled(self, train)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(IVON, "step", counted_step)
        patch.setattr(IVON, "sampled_params", counted_sampled)
        yield calls


def test_a_diverging_ivon_run_fails_alone_and_is_no_longer_stepped() -> None:
    calm = _runs({"ivon": {"lr": 0.2}}, noise={"rates": [0.0]})
    wild = _runs({"ivon": {"lr": 1e30}}, noise={"rates": [0.0]})
    tasks = [_task(r) for r in calm + wild]
    with _counted() as calls:
        ok, failed = execute_stacked(tasks)
    assert ok.error == "" and math.isfinite(ok.metrics["accuracy"])
    assert failed.error.splitlines() == execute(tasks[1]).error.splitlines()[-1:]
    assert reason(failed.error) == "diverged at epoch 1 (non-finite loss)"
    _close(execute(tasks[0]), ok)
    batches = math.ceil(240 / TINY["train"]["batch_size"])  # type: ignore[index]
    # one sample and one step per batch: three epochs for the calm run, one for the wild one
    # (the test-time predictions sample without training: test_samples = 0 draws none)
    assert sorted(calls.values()) == [1001 * batches, 1001 * batches * 3]


def test_ivon_runs_stack_apart_from_sgd_runs() -> None:
    ivon = _task(_runs({"ivon": {}})[0])
    other = _task(_runs({"ivon": {"lr": 0.01, "hess_init": 3.0, "beta2": 0.9, "ess": 9.0}})[0])
    assert stack_key(ivon) is not None and stack_key(ivon) == stack_key(other)
    assert stack_key(ivon) != stack_key(_task(_runs({"ce": {}})[0]))
    samples = _task(_runs({"ivon": {"train_samples": 2}})[0])
    beta1 = _task(_runs({"ivon": {}}, train={**TINY["train"], "momentum": 0.5})[0])
    assert stack_key(samples) != stack_key(ivon) != stack_key(beta1)
