"""The Ray executor asks for GPUs per run and, when a worker dies, Ray's retry resumes the run
from its checkpoint: a SIGKILLed worker costs the epochs since the last checkpoint, not the run."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from smoothlab.lab.plan.grid import expand_grid, run_key, run_seeds
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.run.executors import RayExecutor
from smoothlab.lab.train.loop import RunTask, execute

psutil = pytest.importorskip("psutil")

EPOCHS = 8


def _task(folder: Path) -> RunTask:
    config = config_from_dict(
        {
            "seeds": 1,
            "data": {"dataset": "digits", "train_subset": 1200, "test_subset": 100},
            "model": {"name": "cnn", "hidden": [32]},
            "train": {"epochs": EPOCHS, "batch_size": 8, "lr": 0.01},
            "noise": {"rates": [0.0]},
            "methods": {"ce": {}},
        }
    )
    run = expand_grid(config)[0]
    return RunTask(run_key(run), run, *run_seeds(run), "cpu", None, str(folder), checkpoint_every=1)


def _kill_worker() -> int:
    """SIGKILL the Ray worker process running a run; its pid."""
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any("_execute_one_thread" in part for part in process.info["cmdline"] or ()):
            os.kill(process.info["pid"], signal.SIGKILL)
            return int(process.info["pid"])
    raise AssertionError("no Ray worker is running the task")


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    task = _task(tmp_path / "checkpoint")
    whole = execute(dataclasses.replace(task, checkpoint_dir="", checkpoint_every=0))
    executor = RayExecutor(workers=1, max_retries=1)
    events: list[tuple[int, int]] = []  # (epochs done, worker attempt)
    killed: list[int] = []

    def progress(key: str, done: int, total: int) -> None:
        events.append((done, len(killed)))
        if done == 2 and not killed:  # two epochs checkpointed: kill the worker mid-run
            killed.append(_kill_worker())

    try:
        started = time.perf_counter()
        results = list(executor.run_batch([task], progress))
        # a guard against a hang, not a timing test: a loaded 2-core machine took 144 s
        assert time.perf_counter() - started < 600
        # on the same runtime: a quarter of a GPU per run is what Ray is asked for
        options = RayExecutor(num_gpus=0.25, max_retries=2).remote._default_options
        assert options["num_gpus"] == 0.25 and options["max_retries"] == 2
    finally:
        executor.close()
    assert len(killed) == 1 and results[0].error == "", results[0].error
    # The retried attempt announces itself with 0 epochs done; events of the killed attempt
    # may still arrive after the kill (it can finish another epoch first), so look after that.
    restart = events.index((0, 1))
    resumed = [done for done, _ in events[restart + 1 :]]
    assert resumed and 1 not in resumed and 2 not in resumed, events  # from a checkpoint
    assert results[0].weights == whole.weights and results[0].curves == whole.curves


def test_ray_executor_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^`num_gpus` must be >= 0, got -1$"):
        RayExecutor(num_gpus=-1)
    with pytest.raises(ValueError, match=r"^`max_retries` must be >= 0, got -2$"):
        RayExecutor(max_retries=-2)
