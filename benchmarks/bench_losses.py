"""Forward+backward time of each loss relative to ``F.cross_entropy(label_smoothing=0.1)``.

Timings on shared machines are noisy, so every number printed is a ratio measured in this one run:
for each shape, ours and PyTorch's are interleaved over ``--repeats`` rounds and the medians are
compared. Usage::

    python benchmarks/bench_losses.py [--threads 2] [--repeats 7] [--shapes 65536x10,8192x1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import smoothlab

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES: dict[str, Loss] = {
    "ls r=0.1": lambda z, y: smoothlab.label_smoothing_cross_entropy(z, y, 0.1),
    "nls r=-0.5": lambda z, y: smoothlab.label_smoothing_cross_entropy(z, y, -0.5),
    "relaxation a=0.1": lambda z, y: smoothlab.label_relaxation_loss(z, y, 0.1),
    "conf. penalty b=0.1": lambda z, y: smoothlab.confidence_penalty_loss(z, y, 0.1),
}


def reference(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z, y, label_smoothing=0.1)


def time_once(fn: Loss, logits: torch.Tensor, target: torch.Tensor) -> float:
    z = logits.detach().requires_grad_()
    start = time.perf_counter()
    fn(z, target).backward()
    return time.perf_counter() - start


def ratios(shape: tuple[int, int], repeats: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g)
    target = torch.randint(0, shape[1], (shape[0],), generator=g)
    fns = {"pytorch": reference, **LOSSES}
    for fn in fns.values():  # warm-up
        time_once(fn, logits, target)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_once(fn, logits, target))
    base = statistics.median(times["pytorch"])
    return {name: statistics.median(t) / base for name, t in times.items() if name != "pytorch"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shapes", default="65536x10,8192x1000,2048x32000")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    print(
        f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}; "
        "ratio = ours / F.cross_entropy(label_smoothing=0.1), forward+backward (lower is better)"
    )
    header = f"{'loss':<22}" + "".join(f"{'x'.join(map(str, s)):>14}" for s in shapes)
    print(header)
    results = {s: ratios(s, args.repeats) for s in shapes}  # type: ignore[arg-type]
    for name in LOSSES:
        print(f"{name:<22}" + "".join(f"{results[s][name]:>14.2f}" for s in shapes))


if __name__ == "__main__":
    main()
