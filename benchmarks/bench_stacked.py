"""The stacked executor against the process pool: wall time of whole ``smoothlab run`` commands.

Run: ``.venv/bin/python benchmarks/bench_stacked.py`` (``--repeats N``, ``--workers W``,
``--stacked-workers W`` to give the stacked executor a number of workers instead of its
default, which starts one per core that other processes leave idle,
``--config PATH`` to time other grids, ``--config demo`` for the demo alone; ``--set key=value``
is passed on to both runs).

Each round runs the same grid twice into fresh folders, ``--executor local --workers W`` and
``--executor stacked``, in alternating order (load from other processes hits both alike),
process start-up, data loading and the final table included, report off. It prints both times
and the ratio pool / stacked per grid, the median over rounds; and the same for CPU time (user
and system time of the command and its workers), which other processes on a loaded machine
disturb much less than wall time (the goal is wall time; CPU time says what the executor itself
saves). The default grids are the demo (36 runs, 6 of them IVON, which does not stack) and the
Twonorm sweep of ``configs/negative_smoothing_twonorm`` (275 runs), which needs the Twonorm
file (``SMOOTHLAB_DATA``; ``../shared/datasets`` is used when it exists).

Before the first round the native kernels are built (``smoothlab._native.status()``): after an
edit of their sources the first command to need them would compile them (35 s of wall time on a
loaded machine), which is no executor's cost. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(
    grid: list[str], executor: str, workers: str, extra: list[str]
) -> tuple[float, float]:
    """Wall and CPU seconds of one ``smoothlab run`` (or ``demo``) into a fresh folder."""
    env = dict(os.environ)
    if "SMOOTHLAB_DATA" not in env and SHARED.is_dir():
        env["SMOOTHLAB_DATA"] = str(SHARED)
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "smoothlab.lab", *grid, "--out", out, "--no-report",
                   "--executor", executor, *extra]  # fmt: skip
        command += [] if workers == "auto" else ["--workers", workers]
        start, cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        elapsed, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stacked-workers", default="auto", help="N, or auto: its default")
    parser.add_argument("--config", action="append", help="a config to time (default: both)")
    parser.add_argument("--set", action="append", default=[], help="key=value for both runs")
    args = parser.parse_args()
    grids = [["demo"] if c == "demo" else ["run", c] for c in args.config] if args.config else [
        ["demo"],
        ["run", str(ROOT / "configs" / "negative_smoothing_twonorm.toml")],
    ]  # fmt: skip
    extra = [item for pair in args.set for item in ("--set", pair)]
    build = "import smoothlab._native as n; n.status()"
    subprocess.run([sys.executable, "-c", build], check=True)
    print(f"load average {os.getloadavg()[0]:.1f} before")
    print(f"{'grid':36} {'':4} {'pool s':>8} {'stacked s':>10} {'pool/stacked':>13}")
    for grid in grids:
        rounds = []
        for r in range(args.repeats):
            order = ("local", "stacked") if r % 2 == 0 else ("stacked", "local")
            workers = {"local": str(args.workers), "stacked": args.stacked_workers}
            times = {name: timed_run(grid, name, workers[name], extra) for name in order}
            rounds.append((times["local"], times["stacked"]))
        name = Path(grid[-1]).stem if len(grid) > 1 else grid[0]
        for i, what in enumerate(("wall", "cpu")):
            pool = statistics.median(p[i] for p, _ in rounds)
            stacked = statistics.median(s[i] for _, s in rounds)
            ratio = statistics.median(p[i] / s[i] for p, s in rounds)
            print(f"{name:36} {what:4} {pool:8.1f} {stacked:10.1f} {ratio:13.2f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
