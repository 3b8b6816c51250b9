"""The ``smoothlab`` command: demo, run, report, list, show-config, download, failures.

Bad configs and paths end with one line on stderr and exit code 2; failed runs with exit code 1.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from smoothlab.lab.plan.loading import load_config
from smoothlab.lab.plan.schema import Config, ConfigError, config_to_dict
from smoothlab.lab.run.executors import EXECUTORS
from smoothlab.lab.run.lifeline import exit_now

__all__ = ["console", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smoothlab",
        description="Compare label-smoothing methods under label noise: accuracy and calibration.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_run_options(sub: argparse.ArgumentParser, out: str) -> None:
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set train.epochs=5",
        )
        sub.add_argument(
            "--executor",
            choices=tuple(EXECUTORS),
            default="auto",
            help="auto (default): stacked when every run of a batch stacks, else local",
        )
        sub.add_argument(
            "--workers",
            type=int,
            default=None,
            help="parallel runs (default: local: cores; stacked: the idle ones)",
        )
        sub.add_argument("--address", default=None, help="address of an existing Ray cluster")
        sub.add_argument(
            "--num-gpus",
            type=float,
            default=None,
            help="ray: GPUs per run, a fraction packs runs on one GPU (default 0)",
        )
        sub.add_argument(
            "--max-retries",
            type=int,
            default=None,
            help="ray: reruns of a run whose worker or node died, from its checkpoint (default 3)",
        )
        sub.add_argument(
            "--stack-memory",
            type=int,
            default=None,
            help="stacked: MiB one stack may take (default: half the available memory)",
        )
        sub.add_argument("--out", type=Path, default=None, help=f"results folder ({out})")
        sub.add_argument("--no-report", action="store_true", help="skip writing the report")
        sub.add_argument(
            "--wait", action="store_true", help="wait for another run holding the folder"
        )

    demo = commands.add_parser("demo", help="run the embedded demo (digits, 3 noise rates)")
    add_run_options(demo, "results/demo")
    run = commands.add_parser("run", help="run a config's grid (finished runs are skipped)")
    run.add_argument("config", type=Path, help="an experiment's TOML file, e.g. configs/*.toml")
    add_run_options(run, "results/<config name>")
    report = commands.add_parser(
        "report", help="write CSV, figures (PNG, SVG) and HTML for a results folder"
    )
    report.add_argument("folder", type=Path, help="a results folder (run's --out)")
    report.add_argument("--out", type=Path, default=None, help="report folder (FOLDER/report)")
    commands.add_parser("list", help="methods, datasets, models, noise kinds and calibrators")
    download = commands.add_parser("download", help="fetch a dataset's files (verified)")
    download.add_argument("dataset", help="a dataset name, as `smoothlab list` shows")
    download.add_argument(
        "--root",
        type=Path,
        default=None,
        help="data folder (default: $SMOOTHLAB_DATA, else ~/.cache/smoothlab)",
    )
    failures = commands.add_parser("failures", help="full tracebacks of a folder's failed runs")
    failures.add_argument("folder", type=Path, help="a results folder (run's --out)")
    show = commands.add_parser("show-config", help="print a config resolved, with defaults")
    show.add_argument("config", type=Path, help="an experiment's TOML file")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return parser


def _run(config: Config, args: argparse.Namespace) -> int:
    from smoothlab.lab.report.html import write_report
    from smoothlab.lab.report.labels import short_labels
    from smoothlab.lab.report.order import RunOrder
    from smoothlab.lab.report.summary import print_table, summarize
    from smoothlab.lab.run.executors import AutoExecutor, make_executor
    from smoothlab.lab.run.lock import folder_lock
    from smoothlab.lab.run.runner import run_experiment
    from smoothlab.lab.run.store import ResultsStore

    out = args.out or Path("results") / config.name
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"`--workers` must be >= 1, got {args.workers}")
    ray = _ray_options(args)
    start = time.perf_counter()
    with folder_lock(out, wait=args.wait):  # before any worker starts: one runner per folder
        executor = make_executor(
            args.executor, args.workers, args.address, **ray, **_stack_options(args)
        )
        try:
            summary = run_experiment(config, out, executor)
        finally:
            executor.close()
        store = ResultsStore(out)
        try:
            rows = short_labels(list(store.runs(set(summary.keys))))
        finally:
            store.close()
        order = RunOrder.from_configs([config_to_dict(config)])
        title = f"{config.name}: test metrics over seeds"
        print_table(summarize(rows, order), sys.stdout, title=title)
        if not args.no_report:
            print(f"report: {write_report(out)}")
    # which executor --executor auto chose: stacked, local, or one per phase
    chosen = executor.describe() if isinstance(executor, AutoExecutor) else ""
    how = f" ({args.executor}: {chosen})" if chosen else ""
    print(
        f"{summary.finished} runs trained, {summary.skipped} already done, "
        f"{len(summary.failed)} failed, {time.perf_counter() - start:.1f} s{how}; "
        f"results in {out}"
    )
    for failure in summary.failed:
        print(f"failed: {failure.where()}: {failure.reason()}", file=sys.stderr)
    if summary.failed:
        print(f"full tracebacks: smoothlab failures {out}", file=sys.stderr)
    return 1 if summary.failed else 0


def _ray_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--num-gpus`` and ``--max-retries``, checked; they belong to ``--executor ray``."""
    given = {"num_gpus": args.num_gpus, "max_retries": args.max_retries}
    given = {name: value for name, value in given.items() if value is not None}
    for name in given:
        flag = "--" + name.replace("_", "-")
        if args.executor != "ray":
            raise ConfigError(f"`{flag}` needs --executor ray, got --executor {args.executor}")
        if not given[name] >= 0:  # NaN too
            raise ConfigError(f"`{flag}` must be >= 0, got {given[name]}")
    return given


def _stack_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--stack-memory``, checked; it belongs to ``--executor stacked`` (or ``auto``)."""
    if args.stack_memory is None:
        return {}
    if args.executor not in ("stacked", "auto"):
        raise ConfigError(
            f"`--stack-memory` needs --executor stacked or auto, got --executor {args.executor}"
        )
    if args.stack_memory < 1:
        raise ConfigError(f"`--stack-memory` must be >= 1 (MiB), got {args.stack_memory}")
    return {"stack_memory": args.stack_memory}


def _list() -> None:
    from smoothlab.datasets import get_dataset_info, list_datasets
    from smoothlab.lab.plan.calibrators import CALIBRATORS
    from smoothlab.lab.plan.human_noise import HUMAN_NOISE
    from smoothlab.lab.plan.inputs import dataset_inputs
    from smoothlab.lab.plan.methods import METHODS, method_fields
    from smoothlab.lab.plan.models import MODELS
    from smoothlab.noise import NOISE_KINDS

    print("methods:")
    width = max(map(len, METHODS))  # each section's names in a column as wide as its longest
    for name, method in METHODS.items():
        params = ", ".join(method_fields(name)) or "-"
        print(f"  {name:<{width}} {method.description}  [{params}]")
        if method.overrides:
            keys = ", ".join(method.overrides)
            print(f"  {'':<{width}} its {keys} replace [train]'s (\"\" or -1: keep [train]'s)")
    print("datasets:")
    width = max(map(len, list_datasets()))
    for name in list_datasets():
        print(f"  {name:<{width}} {get_dataset_info(name).description}")
        print(f"  {'':<{width}} inputs: {dataset_inputs(name).describe()}")
    print("models:")
    width = max(len(spec.name) for spec in MODELS.values())
    for spec in MODELS.values():
        print(f"  {spec.name:<{width}} {spec.description} (inputs: {', '.join(spec.inputs)})")
    print("noise kinds:")
    width = max(len(name) for name in [k.name for k in NOISE_KINDS] + list(HUMAN_NOISE))
    for kind in NOISE_KINDS:
        print(f"  {kind.name:<{width}} {kind.description}")
    for human in HUMAN_NOISE.values():
        print(f"  {human.name:<{width}} human labels: {human.description}; rates = [0]")
    print("calibrators ([calibration] methods; fitted on the validation split):")
    width = max(len(row.name) for row in CALIBRATORS)
    for row in CALIBRATORS:
        options = f", options {', '.join(row.options)}" if row.options else ""
        print(f"  {row.name:<{width}} {row.title}, metrics suffixed {row.suffix} "
              f"({row.paper}{options})")  # fmt: skip


def _show(config: Config) -> None:
    """The resolved config; every method parameter filled in, inherited [train] keys resolved."""
    import json

    from smoothlab.lab.plan.methods import resolved_parameters

    raw = config_to_dict(config)
    raw["methods"] = {
        name: resolved_parameters(name, sweep, config.train)
        for name, sweep in config.methods.items()
    }
    print(json.dumps(raw, indent=2))


def _download(name: str, root: Path | None) -> None:
    from smoothlab.datasets import get_dataset_info, list_datasets, load_dataset
    from smoothlab.datasets.paths import find_file

    if name not in list_datasets():
        raise ConfigError(f"`dataset` must be one of {', '.join(list_datasets())}, got {name!r}")
    dataset = load_dataset(name, root=root, download=True)  # fetches, verifies, then reads
    for file in get_dataset_info(name).files:
        print(f"{name}: {find_file(file, root)}")
    print(f"{name}: {len(dataset.y_train)} training and {len(dataset.y_test)} test examples")


def _failures(folder: Path) -> int:
    """Print every failed run of ``folder`` with its full traceback; exit code 1 if any."""
    from smoothlab.lab.run.store import ResultsStore

    store = ResultsStore(folder, readonly=True)
    try:
        failures = store.failures()
    finally:
        store.close()
    for failure in failures:
        print(f"=== {failure.where()} (run {failure.key[:12]})\n{failure.error.rstrip()}\n")
    print(f"{len(failures)} failed runs in {folder}")
    return 1 if failures else 0


def _dispatch(args: argparse.Namespace) -> int:
    from smoothlab.lab.demo import demo_config

    if args.command == "demo":
        return _run(demo_config(tuple(args.set)), args)
    if args.command == "run":
        return _run(load_config(args.config, args.set), args)
    if args.command == "report":
        from smoothlab.lab.report.html import write_report

        print(f"report: {write_report(args.folder, args.out)}")
    elif args.command == "list":
        _list()
    elif args.command == "download":
        _download(args.dataset, args.root)
    elif args.command == "failures":
        return _failures(args.folder)
    elif args.command == "show-config":
        _show(load_config(args.config, args.set))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smoothlab`` console script; returns the exit code.

    A bad config, argument or path is one line on stderr and exit code 2, before anything runs:

    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     main(["demo", "--workers", "0"]), main(["run", "no-such.toml"])
    (2, 2)
    >>> print(err.getvalue(), end="")
    smoothlab: error: `--workers` must be >= 1, got 0
    smoothlab: error: config file not found: no-such.toml
    """
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ConfigError, OSError, sqlite3.DatabaseError, RuntimeError) as error:
        print(f"smoothlab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "smoothlab: interrupted; finished runs are stored, run again to resume", file=sys.stderr
        )
        return 130


def console() -> NoReturn:
    """The ``smoothlab`` console script (and ``python -m smoothlab.lab``): :func:`main` on the
    command line, then an exit without the interpreter's teardown
    (:func:`~smoothlab.lab.run.lifeline.exit_now`: a second off every command)."""
    exit_now(main())


if __name__ == "__main__":
    console()
