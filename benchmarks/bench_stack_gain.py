"""Where stacking pays: one epoch of a few compatible runs of each canned config, stacked
against one after another, in one process with one torch thread (CPU time, no start-up).

Run: ``SMOOTHLAB_DATA=../shared/datasets .venv/bin/python benchmarks/bench_stack_gain.py
[--runs 8] [--config PATH ...]`` (default: the demo and every ``configs/*.toml``). For each
stack group of a config (its first ``--runs`` runs of one ``stack_key``) it prints the model's
parameter count, the solo and stacked CPU time of epoch 0 and their ratio. The stack is built
directly, so models above ``MAX_STACK_PARAMETERS`` (which the executor trains alone) are timed
too: this is the measurement that sets that limit.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from smoothlab.lab.demo import demo_config
from smoothlab.lab.plan.grid import plan_runs
from smoothlab.lab.plan.loading import load_config
from smoothlab.lab.plan.schema import Config
from smoothlab.lab.train.data import prepare_data
from smoothlab.lab.train.loop import RunTask, _Trainer, select_device
from smoothlab.lab.train.stacked import _epoch, stack_key
from smoothlab.lab.train.stacked_ivon import IvonUpdate
from smoothlab.lab.train.stacked_sgd import SgdUpdate
from smoothlab.lab.train.stacked_state import Stack

ROOT = Path(__file__).resolve().parents[1]


def _trainers(tasks: Sequence[RunTask]) -> list[_Trainer]:
    return [_Trainer(t, prepare_data(t.run, t.data_seed), select_device(t.device)) for t in tasks]


def time_group(tasks: Sequence[RunTask]) -> tuple[int, float, float]:
    """Parameters of the group's model, CPU seconds of epoch 0 solo (all runs) and stacked."""
    solo = _trainers(tasks)
    start = time.process_time()
    for trainer in solo:
        trainer.epoch(0)
    alone = time.process_time() - start
    group = _trainers(tasks)
    update = IvonUpdate if group[0].kind.name == "ivon" else SgdUpdate
    stack = Stack(group, group[0].device, update)
    start = time.process_time()
    _epoch(stack, 0)
    stacked = time.process_time() - start
    return sum(p.numel() for p in group[0].model.parameters()), alone, stacked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="runs per stack group")
    parser.add_argument("--config", action="append", help="a config (default: all canned)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = args.config or sorted(str(p) for p in (ROOT / "configs").glob("*.toml"))
    configs: list[tuple[str, Config]] = [] if args.config else [("demo", demo_config())]
    configs += [(Path(p).stem, load_config(Path(p))) for p in paths]
    print(f"{'config':40s} {'kind':7s} {'runs':>4s} {'params':>9s} {'solo s':>8s} "
          f"{'stacked s':>9s} {'solo/stacked':>12s}")  # fmt: skip
    for name, config in configs:
        groups: dict[object, list[RunTask]] = {}
        for i, run in enumerate(plan_runs(config)):
            task = RunTask(str(i), run, 0, 0)
            key = stack_key(task)
            if key is not None:
                groups.setdefault(key, []).append(task)
        for group in groups.values():
            tasks = group[: args.runs]
            params, alone, stacked = time_group(tasks)
            kind = tasks[0].run.variant.optimizer
            print(f"{name:40s} {kind:7s} {len(tasks):4d} {params:9d} {alone:8.2f} "
                  f"{stacked:9.2f} {alone / stacked:12.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
