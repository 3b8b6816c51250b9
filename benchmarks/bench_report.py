"""``smoothlab report`` of a large sweep: this tree against an older one, whole commands.

Run: ``.venv/bin/python benchmarks/bench_report.py [--reference REV] [--repeats 2]
[--methods 10 --kinds 5 --rates 4 --seeds 10 --epochs 200]``. A synthetic results store of
``methods x kinds x rates x seeds`` runs (2000 by default: reliability bins of 15 bins, a
``test_accuracy`` curve of ``epochs`` points and the page's metrics per run, seeded) is written
once by this tree; then ``python -m smoothlab.lab report`` runs on it with this tree's ``src``
and with the ``src`` of git revision ``REV`` (default ``7f15e4c``: before the reliability panels
stopped sharing their axes, whose limits matplotlib propagates to every sibling), checked out
in a temporary worktree, alternately. It prints the wall time of each command (process start-up
and imports included), their medians and the ratio reference / ours.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smoothlab.lab.run.store import ResultsStore, RunRow

ROOT = Path(__file__).resolve().parent.parent
METHODS = [("ce", {}), *(("ls", {"smoothing": r}) for r in (0.1, 0.2, 0.4, 0.6, 0.8))]
METHODS += [("nls", {"smoothing": r}) for r in (-0.2, -0.5, -1.0, -2.0, -4.0, -8.0)]
KINDS = ["symmetric", "pairflip", "class-dependent", "asymmetric-cifar10", "instance", "uniform"]


def _label(method: str, params: dict[str, float]) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"{method}({inner})" if inner else method


def _run(rng: random.Random, kind: str, rate: float, method: str, params: dict[str, float],
         seed: int, epochs: int) -> RunRow:  # fmt: skip
    """One synthetic run: the page's metrics, reliability bins and a test-accuracy curve."""
    label = _label(method, params)
    accuracy = 0.9 - rate / 2 + rng.gauss(0, 0.01)
    bins = {
        "edges": [k / 15 for k in range(16)],
        "confidence": [(k + 0.5) / 15 for k in range(15)],
        "accuracy": [min(1.0, (k + 0.5) / 15 + rng.gauss(0, 0.05)) for k in range(15)],
        "count": [rng.random() * 10 for _ in range(15)],
    }
    metrics = {
        "accuracy": accuracy,
        "ece": rng.random() / 5,
        "nll": 0.5 + rng.random(),
        "ece_ts": rng.random() / 10,
        "brier": 0.2 + rng.random() / 10,
    }
    curve = [accuracy * (1 - 0.5 ** (e + 1)) for e in range(epochs)]
    return RunRow(
        key=f"{label}-{kind}-{rate:g}-{seed}", experiment="bench", method=method, label=label,
        noise_kind=kind, noise_rate=rate, replicate=seed,
        config={"method": method, "params": params}, metrics=metrics,
        curves={"test_accuracy": curve}, extras={"reliability": bins}, wall_time=1.0,
    )  # fmt: skip


def write_store(folder: Path, args: argparse.Namespace) -> int:
    """A results store of synthetic runs; returns their number."""
    rng = random.Random(0)
    store = ResultsStore(folder)
    store.save_experiment("bench", {"name": "bench", "seeds": args.seeds})
    count = 0
    for kind in KINDS[: args.kinds]:
        for rate in [round(0.1 * (i + 1), 1) for i in range(args.rates)]:
            for method, params in METHODS[: args.methods]:
                for seed in range(args.seeds):
                    store.add_run(_run(rng, kind, rate, method, params, seed, args.epochs))
                    count += 1
    store.close()
    return count


def timed_report(src: Path, folder: Path, out: Path) -> float:
    """Wall seconds of ``python -m smoothlab.lab report folder --out out`` importing ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "smoothlab.lab", "report", str(folder), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="7f15e4c")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", type=int, default=10)
    parser.add_argument("--kinds", type=int, default=5)
    parser.add_argument("--rates", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    if not (1 <= args.methods <= len(METHODS) and 1 <= args.kinds <= len(KINDS)):
        raise SystemExit(f"--methods 1..{len(METHODS)}, --kinds 1..{len(KINDS)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder, tree = Path(tmp) / "results", Path(tmp) / "reference"
        runs = write_store(folder, args)
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.reference],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            times: dict[str, list[float]] = {"reference": [], "ours": []}
            for _ in range(args.repeats):
                for name, src in (("reference", tree / "src"), ("ours", ROOT / "src")):
                    elapsed = timed_report(src, folder, Path(tmp) / f"report-{name}")
                    times[name].append(elapsed)
                    print(f"{name:9} {elapsed:7.1f} s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=True)  # fmt: skip
    ref, ours = (statistics.median(times[k]) for k in ("reference", "ours"))
    grid = f"{args.methods} methods x {args.kinds} kinds x {args.rates} rates x {args.seeds} seeds"
    print(f"{runs} runs ({grid}, {args.epochs} epochs): reference {args.reference} {ref:.1f} s, "
          f"ours {ours:.1f} s, reference / ours {ref / ours:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
