"""GPU forward+backward time and peak memory of the loss family (Triton) against PyTorch and Liger.

One run, one GPU: every number printed is a median over ``--repeats`` interleaved rounds, timed
with CUDA events, each round on a fresh copy of the logits made outside the timed region, and
reported as a ratio to PyTorch's ``F.cross_entropy(label_smoothing=0.1)`` (and to Liger-Kernel's
cross-entropy when ``liger_kernel`` is importable, and to our uniform smoothing: the family's
1.15x target). Peak memory is the most allocated during a round beyond what existed before it
(logits, targets), in units of one ``N x C`` logits buffer. Usage::

    python benchmarks/bench_gpu.py [--shape 8192x128256] [--dtype bfloat16] [--repeats 10]
    python benchmarks/bench_gpu.py --dry-run   # checks the plan on any machine, measures nothing

Without a CUDA device it exits with status 2 and says so; nothing is estimated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

import smoothlab
from smoothlab import _native

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
LS = smoothlab.label_smoothing_cross_entropy
BASELINE = "pytorch ls r=0.1"
OURS = "ls r=0.1"

# Each candidate gets the logits, the class indices and a per-example distribution q.
LOSSES: dict[str, Loss] = {
    BASELINE: lambda z, y, q: F.cross_entropy(z, y, label_smoothing=0.1),
    OURS: lambda z, y, q: LS(z, y, 0.1),
    "ls r=0.1 in-place": lambda z, y, q: LS(z, y, 0.1, inplace_grad=True),
    "nls r=-0.1": lambda z, y, q: LS(z, y, -0.1),
    "teacher prior r=0.1": lambda z, y, q: LS(z, y, 0.1, prior=q),
    "soft targets r=0.1": lambda z, y, q: LS(z, q, 0.1),
    "relaxation a=0.1": lambda z, y, q: smoothlab.label_relaxation_loss(z, y, 0.1),
    "conf. penalty b=0.1": lambda z, y, q: smoothlab.confidence_penalty_loss(z, y, 0.1),
    "conf. penalty tau=1": lambda z, y, q: smoothlab.confidence_penalty_loss(
        z, y, 0.1, threshold=1.0
    ),
}


def add_liger(losses: dict[str, Loss]) -> str | None:
    """Add Liger-Kernel's smoothing cross-entropy when it is installed; its name or ``None``."""
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss  # type: ignore[import-not-found]
    except ImportError:
        return None
    liger = LigerCrossEntropyLoss(label_smoothing=0.1)
    losses["liger ls r=0.1"] = lambda z, y, q: liger(z, y)
    return "liger ls r=0.1"


def one_round(loss: Loss, z: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> tuple[float, int]:
    """Milliseconds of forward + backward on a fresh copy of ``z``, and the peak extra bytes."""
    x = z.clone().requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    loss(x, y, q).backward()
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop), torch.cuda.max_memory_allocated() - before


def measure(
    losses: dict[str, Loss], shape: tuple[int, int], dtype: torch.dtype, repeats: int
) -> dict[str, tuple[float, float]]:
    """Median milliseconds and peak extra memory (in logits buffers) of each candidate."""
    n, c = shape
    g = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(n, c, device="cuda", dtype=dtype, generator=g)
    y = torch.randint(0, c, (n,), device="cuda", generator=g)
    q = torch.softmax(torch.randn(n, c, device="cuda", generator=g), 1).to(dtype)
    times: dict[str, list[float]] = {name: [] for name in losses}
    peaks: dict[str, int] = dict.fromkeys(losses, 0)
    for loss in losses.values():  # warm-up: Triton compiles each kernel variant once
        one_round(loss, z, y, q)
    for _ in range(repeats):
        for name, loss in losses.items():
            ms, peak = one_round(loss, z, y, q)
            times[name].append(ms)
            peaks[name] = max(peaks[name], peak)
    buffer = z.numel() * z.element_size()
    return {name: (statistics.median(times[name]), peaks[name] / buffer) for name in losses}


def report(results: dict[str, tuple[float, float]], liger: str | None) -> None:
    """One table: milliseconds, time ratios (PyTorch, Liger, our uniform), peak memory."""
    refs = [BASELINE, *([liger] if liger else []), OURS]
    labels = {BASELINE: "/torch", OURS: "/ours", liger: "/liger"}
    head = "".join(f"{labels[r]:>10}" for r in refs)
    print(f"{'loss':<24}{'ms':>9}{head}{'peak (x N*C)':>14}")
    for name, (ms, peak) in results.items():
        ratios = "".join(f"{ms / results[r][0]:>10.2f}" for r in refs)
        print(f"{name:<24}{ms:>9.2f}{ratios}{peak:>14.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8192x128256", help="N x C logits")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, measure nothing")
    args = parser.parse_args(argv)
    n, c = (int(part) for part in args.shape.lower().split("x"))
    dtype = getattr(torch, args.dtype)
    losses = dict(LOSSES)
    liger = add_liger(losses)
    print(f"shape {n}x{c} {args.dtype}, {args.repeats} rounds; candidates: {', '.join(losses)}")
    print(f"triton: {_native.status()['triton']}; liger-kernel: {'yes' if liger else 'absent'}")
    if args.dry_run:
        return 0
    if not torch.cuda.is_available():
        print(
            "bench_gpu.py needs a CUDA device (none found): nothing was measured", file=sys.stderr
        )
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    report(measure(losses, (n, c), dtype, args.repeats), liger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
