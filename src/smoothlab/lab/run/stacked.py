"""The ``stacked`` executor: compatible runs train stacked in worker processes, the rest alone.

Runs are grouped by :func:`~smoothlab.lab.train.stacked.stack_key`; each group is cut into one
chunk per worker (at most :data:`MAX_STACK` runs) so that both cores work, and each chunk trains
as one stacked model (:func:`~smoothlab.lab.train.stacked.execute_stacked`) in the process pool
of :class:`~smoothlab.lab.run.executors.LocalExecutor`. Runs that do not stack (IVON, SAM,
teacher methods, batch-norm models) are submitted one by one, exactly as ``local`` does. Results,
progress events, checkpoints and the store are the same as with the other executors.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait

from smoothlab.lab.run.executors import LocalExecutor, _execute_in_worker, _ignore, _report
from smoothlab.lab.train.loop import ProgressFn, RunResult, RunTask
from smoothlab.lab.train.stacked import execute_stacked, stack_key

__all__ = ["MAX_STACK", "StackedExecutor", "chunks"]

#: The most runs in one stack: bounds a worker's memory (each run holds its own data).
MAX_STACK = 256


def chunks(tasks: Sequence[RunTask], workers: int) -> list[list[RunTask]]:
    """Compatible tasks in groups, each cut into ``workers`` near-equal chunks of at most
    :data:`MAX_STACK`; a task that does not stack is a chunk of its own (listed last).

    >>> from smoothlab.lab.demo import demo_config
    >>> from smoothlab.lab.plan.grid import plan_runs
    >>> tasks = [RunTask(str(i), run, 0, 0) for i, run in enumerate(plan_runs(demo_config()))]
    >>> [len(c) for c in chunks(tasks, 2)]
    [15, 15, 1, 1, 1, 1, 1, 1]
    """
    groups: dict[Hashable, list[RunTask]] = {}
    alone: list[list[RunTask]] = []
    for task in tasks:
        key = stack_key(task)
        if key is None:
            alone.append([task])
        else:
            groups.setdefault(key, []).append(task)
    out = []
    for group in groups.values():
        parts = max(min(workers, len(group)), math.ceil(len(group) / MAX_STACK))
        size = math.ceil(len(group) / parts)
        out += [group[i : i + size] for i in range(0, len(group), size)]
    return out + alone


def _execute_chunk_in_worker(tasks: list[RunTask]) -> list[RunResult]:
    if len(tasks) == 1 and stack_key(tasks[0]) is None:
        return [_execute_in_worker(tasks[0])]
    for task in tasks:
        _report(task.key, 0, task.run.train.epochs)
    return execute_stacked(tasks, _report)


class StackedExecutor(LocalExecutor):
    """A process pool of ``workers`` that trains compatible runs stacked (see the module)."""

    def run_batch(
        self, tasks: Sequence[RunTask], progress: ProgressFn | None = None
    ) -> Iterator[RunResult]:
        """Submit every chunk; yield each run's result as its chunk completes."""
        stop = threading.Event()
        relay = threading.Thread(target=self._relay, args=(progress or _ignore, stop), daemon=True)
        relay.start()
        try:
            pending: set[Future[list[RunResult]]] = {
                self.pool.submit(_execute_chunk_in_worker, chunk)
                for chunk in chunks(tasks, self.workers)
            }
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
        finally:
            stop.set()
            relay.join()
