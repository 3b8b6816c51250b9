"""The ``ray`` executor: runs on an existing Ray cluster or a local one (Ray imported lazily).

Workers push ``(key, done, total)`` epoch events into a Ray queue that the driver drains while it
waits, so it feeds the same progress display as the other executors
(:mod:`smoothlab.lab.run.executors`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any

from smoothlab.lab.run.lifeline import die_with
from smoothlab.lab.run.progress import ignore_progress
from smoothlab.lab.train.loop import ProgressFn, RunResult, RunTask, execute

__all__ = ["RayExecutor"]


class RayExecutor:
    """Runs on a Ray cluster: ``address`` of an existing one, or a local one of ``workers`` CPUs.

    Each run asks Ray for one CPU and ``num_gpus`` GPUs (a fraction such as 0.25 packs four small
    runs on one GPU; Ray sets ``CUDA_VISIBLE_DEVICES`` and the run's ``device = "auto"`` finds
    it). When a worker or its node dies, Ray runs the task again, up to ``max_retries`` times;
    with ``checkpoint_every`` the retry resumes from the run's last checkpoint (its folder must
    be on storage every node sees) instead of from epoch 0.
    """

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        num_gpus: float = 0.0,
        max_retries: int = 3,
    ) -> None:
        if num_gpus < 0:
            raise ValueError(f"`num_gpus` must be >= 0, got {num_gpus}")
        if max_retries < 0:
            raise ValueError(f"`max_retries` must be >= 0, got {max_retries}")
        try:
            import ray
        except ImportError:
            raise RuntimeError("the ray executor needs Ray: pip install 'smoothlab[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()  # close() leaves a caller's runtime running
        if self.started:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=workers or os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                )
        self.remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_retries=max_retries)(
            _execute_one_thread
        )
        self.messages: Any = None  # the epoch-event queue, an actor made on first use

    def _drain(self, progress: ProgressFn) -> None:
        count = self.messages.qsize()
        if count:
            for event in self.messages.get_nowait_batch(count):
                progress(*event)

    def run_batch(
        self, tasks: Sequence[RunTask], progress: ProgressFn | None = None
    ) -> Iterator[RunResult]:
        """Submit every task as a Ray task; relay epoch events; yield results as they complete."""
        from ray.util.queue import Queue

        if self.messages is None:
            self.messages = Queue(actor_options={"num_cpus": 0})
        report = progress or ignore_progress
        driver = (socket.gethostname(), os.getpid())
        pending = [self.remote.remote(task, self.messages, driver) for task in tasks]
        while pending:
            done, pending = self.ray.wait(pending, num_returns=1, timeout=0.2)
            self._drain(report)  # a worker's events are queued before its result is ready
            for ref in done:
                yield self.ray.get(ref)
        self._drain(report)

    def close(self) -> None:
        """Disconnect from (or stop) the Ray runtime, if this executor started it."""
        if self.started:
            self.ray.shutdown()


def _execute_one_thread(task: RunTask, messages: Any, driver: tuple[str, int]) -> RunResult:
    import torch

    torch.set_num_threads(1)
    if driver[0] == socket.gethostname():  # a remote cluster's raylet stops a dead driver's tasks
        die_with(driver[1])

    def report(key: str, done: int, total: int) -> None:
        messages.put((key, done, total))  # returns once the queue actor holds it

    report(task.key, 0, task.run.train.epochs)
    return execute(task, report)
