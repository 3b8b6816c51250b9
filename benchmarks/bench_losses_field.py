"""Forward+backward time of the fused focal, GCE, SCE and logit-regulariser losses relative to
their own composition of torch operations (``fused=False``), and to ``F.cross_entropy``.

As ``bench_losses.py``: every number is a ratio measured in this one run; for each shape all
candidates (fused and composition of each loss, and PyTorch's cross-entropy) are interleaved
over ``--repeats`` rounds, each on a fresh copy of the logits, and medians are compared.

``--clock cpu`` times with the process's CPU time instead of the wall clock: on a machine whose
cores are oversubscribed by other jobs, wall time mostly measures waiting for a core (and, with
several torch threads, OpenMP workers waiting for each other), while CPU time with
``--threads 1`` measures the work. Usage::

    python benchmarks/bench_losses_field.py [--threads 2] [--repeats 9] [--clock wall|cpu]
        [--shapes 8192x10,2048x1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_losses import Data, inputs, parse_shapes

import smoothlab

Loss = Callable[..., torch.Tensor]
DEFAULT_SHAPES = "8192x10,2048x1000"

LOSSES: dict[str, Loss] = {
    "focal g=2": lambda z, y, **kw: smoothlab.focal_loss(z, y, gamma=2.0, **kw),
    "FLSD-53": lambda z, y, **kw: smoothlab.sample_dependent_focal_loss(z, y, **kw),
    "GCE q=0.7": lambda z, y, **kw: smoothlab.generalized_cross_entropy(z, y, q=0.7, **kw),
    "SCE": lambda z, y, **kw: smoothlab.symmetric_cross_entropy(z, y, **kw),
    "logit penalty": lambda z, y, **kw: smoothlab.logit_penalty_loss(z, y, beta=1e-3, **kw),
    "MaxSup a=0.1": lambda z, y, **kw: smoothlab.max_suppression_loss(z, y, alpha=0.1, **kw),
    "MbLS": lambda z, y, **kw: smoothlab.margin_label_smoothing_loss(z, y, **kw),
    "LogitNorm": lambda z, y, **kw: smoothlab.logit_norm_loss(z, y, **kw),
}


def candidates() -> dict[str, Callable[..., torch.Tensor]]:
    """Each loss fused and as its composition, and PyTorch's cross-entropy."""
    out: dict[str, Callable[..., torch.Tensor]] = {"pytorch": lambda z, y, q: F.cross_entropy(z, y)}
    for name, fn in LOSSES.items():
        out[f"{name} fused"] = lambda z, y, q, fn=fn: fn(z, y)
        out[f"{name} composition"] = lambda z, y, q, fn=fn: fn(z, y, fused=False)
    return out


def time_once(fn: Callable[..., torch.Tensor], data: Data, clock: Callable[[], float]) -> float:
    """Forward + backward of ``fn`` on a fresh copy of the logits (copied outside the timing)."""
    logits, target, probs = data
    z = logits.clone().requires_grad_()
    start = clock()
    torch.autograd.grad(fn(z, target, probs), z)
    return clock() - start


def measure(shape: tuple[int, int], repeats: int, clock: Callable[[], float]) -> dict[str, float]:
    """Median time of each candidate at ``shape``, in seconds."""
    data = inputs(*shape, torch.Generator().manual_seed(0))
    fns = candidates()
    for fn in fns.values():  # warm-up (and the C kernels' build)
        time_once(fn, data, clock)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round in range(repeats):  # rotate the order: a call pays for freeing its predecessor
        for name in names[round % len(names) :] + names[: round % len(names)]:
            times[name].append(time_once(fns[name], data, clock))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = parse_shapes(args.shapes)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.clock} clock, "
        f"median of {args.repeats}"
    )
    results = {s: measure(s, args.repeats, clock) for s in shapes}
    header = "".join(f"{'x'.join(map(str, s)):>24}" for s in shapes)
    print(f"\n{'loss':<16}{header}")
    print(f"{'':<16}" + "".join(f"{'fused/comp.':>12}{'fused/CE':>12}" for _ in shapes))
    for name in LOSSES:
        cells = ""
        for s in shapes:
            fused = results[s][f"{name} fused"]
            cells += f"{fused / results[s][f'{name} composition']:>12.2f}"
            cells += f"{fused / results[s]['pytorch']:>12.2f}"
        print(f"{name:<16}{cells}")


if __name__ == "__main__":
    main()
