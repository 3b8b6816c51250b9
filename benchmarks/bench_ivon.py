"""IVON versus fused AdamW: time per training step on a 5.8M-parameter MLP, one CPU thread.

Run: ``.venv/bin/python benchmarks/bench_ivon.py`` (``--repeats N`` for more timing rounds).

The model is 784-2048-2048-10 with ReLU (5,824,522 parameters), batch 128, cross-entropy. Two
numbers per optimizer, each the median over repeats of timed blocks of steps:

- **full step**: zero_grad + forward + backward + optimizer step; for IVON also drawing the
  weight sample and restoring the mean (``sampled_params(train=True)``), ``mc_samples=1``;
- **optimizer only**: the optimizer's own work per step. For AdamW that is ``step()``; for IVON
  it is drawing the sample, recording the gradient on exit, and ``step()`` (the forward and
  backward are left out). A third line gives the Gaussian noise draw alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from smoothlab.optim import IVON


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)
    )


def block_ms(fn: Callable[[], None], steps: int) -> float:
    """Mean time of ``steps`` calls, in milliseconds."""
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps * 1e3


def compare(
    base: Callable[[], None], other: Callable[[], None], *, steps: int, repeats: int
) -> tuple[float, float, float]:
    """Median times of ``base`` and ``other`` and the median of their per-round ratios.

    The two alternate within every round, so load from other processes hits both alike.
    """
    base(), other()  # warm-up: allocates optimizer state and buffers
    rounds = [(block_ms(base, steps), block_ms(other, steps)) for _ in range(repeats)]
    return (
        statistics.median(b for b, _ in rounds),
        statistics.median(o for _, o in rounds),
        statistics.median(o / b for b, o in rounds),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--official",
        action="store_true",
        help="also time the official ivon-opt package if installed (a dev-only comparison)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
    loss_fn = nn.CrossEntropyLoss()

    adam_model, ivon_model = make_model(), make_model()
    n_params = sum(p.numel() for p in adam_model.parameters())
    try:
        adamw = torch.optim.AdamW(adam_model.parameters(), lr=1e-3, fused=True)
        kind = "fused"
    except RuntimeError:
        adamw = torch.optim.AdamW(adam_model.parameters(), lr=1e-3, foreach=True)
        kind = "foreach"
    ivon = IVON(ivon_model.parameters(), lr=0.1, ess=60_000.0)

    def adam_full() -> None:
        adamw.zero_grad()
        loss_fn(adam_model(x), y).backward()
        adamw.step()

    def ivon_full() -> None:
        with ivon.sampled_params(train=True):
            ivon.zero_grad()
            loss_fn(ivon_model(x), y).backward()
        ivon.step()

    def ivon_optimizer_only() -> None:  # gradients stay from the last backward
        with ivon.sampled_params(train=True):
            pass
        ivon.step()

    noise = torch.empty(n_params)
    generator = torch.Generator().manual_seed(0)

    def draw_noise() -> None:
        noise.normal_(generator=generator)

    reps = {"steps": args.steps, "repeats": args.repeats}
    adam_full_ms, ivon_full_ms, full_ratio = compare(adam_full, ivon_full, **reps)
    adam_step_ms, ivon_step_ms, step_ratio = compare(adamw.step, ivon_optimizer_only, **reps)
    _, noise_ms, noise_ratio = compare(adam_full, draw_noise, **reps)

    setup = f"batch 128, 1 thread, torch {torch.__version__}"
    print(f"MLP 784-2048-2048-10, {n_params:,} parameters, {setup}; "
          f"medians of {args.repeats} rounds x {args.steps} steps")  # fmt: skip
    print(f"full step      AdamW({kind}) {adam_full_ms:7.1f} ms   IVON {ivon_full_ms:7.1f} ms"
          f"   ratio {full_ratio:.2f}x")  # fmt: skip
    print(f"optimizer only AdamW({kind}) {adam_step_ms:7.1f} ms   IVON {ivon_step_ms:7.1f} ms"
          f"   ratio {step_ratio:.2f}x")  # fmt: skip
    print(f"Gaussian draw of {n_params:,} floats (torch normal_): {noise_ms:.1f} ms"
          f" = {noise_ratio:.2f}x an AdamW full step")  # fmt: skip
    if args.official:
        official_full(adam_full, x, y, **reps)


def official_full(
    adam_full: Callable[[], None], x: torch.Tensor, y: torch.Tensor, *, steps: int, repeats: int
) -> None:
    """The same full step with the official package (GPL-3.0; imported here only, if present)."""
    try:
        import ivon  # type: ignore[import-not-found]
    except ImportError:
        print("official ivon-opt: not installed")
        return
    model = make_model()
    optimizer = ivon.IVON(model.parameters(), lr=0.1, ess=60_000.0)

    def step() -> None:
        with optimizer.sampled_params(train=True):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    adam_ms, official_ms, ratio = compare(adam_full, step, steps=steps, repeats=repeats)
    print(f"full step      AdamW         {adam_ms:7.1f} ms   ivon-opt {official_ms:7.1f} ms"
          f"   ratio {ratio:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
