"""Smooth ECE's bandwidth search: this tree's ``smooth_calibration_error`` against an older one.

Run: ``.venv/bin/python benchmarks/bench_smooth_ece.py [--reference REV] [--repeats 15]``. The
reference is ``src/smoothlab/metrics/smooth.py`` at git revision ``REV`` (default ``00618f3``, the
last one that bisected), loaded as a module of its own. Inputs are the lab's: ``N`` test rows of
10 classes, labels drawn from ``softmax(z)`` and predictions ``softmax(z / T)`` (float32, as the
lab stores them). One thread; the two are timed alternately so that load on a shared machine
falls on both; medians of the repeats and their ratio (reference / ours) are printed, with the
number of ``smECE_sigma`` evaluations (one FFT batch each) per call of each.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

from smoothlab.metrics import smooth, smooth_calibration_error

ROOT = Path(__file__).resolve().parent.parent


def _reference(revision: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{revision}:src/smoothlab/metrics/smooth.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "reference_smooth.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("reference_smooth", path)
    assert spec is not None and spec.loader is not None  # a file path always has a loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _count_calls(module: ModuleType, name: str) -> list[int]:
    """Wrap ``module.name`` so that each call adds one to the returned counter."""
    inner, counter = getattr(module, name), [0]

    def counted(*args: object) -> object:
        counter[0] += 1
        return inner(*args)

    setattr(module, name, counted)
    return counter


def _problem(n: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(n)
    logits = torch.randn(n, 10, generator=generator, dtype=torch.float64) * 3
    target = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)
    return torch.softmax(logits / temperature, 1).float(), target


def _seconds(function: object, probs: torch.Tensor, target: torch.Tensor) -> float:
    start = time.perf_counter()
    function(probs, target)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="00618f3")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    module = _reference(args.reference)
    reference = module.smooth_calibration_error
    counters = _count_calls(module, "_error_at"), _count_calls(smooth, "_error_and_slope")
    print("N      T    smECE     evaluations  reference ms  ours ms  reference / ours")
    for n in (600, 10000):
        for temperature in (0.5, 1.0, 2.0):
            probs, target = _problem(n, temperature)
            counters[0][0] = counters[1][0] = 0
            old, new = (
                float(reference(probs, target)),
                float(smooth_calibration_error(probs, target)),
            )
            assert abs(old - new) <= 1e-12 * old, (old, new)
            calls = f"{counters[0][0]} / {counters[1][0]}"
            times: tuple[list[float], list[float]] = ([], [])
            for _ in range(args.repeats):
                times[0].append(_seconds(reference, probs, target))
                times[1].append(_seconds(smooth_calibration_error, probs, target))
            slow, fast = (statistics.median(t) * 1e3 for t in times)
            print(f"{n:<6} {temperature:<4} {new:.6f}  {calls:>11}  {slow:12.2f} {fast:8.2f}  "
                  f"{slow / fast:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
