"""The Ray executor on a local 2-CPU Ray: the same runs, keys and results as the local executor,
and the same per-run epoch progress reaching the driver's display."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from smoothlab.lab.plan.grid import expand_grid, run_key
from smoothlab.lab.plan.loading import config_from_dict
from smoothlab.lab.run.executors import RayExecutor
from smoothlab.lab.run.progress import PlainProgress
from smoothlab.lab.run.runner import run_experiment
from smoothlab.lab.run.store import ResultsStore


class _Recorder(PlainProgress):
    """Plain lines, plus every event in the order the driver saw it."""

    events: list[tuple[str, ...]]

    def epoch(self, key: str, done: int, total: int) -> None:
        self.events.append(("epoch", key, str(done), str(total)))

    def finished(self, key: str, line: str) -> None:
        self.events.append(("finished", key))
        super().finished(key, line)


@pytest.mark.slow
def test_ray_executor_trains_the_grid_and_only_the_driver_writes(tmp_path: Path) -> None:
    import io

    config = config_from_dict(
        {
            "seeds": 2,
            "data": {"dataset": "digits", "train_subset": 200, "test_subset": 100},
            "model": {"hidden": [8]},
            "train": {"epochs": 2, "batch_size": 100},
            "noise": {"rates": [0.2]},
            "methods": {"ce": {}},
        }
    )
    executor = RayExecutor(workers=2)
    log = io.StringIO()
    try:
        runs = expand_grid(config)
        progress = _Recorder(len(runs), 0, {}, log)
        progress.events = []
        summary = run_experiment(config, tmp_path, executor, progress=progress)
    finally:
        executor.close()
    assert summary.finished == 2 and not summary.failed
    store = ResultsStore(tmp_path)
    rows = list(store.runs())
    store.close()
    assert sorted(r.key for r in rows) == sorted(run_key(r) for r in runs)
    assert all(0 <= r.metrics["accuracy"] <= 1 for r in rows)
    assert "[2/2]" in log.getvalue()
    # Per-run epoch progress reaches the driver, in order, before the run's finished line.
    for key in (run_key(r) for r in runs):
        seen = [e for e in progress.events if e[1] == key]
        assert seen == [
            ("epoch", key, "0", "2"),
            ("epoch", key, "1", "2"),
            ("epoch", key, "2", "2"),
            ("finished", key),
        ]
