"""The ``stacked`` executor's work plan and the driver's share of it.

:func:`chunks` cuts a batch into pieces of work: compatible runs (one :func:`stack_key`) in
stacks, the others alone. :func:`drive` is the driver process training chunks itself, in a
thread beside the pool's workers (:class:`~smoothlab.lab.run.executors.StackedExecutor`).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from smoothlab.lab.train.loop import ProgressFn, RunResult, RunTask, execute
from smoothlab.lab.train.stacked import execute_stacked, stack_key

__all__ = [
    "CHUNKS_PER_WORKER",
    "MAX_STACK",
    "MIN_CHUNK",
    "Chunk",
    "Done",
    "Stopped",
    "chunks",
    "drive",
    "parts",
    "stoppable",
    "train_chunk",
]

#: The most runs in one stack of the ``stacked`` executor: bounds a worker's memory (each run
#: holds its own copy of the data).
MAX_STACK = 256
#: With a pool, a group is cut into up to this many chunks per process (see :func:`parts`)
CHUNKS_PER_WORKER = 3
#: and no chunk smaller than this, unless a process would be left without one
MIN_CHUNK = 8

Chunk = tuple[list[RunTask], bool]  # runs, and whether they train stacked
#: What the driver thread and the pool's callbacks put for the main thread: where from
#: ("driver", "pool", or "ready": a new worker's empty warm-up chunk), and a finished chunk
#: (None: the driver has found no more work)
Done = tuple[str, Future[list[RunResult]] | None]


def chunks(tasks: Sequence[RunTask], workers: int) -> list[list[RunTask]]:
    """The ``stacked`` executor's work: compatible tasks in groups, each cut into near-equal
    chunks of at most :data:`MAX_STACK` (:func:`parts` of them); a task that does not stack is a
    chunk of its own (listed last).

    >>> from smoothlab.lab.demo import demo_config
    >>> from smoothlab.lab.plan.grid import plan_runs
    >>> tasks = [RunTask(str(i), run, 0, 0) for i, run in enumerate(plan_runs(demo_config()))]
    >>> [len(c) for c in chunks(tasks, 1)], [len(c) for c in chunks(tasks, 2)]
    ([30, 6], [10, 10, 10, 6])
    >>> [len(c) for c in chunks(tasks[:12], 2)], [len(c) for c in chunks(tasks[:12], 4)]
    ([6, 6], [3, 3, 3, 3])
    """
    found: dict[Any, list[RunTask]] = {}
    alone: list[list[RunTask]] = []
    for task in tasks:
        key = stack_key(task)
        if key is None:
            alone.append([task])
        else:
            found.setdefault(key, []).append(task)
    groups = list(found.values())
    counts = [parts(len(group), workers) for group in groups]
    # a pool's process left without a chunk: cut the group of the largest chunks once more
    while groups and sum(counts) + len(alone) < workers:
        i = max(range(len(groups)), key=lambda k: len(groups[k]) / counts[k])
        if counts[i] == len(groups[i]):
            break  # chunks of one run each: nothing left to cut
        counts[i] += 1
    out = []
    for group, count in zip(groups, counts, strict=True):
        size = -(-len(group) // count)
        out += [group[i : i + size] for i in range(0, len(group), size)]
    return out + alone


def parts(runs: int, workers: int) -> int:
    """How many chunks a group of ``runs`` compatible runs is cut into for ``workers``
    processes: one stack per :data:`MAX_STACK` runs in the driver alone; with a pool, up to
    :data:`CHUNKS_PER_WORKER` per process and none smaller than :data:`MIN_CHUNK` runs
    (:func:`chunks` cuts further where the whole batch would leave a process without a chunk).
    Workers start seconds after the driver and take the next chunk when free, so smaller chunks
    even out their finishing times; but a stack of fewer runs pays its per-step overhead over
    fewer of them, and each process that trains a kind of run pays that kind's start-up (an
    IVON run, a ``torch.optim`` optimizer, imports ``torch._dynamo``: 1 s).

    >>> parts(30, 1), parts(300, 1), parts(30, 2), parts(275, 2), parts(6, 2), parts(1, 4)
    (1, 2, 3, 6, 1, 1)
    """
    least = -(-runs // MAX_STACK)
    if workers == 1:
        return least
    wanted = min(CHUNKS_PER_WORKER * workers, max(1, runs // MIN_CHUNK))
    return max(least, min(runs, wanted))


def train_chunk(
    tasks: list[RunTask], stack: bool, progress: ProgressFn, max_bytes: int = 0
) -> list[RunResult]:
    """Train a chunk: compatible runs stacked (in stacks of at most ``max_bytes``, 0 = half
    the available memory), or each run alone."""
    for task in tasks:
        progress(task.key, 0, task.run.train.epochs)
    if stack:
        return execute_stacked(tasks, progress, max_bytes)
    return [execute(task, progress) for task in tasks]


class Stopped(Exception):
    """The batch was abandoned: the driver's main thread stopped waiting for results."""


def stoppable(progress: ProgressFn, stop: threading.Event) -> ProgressFn:
    """``progress`` that ends the driver's training at its next epoch once ``stop`` is set.

    >>> stop = threading.Event()
    >>> report = stoppable(lambda key, done, total: print(key, done, total), stop)
    >>> report("a", 1, 3)
    a 1 3
    >>> stop.set()
    >>> report("a", 2, 3)
    Traceback (most recent call last):
    ...
    smoothlab.lab.run.stacking.Stopped
    """

    def report(key: str, done: int, total: int) -> None:
        if stop.is_set():
            raise Stopped
        progress(key, done, total)

    return report


def drive(
    work: deque[Chunk],
    done: queue.Queue[Done],
    progress: ProgressFn,
    stop: threading.Event,
    max_bytes: int = 0,
) -> None:
    """The driver's share of a batch: pop chunks off ``work`` (the pool's submissions pop it
    too; ``popleft`` is atomic) and train them until none is left or ``stop`` is set (then at
    the next epoch: :class:`Stopped` ends that chunk, raised out of a stack, or failing each run
    trained alone), putting each result as a finished future on ``done``, then
    ``("driver", None)``. An exception (a progress callback's) travels in its future and ends
    the driver's share."""
    import torch

    threads = torch.get_num_threads()
    # one thread, as in a worker: the same numbers, and no spinning threads on a loaded machine
    # (a solo demo run took 40x the CPU time with two threads at load average 7)
    torch.set_num_threads(1)
    try:
        while work and not stop.is_set():
            try:
                chunk, stack = work.popleft()
            except IndexError:  # the pool took the last one
                break
            future: Future[list[RunResult]] = Future()
            try:
                report = stoppable(progress, stop)
                future.set_result(train_chunk(chunk, stack, report, max_bytes))
            except BaseException as error:  # re-raised in the main thread by result()
                future.set_exception(error)
                done.put(("driver", future))
                break
            done.put(("driver", future))
    finally:
        torch.set_num_threads(threads)
        done.put(("driver", None))
