"""The stacked executor against the process pool: wall time of whole ``smoothlab run`` commands.

Run: ``.venv/bin/python benchmarks/bench_stacked.py`` (``--repeats N``, ``--workers W``,
``--config PATH`` to time other grids; ``--set key=value`` is passed on to both runs).

Each round runs the same grid twice into fresh folders, ``--executor local`` and ``--executor
stacked``, in alternating order (load from other processes hits both alike), process start-up,
data loading and the final table included, report off. It prints both times and the ratio
pool / stacked per grid, the median over rounds. The default grids are the demo (36 runs, 6 of
them IVON, which does not stack) and the Twonorm sweep of ``configs/negative_smoothing_twonorm``
(165 runs), which needs the Twonorm file (``SMOOTHLAB_DATA``; ``../shared/datasets`` is used when
it exists).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def timed_run(grid: list[str], executor: str, workers: int, extra: list[str]) -> float:
    """Seconds of one ``smoothlab run`` (or ``demo``) into a fresh folder."""
    env = dict(os.environ)
    if "SMOOTHLAB_DATA" not in env and SHARED.is_dir():
        env["SMOOTHLAB_DATA"] = str(SHARED)
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "smoothlab.lab", *grid, "--out", out, "--no-report",
                   "--executor", executor, "--workers", str(workers), *extra]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", action="append", help="a config to time (default: both)")
    parser.add_argument("--set", action="append", default=[], help="key=value for both runs")
    args = parser.parse_args()
    grids = [["run", c] for c in args.config] if args.config else [
        ["demo"],
        ["run", str(ROOT / "configs" / "negative_smoothing_twonorm.toml")],
    ]  # fmt: skip
    extra = [item for pair in args.set for item in ("--set", pair)]
    print(f"{'grid':44} {'pool s':>8} {'stacked s':>10} {'pool/stacked':>13}")
    for grid in grids:
        rounds = []
        for r in range(args.repeats):
            order = ("local", "stacked") if r % 2 == 0 else ("stacked", "local")
            times = {name: timed_run(grid, name, args.workers, extra) for name in order}
            rounds.append((times["local"], times["stacked"]))
        pool = statistics.median(p for p, _ in rounds)
        stacked = statistics.median(s for _, s in rounds)
        ratio = statistics.median(p / s for p, s in rounds)
        name = Path(grid[-1]).stem if len(grid) > 1 else grid[0]
        print(f"{name:44} {pool:8.1f} {stacked:10.1f} {ratio:13.2f}")


if __name__ == "__main__":
    main()
