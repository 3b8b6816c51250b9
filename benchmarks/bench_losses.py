"""Forward+backward time of each loss relative to ``F.cross_entropy(label_smoothing=0.1)``.

Timings on shared machines are noisy, so every number printed is a ratio measured in this one run:
for each shape, all candidates are interleaved over ``--repeats`` rounds (each on a fresh copy of
the logits, copied outside the timed region) and the medians are compared. Two tables:

* time relative to PyTorch (lower is faster; 0.33 is "3x faster");
* time relative to our uniform smoothing at the same shape (the family's 1.2x target).

Besides the class-index losses, smoothing towards a per-example teacher prior and soft
(probability) targets are timed, and PyTorch's own soft-target loss for comparison.

A third table counts the bytes autograd keeps for the backward pass (saved tensors, measured with
``torch.autograd.graph.saved_tensors_hooks``) in units of one ``N x C`` logits buffer. Usage::

    python benchmarks/bench_losses.py [--threads 2] [--repeats 7] [--shapes 65536x10,8192x1000]
    python benchmarks/bench_losses.py --large   # adds 8192x32000 and 4096x128000 (several GB)
    python benchmarks/bench_losses.py --shapes 8192x32000   # one large shape at a time

For the large shapes the composition (``fused=False``) is skipped to bound the peak memory.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import smoothlab

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
DEFAULT_SHAPES = "65536x10,8192x1000,2048x32000"
LARGE_SHAPES = "8192x32000,4096x128000"
LS = smoothlab.label_smoothing_cross_entropy

# Each candidate gets the logits, class indices and a per-example distribution q (the teacher
# prior, or the probability targets).
LOSSES: dict[str, Loss] = {
    "ls r=0.1": lambda z, y, q: LS(z, y, 0.1),
    "ls r=0.1 in-place": lambda z, y, q: LS(z, y, 0.1, inplace_grad=True),
    "ls r=0.1 ignore_index": lambda z, y, q: LS(z, y, 0.1, ignore_index=0),
    "nls r=-0.5": lambda z, y, q: LS(z, y, -0.5),
    "teacher prior r=0.1": lambda z, y, q: LS(z, y, 0.1, prior=q),
    "soft targets r=0.1": lambda z, y, q: LS(z, q, 0.1),
    "pytorch soft r=0.1": lambda z, y, q: F.cross_entropy(z, q, label_smoothing=0.1),
    "relaxation a=0.1": lambda z, y, q: smoothlab.label_relaxation_loss(z, y, 0.1),
    "conf. penalty b=0.1": lambda z, y, q: smoothlab.confidence_penalty_loss(z, y, 0.1),
    "conf. penalty tau=1": lambda z, y, q: smoothlab.confidence_penalty_loss(
        z, y, 0.1, threshold=1.0
    ),
    "conf. penalty soft": lambda z, y, q: smoothlab.confidence_penalty_loss(z, q, 0.1),
    "ls composition": lambda z, y, q: LS(z, y, 0.1, fused=False),
}


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """``"65536x10,8192x1000"`` -> ``[(65536, 10), (8192, 1000)]``."""
    return [(int(rows), int(classes)) for rows, classes in (s.split("x") for s in text.split(","))]


def reference(z: torch.Tensor, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z, y, label_smoothing=0.1)


Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def time_once(fn: Loss, data: Data, fresh: bool) -> float:
    logits, target, probs = data
    z = (logits.clone() if fresh else logits.detach()).requires_grad_()
    start = time.perf_counter()
    # autograd.grad returns the gradient as computed (backward() on a leaf may copy it into .grad)
    torch.autograd.grad(fn(z, target, probs), z)
    elapsed = time.perf_counter() - start
    del z
    return elapsed


def saved_buffers(fn: Loss, data: Data) -> float:
    """Extra bytes autograd keeps for the backward pass, in units of the logits' size.

    Each saved storage counts once; the logits' own storage (saved by the in-place mode, which
    writes the gradient there) is not extra.
    """
    logits, target, probs = data
    z = logits.clone().requires_grad_()
    storages = {z.untyped_storage().data_ptr(): 0}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages.setdefault(storage.data_ptr(), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(z, target, probs)
    return sum(storages.values()) / (logits.numel() * logits.element_size())


def inputs(rows: int, classes: int, g: torch.Generator) -> Data:
    """Logits, class indices and a per-example distribution (teacher prior / soft targets)."""
    logits = torch.randn(rows, classes, generator=g)
    target = torch.randint(0, classes, (rows,), generator=g)
    probs = torch.softmax(torch.randn(rows, classes, generator=g), 1)
    return logits, target, probs


def measure(
    shape: tuple[int, int], repeats: int, large: bool
) -> dict[str, tuple[float, float, float]]:
    g = torch.Generator().manual_seed(0)
    data = inputs(*shape, g)
    fns = {"pytorch": reference, **LOSSES}
    if large:  # keep the peak memory of the largest shapes within a few GB
        fns.pop("ls composition")
    for name, fn in fns.items():  # warm-up
        time_once(fn, data, "in-place" in name)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round in range(repeats):  # rotate the order: a call pays for freeing its predecessor
        for name in names[round % len(names) :] + names[: round % len(names)]:
            times[name].append(time_once(fns[name], data, "in-place" in name))
    base = statistics.median(times["pytorch"])
    ours = statistics.median(times["ls r=0.1"])
    small = inputs(64, shape[1], g)
    return {
        name: (
            statistics.median(t) / base,
            statistics.median(t) / ours,
            saved_buffers(fns[name], small),
        )
        for name, t in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shapes", default=DEFAULT_SHAPES)
    parser.add_argument("--large", action="store_true", help=f"also run {LARGE_SHAPES}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    text = args.shapes + ("," + LARGE_SHAPES if args.large else "")
    shapes = parse_shapes(text)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    large = set(parse_shapes(LARGE_SHAPES))
    results = {s: measure(s, args.repeats, s in large) for s in shapes}
    titles = [
        "time / F.cross_entropy(label_smoothing=0.1), forward+backward (lower is faster)",
        "time / our uniform smoothing 'ls r=0.1' at the same shape",
        "extra bytes saved for backward / one N x C logits buffer",
    ]
    for column, title in enumerate(titles):
        print(f"\n{title}")
        print(f"{'loss':<24}" + "".join(f"{'x'.join(map(str, s)):>14}" for s in shapes))
        for name in results[shapes[0]]:
            cells = "".join(
                f"{results[s][name][column]:>14.2f}" if name in results[s] else f"{'-':>14}"
                for s in shapes
            )
            print(f"{name:<24}{cells}")


if __name__ == "__main__":
    main()
