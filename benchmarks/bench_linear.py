"""Fused linear heads against the naive ``F.linear`` + loss: time and peak extra memory.

Time: forward+backward (gradients of hidden, weight and bias), candidates interleaved over
``--repeats`` rounds, medians, ratios from this one run.

Memory: each candidate runs once in a fresh subprocess; the peak extra memory is the peak resident
set of that process image at the end of forward+backward (``VmHWM`` in ``/proc/self/status``)
minus its resident set just before (``VmRSS``, after the inputs are allocated and the kernels
warmed up on a tiny batch). It includes the gradients of hidden, weight and bias, which both
candidates produce. (``tracemalloc`` does not see torch's allocations, saved-tensor hooks miss the
temporaries of the backward pass, and ``getrusage``'s ``ru_maxrss`` survives ``exec``, so a child
would report its parent's peak; ``VmHWM`` is per image.) Linux only. Usage::

    python benchmarks/bench_linear.py [--threads 2] [--repeats 3] [--shape 4096x1024x32000]
    python benchmarks/bench_linear.py --ignored 0.25   # a quarter of the targets are padding

``--ignored`` sets that fraction of the targets (random positions) to ``ignore_index``, as the
padding of a language-model batch: the fused heads skip those rows in every matrix product.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from smoothlab.losses import (
    confidence_penalty_loss,
    label_relaxation_loss,
    linear_confidence_penalty_loss,
    linear_label_relaxation_loss,
    linear_label_smoothing_cross_entropy,
)

Head = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

HEADS: dict[str, Head] = {
    "naive ls": lambda h, w, b, y: F.cross_entropy(F.linear(h, w, b), y, label_smoothing=0.1),
    "fused ls": lambda h, w, b, y: linear_label_smoothing_cross_entropy(h, w, y, bias=b),
    "naive relaxation": lambda h, w, b, y: label_relaxation_loss(F.linear(h, w, b), y, 0.1),
    "fused relaxation": lambda h, w, b, y: linear_label_relaxation_loss(h, w, y, bias=b),
    "naive conf. penalty": lambda h, w, b, y: confidence_penalty_loss(F.linear(h, w, b), y, 0.1),
    "fused conf. penalty": lambda h, w, b, y: linear_confidence_penalty_loss(h, w, y, bias=b),
}


def inputs(shape: tuple[int, int, int], ignored: float = 0.0) -> tuple[torch.Tensor, ...]:
    rows, size, vocab = shape
    g = torch.Generator().manual_seed(0)
    h = torch.randn(rows, size, generator=g).requires_grad_()
    w = torch.randn(vocab, size, generator=g).div_(size**0.5).requires_grad_()
    b = torch.zeros(vocab).requires_grad_()
    y = torch.randint(0, vocab, (rows,), generator=g)
    y[torch.randperm(rows, generator=g)[: round(ignored * rows)]] = -100
    return h, w, b, y


def run_once(
    head: Head, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, y: torch.Tensor
) -> float:
    start = time.perf_counter()
    torch.autograd.grad(head(h, w, b, y), (h, w, b))
    return time.perf_counter() - start


def peak_child(name: str, shape: tuple[int, int, int], ignored: float) -> None:
    """Subprocess body: print the peak RSS growth (bytes) of one forward+backward."""
    head = HEADS[name]
    tiny = inputs((4, shape[1], 16))
    run_once(head, *tiny)
    h, w, b, y = inputs(shape, ignored)
    before = status("VmRSS")
    run_once(head, h, w, b, y)
    print(status("VmHWM") - before)


def status(field: str) -> int:
    """A memory field of ``/proc/self/status`` in bytes (``VmHWM``: this image's peak RSS)."""
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak(name: str, shape: tuple[int, int, int], threads: int, ignored: float) -> float:
    text = "x".join(map(str, shape))
    command = [sys.executable, __file__, "--child", name, "--shape", text]
    command += ["--threads", str(threads), "--ignored", str(ignored)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", default="4096x1024x32000", help="rows x hidden x vocabulary")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--memory-only", action="store_true", help="skip the timing")
    parser.add_argument("--ignored", type=float, default=0.0, help="fraction of ignored targets")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split("x"))
    if len(shape) != 3:
        parser.error(f"--shape must be rows x hidden x vocabulary, got {args.shape!r}")
    if args.child:
        peak_child(args.child, shape, args.ignored)
        return
    data = inputs(shape, args.ignored)
    for head in HEADS.values():  # warm-up
        run_once(head, *inputs((64, shape[1], 512)))
    times: dict[str, list[float]] = {name: [] for name in HEADS}
    for _ in range(0 if args.memory_only else args.repeats):
        for name, head in HEADS.items():
            times[name].append(run_once(head, *data))
    del data
    memory = {name: peak(name, shape, args.threads, args.ignored) for name in HEADS}
    print(
        f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}, "
        f"{args.shape}, {args.ignored:.0%} of targets ignored"
    )
    print(
        f"{'head':<22}{'time (s)':>10}{'fused/naive':>13}{'peak extra MiB':>16}{'fused/naive':>13}"
    )
    for name in HEADS:
        naive = name.replace("fused", "naive")
        t, m = statistics.median(times[name] or [math.nan]), memory[name]
        tr = t / statistics.median(times[naive] or [math.nan])
        mr = m / memory[naive] if memory[naive] > 0 else float("nan")
        print(f"{name:<22}{t:>10.3f}{tr:>13.2f}{m / 2**20:>16.0f}{mr:>13.2f}")


if __name__ == "__main__":
    main()
