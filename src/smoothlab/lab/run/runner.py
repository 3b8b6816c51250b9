"""The runner: expand the grid, skip finished runs, hand the rest to an executor, store results.

Runs that smooth towards a teacher (``ls-teacher`` with ``teacher = "ce"``) depend on the ``ce``
run of the same data, noise and replicate; that run joins the grid if the config lacks it, and
the dependent runs go in a second batch, once their teachers' weights are stored.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from smoothlab.lab.plan.data_files import check_data_files
from smoothlab.lab.plan.grid import (
    RunConfig,
    config_experiment_id,
    experiment_id,
    plan_runs,
    run_key,
    run_seeds,
    teacher_file,
    teacher_of,
)
from smoothlab.lab.plan.schema import Config, config_to_dict
from smoothlab.lab.run.executors import Executor, describe_executor
from smoothlab.lab.run.progress import Progress, make_progress
from smoothlab.lab.run.provenance import collect_provenance
from smoothlab.lab.run.store import Failure, ResultsStore, RunRow, reason
from smoothlab.lab.train.loop import RunResult, RunTask, select_device

__all__ = ["RunSummary", "plan_runs", "run_experiment"]


@dataclass
class RunSummary:
    """What a call of :func:`run_experiment` did."""

    keys: list[str]
    skipped: int = 0
    finished: int = 0
    failed: list[Failure] = field(default_factory=list)  # full tracebacks, also in the store


def _task(run: RunConfig, config: Config, store: ResultsStore) -> RunTask:
    key = run_key(run)
    teacher_weights = None
    if run.variant.needs_teacher:
        teacher = teacher_of(run)
        path = store.weights_path(run_key(teacher)) if teacher else teacher_file(run)
        teacher_weights = path.read_bytes() if path.is_file() else None
    every = config.checkpoint_every
    folder = str(store.checkpoint_dir(key)) if every > 0 else ""
    return RunTask(key, run, *run_seeds(run), config.device, teacher_weights, folder, every)


def _line(run: RunConfig, result: RunResult) -> str:
    where = f"{run.label()} {run.noise_kind} {run.noise_rate:g} seed {run.replicate}"
    if result.error:
        return f"FAILED {where}: {reason(result.error)}"
    m = result.metrics
    return f"{where}: accuracy {m['accuracy']:.3f}, ECE {m['ece']:.3f} ({result.wall_time:.1f} s)"


def _store(store: ResultsStore, config: Config, run: RunConfig, result: RunResult) -> None:
    row = RunRow(
        key=result.key,
        experiment=config.name,
        experiment_id=experiment_id(run.to_dict()),
        method=run.method,
        label=run.label(),
        noise_kind=run.noise_kind,
        noise_rate=run.noise_rate,
        replicate=run.replicate,
        config=run.to_dict(),
        metrics=result.metrics,
        curves=result.curves,
        extras=result.extras,
        wall_time=result.wall_time,
    )
    store.add_run(row, result.weights)
    shutil.rmtree(store.checkpoint_dir(result.key), ignore_errors=True)


def _drop_stale_checkpoints(store: ResultsStore, done: set[str]) -> None:
    """Remove checkpoints of stored runs: a kill between storing a run and removing its
    checkpoint (in :func:`_store`) leaves one behind, and nothing would ever resume it."""
    folder = store.checkpoint_dir("x").parent
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name in done:
                shutil.rmtree(path, ignore_errors=True)


def _failure(run: RunConfig, result: RunResult) -> Failure:
    ident = experiment_id(run.to_dict())
    where = (run.label(), run.noise_kind, run.noise_rate, run.replicate)
    return Failure(result.key, ident, *where, result.error)


def _run_phase(
    runs: Sequence[RunConfig],
    context: tuple[Config, ResultsStore, Executor, Progress],
    summary: RunSummary,
) -> None:
    config, store, executor, progress = context
    by_key = {run_key(r): r for r in runs}
    tasks = [_task(r, config, store) for r in runs]
    for result in executor.run_batch(tasks, progress.epoch):
        run = by_key[result.key]
        if result.error:
            failure = _failure(run, result)
            store.add_failure(failure)
            summary.failed.append(failure)
        else:
            _store(store, config, run, result)
            summary.finished += 1
        progress.finished(result.key, _line(run, result))


def run_experiment(
    config: Config, out: str | Path, executor: Executor, *, progress: Progress | None = None
) -> RunSummary:
    """Train every run of ``config`` not yet in the store at ``out``; return what happened."""
    runs = plan_runs(config)
    check_data_files(config.data.dataset, config.data.root)  # once, not in every worker
    store = ResultsStore(out)
    start = time.perf_counter()
    ident = config_experiment_id(config_to_dict(config))
    provenance = collect_provenance(str(select_device(config.device)))
    try:
        store.save_experiment(config.name, config_to_dict(config))
        done = store.finished_keys()
        _drop_stale_checkpoints(store, done)
        keys = [run_key(r) for r in runs]
        summary = RunSummary(keys=keys, skipped=sum(k in done for k in keys))
        todo = [r for r in runs if run_key(r) not in done]
        labels = {
            run_key(r): f"{r.label()} {r.noise_kind} {r.noise_rate:g} #{r.replicate}" for r in runs
        }
        bars = progress or make_progress(len(runs), summary.skipped, labels)
        try:
            first = [r for r in todo if not r.variant.needs_teacher]
            second = [r for r in todo if r.variant.needs_teacher]
            for phase in (first, second):
                if phase:
                    _run_phase(phase, (config, store, executor, bars), summary)
        finally:
            bars.close()
            provenance["wall_time"] = f"{time.perf_counter() - start:.1f} s"
            provenance["executor"] = describe_executor(executor)
            store.save_provenance(ident, provenance)
        return summary
    finally:
        store.close()
