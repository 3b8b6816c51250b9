"""Non-regression check of the loss kernels between two source trees, on a CPU-time clock.

Each tree (a checkout's ``src`` folder, e.g. from ``git worktree add /tmp/old <commit>``) runs in
its own process, one thread, rounds alternating between the trees; each case's forward +
backward CPU time is divided by ``F.cross_entropy(label_smoothing=0.1)`` at the same shape in
the same process, so the ratios hold on a machine loaded by other jobs, where wall-clock
two-thread timings do not. Prints the best ratio of each tree over the rounds.

    python benchmarks/ab_losses.py /tmp/old/src src --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor

SHAPES = ((65536, 10), (8192, 1000), (2048, 32000))
CASES = ("pytorch", "ls r=0.1", "nls r=-0.5", "teacher prior r=0.1", "relaxation a=0.1")


def _calls(y: Tensor, prior: Tensor) -> dict[str, Callable[[Tensor], Tensor]]:
    """Each case as a loss of the logits, at the shape of ``y`` and ``prior``."""
    import torch.nn.functional as F

    import smoothlab

    smooth = smoothlab.label_smoothing_cross_entropy
    return {
        "pytorch": lambda x: F.cross_entropy(x, y, label_smoothing=0.1),
        "ls r=0.1": lambda x: smooth(x, y, smoothing=0.1),
        "nls r=-0.5": lambda x: smooth(x, y, smoothing=-0.5),
        "teacher prior r=0.1": lambda x: smooth(x, y, smoothing=0.1, prior=prior),
        "relaxation a=0.1": lambda x: smoothlab.label_relaxation_loss(x, y, alpha=0.1),
    }


def _median_time(call: Callable[[Tensor], Tensor], z: Tensor, repeats: int) -> float:
    """Median CPU seconds of a forward + backward; the first three calls warm up (and build
    the kernels)."""
    samples = []
    for _ in range(repeats + 3):
        x = z.clone().requires_grad_()
        start = time.process_time()
        call(x).backward()  # type: ignore[no-untyped-call]
        samples.append(time.process_time() - start)
    return statistics.median(samples[3:])


def _measure(repeats: int) -> dict[str, list[float]]:
    """Ratios of every case at every shape, in this process (the tree on ``sys.path``)."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    ratios: dict[str, list[float]] = {case: [] for case in CASES}
    for rows, classes in SHAPES:
        z = torch.randn(rows, classes, generator=generator)
        y = torch.randint(0, classes, (rows,), generator=generator)
        prior = torch.softmax(torch.randn(rows, classes, generator=generator), dim=1)
        times = {case: _median_time(call, z, repeats) for case, call in _calls(y, prior).items()}
        for case in CASES:
            ratios[case].append(times[case] / times["pytorch"])
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, help="two src folders: the reference, then the new one")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import smoothlab

        if not smoothlab.__file__ or not smoothlab.__file__.startswith(args.worker):
            raise SystemExit(f"smoothlab came from {smoothlab.__file__}, not {args.worker}")
        print(json.dumps(_measure(args.repeats)))
        return
    best: dict[str, dict[str, list[float]]] = {tree: {} for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
            command = [sys.executable, __file__, *args.trees, "--worker", os.path.abspath(tree)]
            command += ["--repeats", str(args.repeats)]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            for case, values in json.loads(out.stdout).items():
                old = best[tree].get(case, values)
                best[tree][case] = [min(a, b) for a, b in zip(old, values, strict=True)]
    print(f"load average {os.getloadavg()[0]:.1f}; CPU time / F.cross_entropy(label_smoothing=0.1)")
    print(f"{'loss':22s}" + "".join(f"{f'{r}x{c}':>24s}" for r, c in SHAPES))
    print(f"{'':22s}" + f"{'reference / new':>24s}" * len(SHAPES))
    for case in CASES[1:]:
        pairs = zip(best[args.trees[0]][case], best[args.trees[1]][case], strict=True)
        print(f"{case:22s}" + "".join(f"{a:>16.3f} / {b:.3f}" for a, b in pairs))


if __name__ == "__main__":
    main()
