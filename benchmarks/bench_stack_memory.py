"""A stack's estimated memory against its measured peak: ``run_bytes`` x runs vs maxrss growth.

Run: ``.venv/bin/python benchmarks/bench_stack_memory.py RUNS [--set key=value ...]``, e.g.
``30 --set 'model.hidden=[1024,1024]'`` or, with ``SMOOTHLAB_DATA`` set, ``12 --set
data.dataset=fashion-mnist --set data.train_subset=6000 --set data.test_subset=2000``. The
runs are the demo's stackable ones (its config with the overrides, one epoch). One run is
trained stacked first, so that the dataset cache, the imports and the allocator's first arenas
are in the baseline; the peak resident size's growth over the stack of ``RUNS`` is then the
stack's own. Models above ``MAX_STACK_PARAMETERS``, which the executor trains alone, are
stacked here all the same: the estimate is what ``--stack-memory`` sizes stacks by.
"""

from __future__ import annotations

import argparse
import resource

import torch

from smoothlab.lab.demo import demo_config
from smoothlab.lab.plan.grid import plan_runs, run_key, run_seeds
from smoothlab.lab.train import stackable
from smoothlab.lab.train.data import prepare_data
from smoothlab.lab.train.loop import RunTask, _Trainer
from smoothlab.lab.train.stack_memory import run_bytes
from smoothlab.lab.train.stacked import execute_stacked, stack_key


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=int)
    parser.add_argument("--set", action="append", default=[], help="key=value for the config")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stackable.MAX_STACK_PARAMETERS = 2**62  # measure the stack even of a model too large to pay
    runs = plan_runs(demo_config(("train.epochs=1", *args.set)))
    tasks = [RunTask(run_key(r), r, *run_seeds(r), "cpu") for r in runs]
    tasks = [t for t in tasks if stack_key(t) is not None][: args.runs]
    first = _Trainer(tasks[0], prepare_data(tasks[0].run, tasks[0].data_seed), torch.device("cpu"))
    per_run = run_bytes(first.data, first.model, first.run.train.batch_size)
    del first
    execute_stacked(tasks[:1])
    base = _peak()
    execute_stacked(tasks)
    grown = _peak() - base
    mib = 2**20
    print(f"{len(tasks)} runs: estimate {len(tasks) * per_run / mib:.1f} MiB "
          f"({per_run / mib:.2f} per run), peak growth {grown / mib:.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
