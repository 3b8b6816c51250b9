"""Executors: where runs are trained. The driver hands over a batch, results come back as completed.

The interface is one method, ``run_batch(tasks, progress) -> Iterator[RunResult]``, yielding each
result as soon as it is ready, in any order; an executor receives the whole batch and may group
it as it likes.

- ``local``: a process pool (spawn context; one torch thread per worker; default workers = cores).
- ``stacked``: compatible runs (same data, model and SGD recipe; different seeds, noise, rates,
  methods) train as one stacked model per chunk (:mod:`smoothlab.lab.train.stacked`), the
  others alone; the driver process trains chunks itself beside ``workers - 1`` pool workers
  (default: one per core left idle by other processes, often none; :func:`pool_size`).
- ``ray``: an existing Ray cluster (``address``) or a local one; Ray is imported lazily. Workers
  push ``(key, done, total)`` epoch events into a Ray queue that the driver drains while it
  waits, so both executors feed the same progress display.

Workers never touch the results store; only the driver writes.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

from smoothlab.lab.run.cores import CpuSnapshot, other_cores
from smoothlab.lab.run.lifeline import die_with, spawn_context
from smoothlab.lab.run.progress import ignore_progress
from smoothlab.lab.run.ray_executor import RayExecutor
from smoothlab.lab.run.stacking import MAX_STACK, Chunk, Done, chunks, drive, train_chunk
from smoothlab.lab.train.loop import ProgressFn, RunResult, RunTask, select_device
from smoothlab.lab.train.stack_memory import available_bytes
from smoothlab.lab.train.stackable import stacks
from smoothlab.lab.train.stacked import stack_key

__all__ = [
    "EXECUTORS",
    "MAX_STACK",
    "AutoExecutor",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "StackedExecutor",
    "chunks",
    "describe_executor",
    "make_executor",
    "pool_size",
]


class Executor(Protocol):
    """Trains a batch of runs and yields their results as they complete."""

    def run_batch(
        self, tasks: Sequence[RunTask], progress: ProgressFn | None = None
    ) -> Iterator[RunResult]:
        """Train ``tasks`` (in any grouping and order); yield each result once, when ready."""
        ...

    def close(self) -> None:
        """Release workers and connections."""


_worker_queue: Any = None


def _init_worker(messages: Any, threads: int, driver: int) -> None:
    import torch

    global _worker_queue
    die_with(driver)  # a SIGKILLed driver must not leave workers training
    _worker_queue = messages
    torch.set_num_threads(threads)


def _report(key: str, done: int, total: int) -> None:
    _worker_queue.put((key, done, total))


def _execute_in_worker(tasks: list[RunTask], stack: bool, max_bytes: int = 0) -> list[RunResult]:
    return train_chunk(tasks, stack, _report, max_bytes)


class LocalExecutor:
    """A pool of ``workers`` processes on this machine, started once and reused across batches."""

    def __init__(self, workers: int | None = None, threads_per_worker: int = 1) -> None:
        self.workers = workers or os.cpu_count() or 1
        context = spawn_context()  # workers that end without the interpreter's teardown
        self.messages = context.Queue()
        self.pool = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.messages, threads_per_worker, os.getpid()),
        )

    def _relay(self, progress: ProgressFn, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                progress(*self.messages.get(timeout=0.1))
            except queue.Empty:
                continue

    def run_batch(
        self, tasks: Sequence[RunTask], progress: ProgressFn | None = None
    ) -> Iterator[RunResult]:
        """Submit every run; yield each result as it completes."""
        stop = threading.Event()
        report = progress or ignore_progress
        relay = threading.Thread(target=self._relay, args=(report, stop), daemon=True)
        relay.start()
        try:
            pending: set[Future[list[RunResult]]] = {
                self.pool.submit(_execute_in_worker, [task], False) for task in tasks
            }
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
        finally:
            stop.set()
            relay.join()

    def close(self) -> None:
        """Stop the workers (queued tasks are cancelled)."""
        self.pool.shutdown(wait=True, cancel_futures=True)


class StackedExecutor:
    """Compatible runs trained stacked (one model along a run dimension,
    :mod:`smoothlab.lab.train.stacked`) in chunks cut by :func:`chunks`; IVON runs stack apart
    from SGD runs, each with its own optimizer; runs that do not stack (SAM, AdamW, teacher
    methods, batch-norm models) train alone, as under ``local``.

    The driver process is one of the ``workers``: it trains chunks itself (in a thread, with one
    torch thread, as a worker would) beside a pool of ``workers - 1`` processes (started with
    the first batch), each chunk going to whichever is free next. Without ``workers`` the pool
    has one process per core that other processes leave idle (:func:`pool_size`), measured
    over the driver's start-up (:mod:`~smoothlab.lab.run.cores`; the load average lags by a
    minute). A new worker pays Python's, torch's and the lab's imports before its first run
    (2-3 s of CPU time on an idle machine, 8 s on a loaded one), so it first gets an empty
    chunk and takes real chunks once that returns; with a pool, groups are cut into a few
    chunks per process (:func:`~smoothlab.lab.run.stacking.parts`) for whoever is free.

    Runs on a CUDA device train in the driver alone unless ``workers`` is given: one process
    fills the GPU with stacks sized by its free memory
    (:func:`~smoothlab.lab.train.stack_memory.stack_budget`), where a process per idle core
    would each hold a CUDA context and cut the stacks into smaller chunks contending for one
    device (GPU timings: not yet measured).
    """

    def __init__(self, workers: int | None = None, stack_memory: int = 0) -> None:
        self.requested, self.stack_memory = workers, stack_memory
        self.local: LocalExecutor | None = None  # the pool, once a batch needs one
        self.workers = 1  # the driver and the pool's processes
        self.since = CpuSnapshot()  # the idle cores are measured from here to the first batch

    def run_batch(
        self, tasks: Sequence[RunTask], progress: ProgressFn | None = None
    ) -> Iterator[RunResult]:
        """Train the chunks in the driver and the pool; yield results as chunks complete."""
        starting = self.local is None and self.workers == 1
        if starting:
            cpus = os.cpu_count() or 1
            if self.requested is None and _on_cuda(tasks):
                size = 0  # the driver alone feeds the GPU its large stacks (see the class)
            else:
                busy = 0.0 if self.requested else self._busy(cpus)
                size = pool_size(self.requested, cpus, busy)
            self.local = LocalExecutor(size) if size else None
            self.workers = 1 + size
        budget = _stack_budget(self.stack_memory, self.workers)
        work = deque((c, stack_key(c[0]) is not None) for c in chunks(tasks, self.workers))
        done: queue.Queue[Done] = queue.Queue()
        stop = threading.Event()
        report = progress or ignore_progress
        threads = [threading.Thread(target=drive, args=(work, done, report, stop, budget))]
        if self.local is not None:
            threads.append(threading.Thread(target=self.local._relay, args=(report, stop)))
        for thread in threads:
            thread.daemon = True
            thread.start()
        try:
            # A new worker first imports torch and the lab (seconds): it gets an empty chunk and
            # takes real work once that returns, so no chunk waits for a worker still starting
            # while the driver is free. Warm-ups are not waited for.
            pool = range(self.workers - 1)
            pending = 1 + sum(self._submit(work, done, budget, starting) for _ in pool)
            while pending:  # the driver counts once, until its None
                source, future = done.get()
                if source == "ready":
                    pending += self._submit(work, done, budget)
                    continue
                pending -= 1
                if future is not None:
                    pending += self._submit(work, done, budget) if source == "pool" else 1
                    yield from future.result()
        finally:
            stop.set()
            for thread in threads:
                thread.join()  # the driver's at its next epoch

    def _submit(
        self, work: deque[Chunk], done: queue.Queue[Done], budget: int, warm_up: bool = False
    ) -> int:
        """Hand the next chunk (with ``warm_up``, an empty one) to the pool; 1 if a chunk went."""
        if self.local is None:
            return 0
        try:
            chunk, stack = ([], False) if warm_up else work.popleft()  # atomic: the driver pops
        except IndexError:
            return 0
        future = self.local.pool.submit(_execute_in_worker, chunk, stack, budget)
        source = "ready" if warm_up else "pool"
        future.add_done_callback(lambda f: done.put((source, f)))
        return 0 if warm_up else 1

    def _busy(self, cpus: int) -> float:
        """Cores other processes kept busy since the executor was made or last measured (the
        driver's start-up: at least :data:`~smoothlab.lab.run.cores.MIN_WINDOW` seconds)."""
        busy = other_cores(self.since, cpus)
        self.since = CpuSnapshot()  # a batch that starts no pool measures again at the next
        return busy

    def close(self) -> None:
        """Stop the pool's workers, if any were started."""
        if self.local is not None:
            self.local.close()


def describe_executor(executor: Executor) -> str:
    """How an executor trained: its ``--executor`` name, and for ``auto`` what it chose (kept
    in each experiment's provenance: stacked runs equal solo ones up to rounding only).

    >>> describe_executor(StackedExecutor(1))
    'stacked'
    >>> auto = AutoExecutor(1)
    >>> describe_executor(auto)
    'auto'
    >>> auto.chosen.append("stacked")
    >>> describe_executor(auto)
    'auto (stacked)'
    """
    if isinstance(executor, AutoExecutor):
        chosen = executor.describe()
        return f"auto ({chosen})" if chosen else "auto"
    names = {LocalExecutor: "local", StackedExecutor: "stacked", RayExecutor: "ray"}
    return names.get(type(executor), type(executor).__name__)


def _on_cuda(tasks: Sequence[RunTask]) -> bool:
    """Whether any task trains on a CUDA device (``device = "auto"`` finds one if present)."""
    return any(select_device(device).type == "cuda" for device in {t.device for t in tasks})


def _stack_budget(mib: int, processes: int) -> int:
    """Bytes one stack may take: ``mib`` MiB when given, else half the memory available now,
    shared among the driver and the pool's processes, which train a stack each at once."""
    return mib * 2**20 if mib else available_bytes() // (2 * processes)


def pool_size(workers: int | None, cpus: int, busy: float) -> int:
    """The stacked executor's pool processes beside the driver: ``workers - 1`` when given,
    else one per core that neither the driver nor other processes (``busy`` cores, measured by
    :func:`~smoothlab.lab.run.cores.other_cores`) keep busy. On a loaded machine a worker
    only adds its start-up: the demo took half the CPU and wall time in the driver alone (load
    average 7-11).

    >>> pool_size(None, 2, 0.1), pool_size(None, 2, 0.7), pool_size(None, 16, 3.2)
    (1, 0, 12)
    >>> pool_size(1, 2, 0.0), pool_size(4, 2, 9.0)
    (0, 3)
    """
    if workers is not None:
        return workers - 1
    return max(0, math.floor(cpus - 1 - busy + 0.5))


class AutoExecutor:
    """The default: a batch whose runs all stack (:func:`~smoothlab.lab.train.stackable.stacks`:
    small models, the SGD or IVON recipes) goes to the ``stacked`` executor, any other batch to
    the process pool (``local``), each made on first use and kept for later batches. Stacking
    paid on every canned config whose runs all stack, and models large enough to keep a core
    busy gain nothing from it (``benchmarks/RESULTS.md``)."""

    def __init__(self, workers: int | None = None, stack_memory: int = 0) -> None:
        self.requested = workers
        self.stacked = StackedExecutor(workers, stack_memory)  # measures idle cores from here
        self.local: LocalExecutor | None = None
        self.chosen: list[str] = []  # per batch: "stacked" or "local"

    def run_batch(
        self, tasks: Sequence[RunTask], progress: ProgressFn | None = None
    ) -> Iterator[RunResult]:
        """Train the batch with the executor that suits it; yield results as they complete."""
        if not tasks:
            return iter(())
        if stacks(tasks):
            self.chosen.append("stacked")
            return self.stacked.run_batch(tasks, progress)
        self.chosen.append("local")
        if self.local is None:
            self.local = LocalExecutor(self.requested)
        return self.local.run_batch(tasks, progress)

    def describe(self) -> str:
        """Which executors trained the batches so far, in order ("" before any).

        >>> executor = AutoExecutor(1)
        >>> executor.chosen += ["stacked", "local", "local"]
        >>> executor.describe()
        'stacked, then local'
        """
        return ", then ".join(dict.fromkeys(self.chosen))

    def close(self) -> None:
        """Stop whichever pools were started."""
        self.stacked.close()
        if self.local is not None:
            self.local.close()


# name -> build(workers, address, num_gpus, max_retries): the CLI's --executor choices and
# make_executor read this table; only Ray places runs on GPUs of a cluster and retries them
EXECUTORS: dict[str, Callable[[int | None, str | None, float, int, int], Executor]] = {
    "auto": lambda workers, address, gpus, retries, memory: AutoExecutor(workers, memory),
    "local": lambda workers, address, gpus, retries, memory: LocalExecutor(workers),
    "stacked": lambda workers, address, gpus, retries, memory: StackedExecutor(workers, memory),
    "ray": lambda workers, address, gpus, retries, memory: RayExecutor(
        workers, address, gpus, retries
    ),
}


def make_executor(
    name: str,
    workers: int | None = None,
    address: str | None = None,
    *,
    num_gpus: float = 0.0,
    max_retries: int = 3,
    stack_memory: int = 0,
) -> Executor:
    """Build the executor ``name``, a key of :data:`EXECUTORS`; ``num_gpus`` (per run, a
    fraction packs several runs on a GPU) and ``max_retries`` are the ``ray`` executor's,
    ``stack_memory`` (MiB one stack may take, 0 = sized from the available memory) the
    ``stacked`` one's.

    >>> make_executor("slurm")
    Traceback (most recent call last):
    ...
    ValueError: `executor` must be one of auto, local, stacked, ray, got 'slurm'
    >>> make_executor("local", num_gpus=0.5)
    Traceback (most recent call last):
    ...
    ValueError: `num_gpus` must be 0 unless the executor is ray, got 0.5 with 'local'
    >>> make_executor("ray", stack_memory=512)
    Traceback (most recent call last):
    ...
    ValueError: `stack_memory` must be 0 unless the executor is stacked or auto, got 512 with 'ray'
    """
    if name not in EXECUTORS:
        raise ValueError(f"`executor` must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name != "ray" and num_gpus != 0.0:
        raise ValueError(
            f"`num_gpus` must be 0 unless the executor is ray, got {num_gpus} with {name!r}"
        )
    if name != "ray" and max_retries != 3:
        raise ValueError(
            f"`max_retries` must be 3 (the default) unless the executor is ray, "
            f"got {max_retries} with {name!r}"
        )
    if stack_memory < 0:
        raise ValueError(f"`stack_memory` must be >= 0, got {stack_memory}")
    if name not in ("stacked", "auto") and stack_memory:
        raise ValueError(
            f"`stack_memory` must be 0 unless the executor is stacked or auto, "
            f"got {stack_memory} with {name!r}"
        )
    return EXECUTORS[name](workers, address, num_gpus, max_retries, stack_memory)
