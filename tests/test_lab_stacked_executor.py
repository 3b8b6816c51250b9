"""The stacked executor: the driver trains chunks itself beside a pool of ``workers - 1``."""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any, ClassVar

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from smoothlab.lab.plan.grid import RunConfig, expand_grid, run_key, run_seeds
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.run import stacking
from smoothlab.lab.run.executors import StackedExecutor
from smoothlab.lab.run.stacking import Done, chunks, drive, train_chunk
from smoothlab.lab.train.loop import RunResult, RunTask
from smoothlab.lab.train.stacked import stack_key

TINY = {
    "data": {"dataset": "digits", "train_subset": 200, "test_subset": 100, "val_fraction": 0.2},
    "model": {"hidden": [16]},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.1, "momentum": 0.9},
    "noise": {"rates": [0.2]},
    "seeds": 2,
}


def _tasks(methods: dict[str, dict[str, object]]) -> list[RunTask]:
    runs: list[RunConfig] = expand_grid(config_from_dict({**TINY, "methods": methods}))
    return [RunTask(run_key(r), r, *run_seeds(r), "cpu") for r in runs]


def _same(a: RunResult, b: RunResult) -> None:
    assert a.key == b.key and a.error == b.error == ""
    assert a.weights == b.weights  # one torch thread in the driver, as in a worker: same bits
    assert a.curves == b.curves


def _as_a_worker_would(tasks: list[RunTask]) -> dict[str, RunResult]:
    """Each chunk trained as a pool worker trains it: one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            r.key: r
            for chunk in chunks(tasks, 1)
            for r in train_chunk(chunk, stack_key(chunk[0]) is not None, lambda *e: None)
        }
    finally:
        torch.set_num_threads(threads)


def test_one_worker_trains_everything_in_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = _tasks({"ce": {}, "ls": {"smoothing": 0.1}, "ivon": {}})
    executor = StackedExecutor(1)
    events: list[tuple[str, int, int]] = []
    trained_here = threading.get_ident(), []

    def spy(chunk: list[RunTask], stack: bool, *args: Any) -> list[RunResult]:
        trained_here[1].append(threading.get_ident())
        return train_chunk(chunk, stack, *args)

    monkeypatch.setattr(stacking, "train_chunk", spy)
    results = {r.key: r for r in executor.run_batch(tasks, lambda *e: events.append(e))}
    executor.close()
    assert executor.local is None  # no pool, no worker process started
    assert sorted(results) == sorted(t.key for t in tasks)
    assert len(trained_here[1]) == 2  # the stack of four SGD runs, then the two IVON runs
    assert trained_here[0] not in trained_here[1]  # a thread: the main one stores results
    expected = _as_a_worker_would(tasks)
    for task in tasks:
        _same(expected[task.key], results[task.key])
        assert [e[1:] for e in events if e[0] == task.key] == [(0, 2), (1, 2), (2, 2)]


def test_the_driver_and_a_pool_worker_share_the_chunks() -> None:
    tasks = _tasks({"ce": {}, "ls": {"smoothing": 0.1}, "ivon": {}})
    alone = {r.key: r for r in StackedExecutor(1).run_batch(tasks)}
    executor = StackedExecutor(2)
    try:
        results = list(executor.run_batch(tasks))
        assert executor.workers == 2 and executor.local is not None
        assert executor.local.workers == 1
    finally:
        executor.close()
    assert sorted(r.key for r in results) == sorted(alone)  # each run once
    for result in results:
        _same(alone[result.key], result)


def test_a_progress_error_in_the_driver_reaches_the_caller() -> None:
    def broken(key: str, done: int, total: int) -> None:
        raise RuntimeError("display gone")

    executor = StackedExecutor(1)
    with pytest.raises(RuntimeError, match=r"^display gone$"):
        list(executor.run_batch(_tasks({"ce": {}}), broken))


def test_the_driver_stops_at_its_next_epoch_once_stop_is_set() -> None:
    first, second = ([t] for t in _tasks({"ce": {}}))  # two chunks of one run each
    stop = threading.Event()
    events: list[tuple[str, int, int]] = []

    def caller_leaves(key: str, done: int, total: int) -> None:
        events.append((key, done, total))
        stop.set()  # as the executor's run_batch does when its caller stops iterating

    done: queue.Queue[Done] = queue.Queue()
    work = deque([(first, False), (second, False)])
    drive(work, done, caller_leaves, stop)
    source, future = done.get_nowait()
    assert source == "driver" and future is not None
    (result,) = future.result()  # the run fails at its first epoch's end
    assert result.error.strip().endswith("smoothlab.lab.run.stacking.Stopped")
    assert done.get_nowait() == ("driver", None)  # and nothing more
    assert events == [(first[0].key, 0, 2)]
    assert list(work) == [(second, False)]  # the second chunk was never taken


def test_drive_says_when_it_has_no_more_work() -> None:
    done: queue.Queue[Done] = queue.Queue()
    drive(deque(), done, lambda *e: None, threading.Event())
    assert done.get_nowait() == ("driver", None)


def test_a_starting_worker_takes_work_only_once_it_is_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks = _tasks({"ce": {}, "ls": {"smoothing": 0.1}, "ivon": {}})
    executor = StackedExecutor(2)
    submitted: list[int] = []
    original = StackedExecutor._submit

    def spy(self: StackedExecutor, work: Any, done: Any, budget: int, warm_up: bool = False) -> int:
        submitted.append(-1 if warm_up else len(work))
        return original(self, work, done, budget, warm_up)

    monkeypatch.setattr(StackedExecutor, "_submit", spy)
    try:
        first = {r.key for r in executor.run_batch(tasks)}
        second = {r.key for r in executor.run_batch(tasks)}
    finally:
        executor.close()
    assert first == second == {t.key for t in tasks}
    assert submitted[0] == -1  # the first batch: an empty warm-up chunk, not a run
    assert -1 not in submitted[1:]  # later batches: the worker is up, chunks go at once


def test_the_pool_is_sized_by_the_cores_others_keep_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from smoothlab.lab.run import executors

    monkeypatch.setattr(executors.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(executors, "other_cores", lambda since, cpus: 1.6)
    busy = StackedExecutor()
    try:
        list(busy.run_batch(_tasks({"ce": {}})))
        assert busy.local is None and busy.workers == 1
    finally:
        busy.close()
    monkeypatch.setattr(executors, "other_cores", lambda since, cpus: 0.2)
    idle = StackedExecutor()
    try:
        list(idle.run_batch(_tasks({"ce": {}})))
        assert idle.local is not None and idle.workers == 2
    finally:
        idle.close()


def test_runs_on_cuda_train_in_the_driver_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from smoothlab.lab.run import executors

    # the executor sees CUDA (the runs themselves still train on this CPU)
    monkeypatch.setattr(executors, "select_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(executors, "other_cores", lambda since, cpus: 0.0)  # idle cores
    alone = StackedExecutor()
    try:
        assert len(list(alone.run_batch(_tasks({"ce": {}})))) == 2
        assert alone.local is None and alone.workers == 1  # no process per idle core
    finally:
        alone.close()
    asked = StackedExecutor(2)  # --workers still starts a pool
    try:
        assert len(list(asked.run_batch(_tasks({"ce": {}})))) == 2
        assert asked.local is not None and asked.workers == 2
    finally:
        asked.close()


class _FakePool:
    """LocalExecutor's interface, training in this process (no workers to start)."""

    made: ClassVar[list[int | None]] = []

    def __init__(self, workers: int | None = None) -> None:
        self.made.append(workers)

    def run_batch(self, tasks: list[RunTask], progress: Any = None) -> Any:
        return iter(train_chunk(list(tasks), False, lambda *e: None))

    def close(self) -> None:
        pass


def test_auto_stacks_a_batch_whose_runs_all_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    from smoothlab.lab.run import executors

    monkeypatch.setattr(executors, "LocalExecutor", _FakePool)
    _FakePool.made = []
    stacked_batches: list[int] = []
    original = StackedExecutor.run_batch

    def spy(self: StackedExecutor, tasks: Any, progress: Any = None) -> Any:
        stacked_batches.append(len(tasks))
        return original(self, tasks, progress)

    monkeypatch.setattr(StackedExecutor, "run_batch", spy)
    executor = executors.make_executor("auto", 1)
    try:
        small = _tasks({"ce": {}, "ivon": {}})
        assert {r.key for r in executor.run_batch(small)} == {t.key for t in small}
        assert stacked_batches == [len(small)] and _FakePool.made == []
        mixed = _tasks({"ce": {}, "sam": {}})  # SAM trains alone: the pool takes the batch
        assert {r.key for r in executor.run_batch(mixed)} == {t.key for t in mixed}
        assert stacked_batches == [len(small)] and _FakePool.made == [1]
        assert list(executor.run_batch([])) == [] and _FakePool.made == [1]
        assert executor.describe() == "stacked, then local"
    finally:
        executor.close()


def test_stacks_needs_every_run_to_stack_and_a_small_model() -> None:
    from smoothlab.lab.train.data import load_cached
    from smoothlab.lab.train.stackable import stacks

    assert stacks(_tasks({"ce": {}, "ls": {"smoothing": 0.1}, "ivon": {}}))
    assert load_cached.cache_info().currsize  # loaded to see their shape, kept for the driver
    assert not stacks(_tasks({"ce": {}, "sam": {}}))
    assert load_cached.cache_info().currsize == 0  # the pool trains them: the driver keeps none
    runs = expand_grid(
        config_from_dict({**TINY, "model": {"hidden": [1024]}, "methods": {"ce": {}}})
    )
    assert not stacks([RunTask(run_key(r), r, *run_seeds(r), "cpu") for r in runs])
    assert load_cached.cache_info().currsize == 0
    missing = {**TINY, "data": {**TINY["data"], "dataset": "twonorm", "root": "/nonexistent"}}
    runs = expand_grid(config_from_dict({**missing, "methods": {"ce": {}}}))
    assert not stacks([RunTask(run_key(r), r, *run_seeds(r), "cpu") for r in runs])
