"""IVON versus fused AdamW: time per training step on a 5.8M-parameter MLP, one CPU thread.

Run: ``.venv/bin/python benchmarks/bench_ivon.py`` (``--repeats N`` for more timing rounds).
``--small`` times instead IVON's own work per step on the lab demo's model (see
:func:`small_model`); with ``PYTHONPATH=<other tree>/src`` it times another source tree.

The model is 784-2048-2048-10 with ReLU (5,824,522 parameters), batch 128, cross-entropy. Two
numbers per optimizer, each the median over repeats of timed blocks of steps:

- **full step**: zero_grad + forward + backward + optimizer step; for IVON also drawing the
  weight sample and restoring the mean (``sampled_params(train=True)``), ``mc_samples=1``;
- **optimizer only**: the optimizer's own work per step. For AdamW that is ``step()``; for IVON
  it is drawing the sample, recording the gradient on exit, and ``step()`` (the forward and
  backward are left out).

IVON runs as users get it: the compiled kernels of ``smoothlab._native`` for its float32
parameters when a C compiler is available. Two more lines time the PyTorch implementation
(``smoothlab._native.disabled()``, also what runs without a compiler), and the Gaussian draw
alone: torch's ``normal_`` against the native Philox + Box-Muller stream.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from smoothlab import _native
from smoothlab.optim import IVON, _ivon_native


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


def cpu_us(fn: Callable[[], None], steps: int) -> float:
    """CPU time per call of ``fn`` over ``steps`` calls, in microseconds (a clock that other
    processes on a loaded machine do not advance)."""
    start = time.process_time()
    for _ in range(steps):
        fn()
    return (time.process_time() - start) / steps * 1e6


def small_model(repeats: int) -> None:
    """IVON's own work per step on the demo's MLP 64-128-10 (4 tensors, 9,610 parameters,
    batch 128), where Python dispatch, not arithmetic, takes most of the time: drawing the
    sample, recording the gradient on exit, and ``step()``; beside it fused AdamW's ``step()``
    and the forward and backward pass, in the same rounds (medians of CPU time per step)."""
    torch.manual_seed(0)
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    ivon = IVON(model.parameters(), lr=0.2, ess=1200.0, hess_init=0.5)
    adam_model = copy.deepcopy(model)  # AdamW steps its own copy, with the same gradients
    adamw = torch.optim.AdamW(adam_model.parameters(), lr=1e-3, fused=True)

    def forward_backward() -> None:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()

    def ivon_only() -> None:  # gradients stay from the last backward
        with ivon.sampled_params(train=True):
            pass
        ivon.step()

    cases = {"IVON sample + record + step()": ivon_only, "AdamW(fused).step()": adamw.step,
             "forward + backward": forward_backward}  # fmt: skip
    forward_backward()
    for p, q in zip(model.parameters(), adam_model.parameters(), strict=True):
        q.grad = p.grad.clone()
    for fn in cases.values():
        cpu_us(fn, 50)  # warm-up: state, buffers, the native library
    rounds = [{name: cpu_us(fn, 200) for name, fn in cases.items()} for _ in range(repeats)]
    print(f"MLP 64-128-10, batch 128, 1 thread, CPU time per step, medians of {repeats} "
          f"rounds x 200 steps")  # fmt: skip
    for name in cases:
        print(f"{name:32} {statistics.median(r[name] for r in rounds):7.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="time the demo's small MLP only")
    parser.add_argument(
        "--official",
        action="store_true",
        help="also time the official ivon-opt package if installed (a dev-only comparison)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.small:
        small_model(args.repeats)
        return
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

    def torch_noise() -> None:
        noise.normal_(generator=generator)

    def native_noise() -> None:
        _ivon_native.normal_(noise, (1, 2), 0)

    def pytorch_path(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with _native.disabled():
                fn()

        return run

    reps = {"steps": args.steps, "repeats": args.repeats}
    backend = "native" if _ivon_native.kernels() is not None else "pytorch (no native kernels)"
    rows = [
        (f"full step, IVON {backend}", compare(adam_full, ivon_full, **reps)),
        (f"optimizer only, IVON {backend}", compare(adamw.step, ivon_optimizer_only, **reps)),
        ("full step, IVON pytorch", compare(adam_full, pytorch_path(ivon_full), **reps)),
        ("optimizer only, IVON pytorch",
         compare(adamw.step, pytorch_path(ivon_optimizer_only), **reps)),
    ]  # fmt: skip

    setup = f"batch 128, 1 thread, torch {torch.__version__}"
    print(f"MLP 784-2048-2048-10, {n_params:,} parameters, {setup}; "
          f"medians of {args.repeats} rounds x {args.steps} steps")  # fmt: skip
    for name, (adam_ms, ivon_ms, ratio) in rows:
        print(f"{name:32} AdamW({kind}) {adam_ms:7.1f} ms   IVON {ivon_ms:7.1f} ms"
              f"   ratio {ratio:.2f}x")  # fmt: skip
    if _ivon_native.kernels() is not None:
        torch_ms, native_ms, speedup = compare(torch_noise, native_noise, **reps)
        print(f"Gaussian draw of {n_params:,} floats: torch normal_ {torch_ms:.1f} ms, native "
              f"Philox + Box-Muller {native_ms:.1f} ms ({1 / speedup:.1f}x faster)")  # fmt: skip
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
    print(f"{'full step, official ivon-opt':32} AdamW         {adam_ms:7.1f} ms   "
          f"IVON {official_ms:7.1f} ms   ratio {ratio:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
