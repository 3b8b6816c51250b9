"""The demo's IVON runs trained one after another against one stack: CPU time in one process.

Run: ``.venv/bin/python benchmarks/bench_stacked_ivon.py`` (``--repeats N``; ``--set key=value``
changes the demo config, e.g. ``--set methods.ivon.train_samples=2``).

One torch thread (as in a worker of the ``stacked`` executor), one untimed warm-up round (imports,
first calls, the native kernels), then ``--repeats`` rounds that each time the runs solo
(:func:`smoothlab.lab.train.loop.execute`, one after another) and stacked
(:func:`smoothlab.lab.train.stacked.execute_stacked`) in alternating order, with
``time.process_time`` (CPU time: less disturbed than wall time by other processes on a loaded
machine). Data preparation and the final evaluation are included in both, as in a real run. It
prints the medians and the ratio solo / stacked, and the largest difference in test accuracy
between a run trained solo and stacked (rounding only: they are the same runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from smoothlab.lab.demo import demo_config
from smoothlab.lab.plan.grid import plan_runs, run_key, run_seeds
from smoothlab.lab.train.loop import RunResult, RunTask, execute
from smoothlab.lab.train.stacked import execute_stacked


def ivon_tasks(overrides: tuple[str, ...]) -> list[RunTask]:
    """The demo's IVON runs, as the executor would hand them out (CPU, no checkpoints)."""
    runs = [r for r in plan_runs(demo_config(overrides)) if r.variant.optimizer == "ivon"]
    return [RunTask(run_key(r), r, *run_seeds(r), "cpu") for r in runs]


def timed(
    train: Callable[[list[RunTask]], list[RunResult]], tasks: list[RunTask]
) -> tuple[float, list[RunResult]]:
    start = time.process_time()
    results = train(tasks)
    return time.process_time() - start, results


def solo(tasks: list[RunTask]) -> list[RunResult]:
    return [execute(task) for task in tasks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = ivon_tasks(tuple(args.overrides))
    solo(tasks[:1]), execute_stacked(tasks[:2])  # warm-up, untimed
    times: dict[str, list[float]] = {"solo": [], "stacked": []}
    gap = 0.0
    for round_ in range(args.repeats):
        order = [("solo", solo), ("stacked", execute_stacked)]
        outcome = {}
        for name, train in order if round_ % 2 == 0 else order[::-1]:
            seconds, outcome[name] = timed(train, tasks)
            times[name].append(seconds)
        for a, b in zip(outcome["solo"], outcome["stacked"], strict=True):
            assert a.error == b.error == "", (a.error, b.error)
            gap = max(gap, abs(a.metrics["accuracy"] - b.metrics["accuracy"]))
    one, many = (statistics.median(times[k]) for k in ("solo", "stacked"))
    print(f"{len(tasks)} IVON runs, CPU seconds over {args.repeats} rounds: solo "
          f"{[round(t, 2) for t in times['solo']]}, stacked "
          f"{[round(t, 2) for t in times['stacked']]}")  # fmt: skip
    print(f"median solo {one:.2f} s, stacked {many:.2f} s, solo / stacked {one / many:.2f}x; "
          f"largest test-accuracy gap solo vs stacked {gap:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
