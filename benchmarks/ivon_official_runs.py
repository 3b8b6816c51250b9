"""smoothlab's IVON against the official ``ivon-opt`` on whole training runs, not one step.

Run: ``.venv/bin/python benchmarks/ivon_official_runs.py`` (``--epochs``, ``--seeds``,
``--noise pairflip:0.4``, ``--subset``; ``SMOOTHLAB_DATA`` must hold MNIST, ``../shared/datasets``
is used when it exists).

Both optimizers train the same MLP (784-256-10) from the same initial weights on the same batches
with the same hyperparameters (the variational-learning paper's, App. C: lr 0.2 with a linear
warm-up of one epoch then cosine to zero, h0 0.9, beta2 1 - 1e-5, weight decay 1e-3, momentum
0.9, ess = training-set size, batch 50, one MC sample). Their weight noise differs (each draws
its own), so runs agree in distribution, not bit for bit. The script prints, per optimizer, the
mean and standard deviation over seeds of the clean-test accuracy and NLL at the posterior mean,
and of the posterior predictive (``--test-samples`` weight samples, softmax averaged), and the
mean |difference| between the two optimizers' per-epoch accuracy curves.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothlab.datasets import load_dataset
from smoothlab.noise import noise_kind
from smoothlab.optim import IVON

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def data(subset: int, noise: str, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MNIST: ``subset`` training images with noisy labels, the clean test set; x / 255 minus
    the training mean."""
    root = os.environ.get("SMOOTHLAB_DATA") or (str(SHARED) if SHARED.is_dir() else None)
    mnist = load_dataset("mnist", root=root)
    keep = torch.randperm(len(mnist.y_train), generator=torch.Generator().manual_seed(0))[:subset]
    x, y = mnist.x_train[keep].flatten(1) / 255, mnist.y_train[keep]
    mean = x.mean(0)
    kind, _, rate = noise.partition(":")
    if kind != "none":
        g = torch.Generator().manual_seed(seed)
        y = noise_kind(kind).build(y, float(rate), num_classes=10, features=x, generator=g)
    return x - mean, y, mnist.x_test.flatten(1) / 255 - mean, mnist.y_test


def schedule(lr: float, epochs: int, steps: int) -> Callable[[int], float]:
    """Linear warm-up over the first epoch, then cosine to zero."""
    total, warm = epochs * steps, steps

    def at(step: int) -> float:
        if step < warm:
            return lr * (step + 1) / warm
        return 0.5 * lr * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))

    return at


@torch.no_grad()
def evaluate(
    model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, samples: int
) -> tuple[float, float, float]:
    """Accuracy and NLL at the mean, accuracy of the posterior predictive."""
    logits = model(x)
    acc, nll = float((logits.argmax(1) == y).double().mean()), float(F.cross_entropy(logits, y))
    probs = torch.zeros_like(logits)
    for _ in range(samples):
        with opt.sampled_params():  # type: ignore[attr-defined]
            probs += torch.softmax(model(x), 1) / samples
    return acc, nll, float((probs.argmax(1) == y).double().mean())


def train(which: str, seed: int, args: argparse.Namespace) -> list[tuple[float, float, float]]:
    x, y, x_test, y_test = data(args.subset, args.noise, seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    hyper = dict(
        lr=0.2, ess=float(len(y)), hess_init=0.9, beta1=0.9, beta2=1 - 1e-5, weight_decay=1e-3
    )
    if which == "smoothlab":
        opt: torch.optim.Optimizer = IVON(
            model.parameters(), **hyper, generator=torch.Generator().manual_seed(seed)
        )  # type: ignore[arg-type]
    else:
        import ivon  # the official implementation (dev extra), a test oracle only

        torch.manual_seed(seed + 1000)  # its weight noise comes from the global generator
        opt = ivon.IVON(model.parameters(), **hyper)
    steps = math.ceil(len(y) / 50)
    lr = schedule(0.2, args.epochs, steps)
    order_gen = torch.Generator().manual_seed(seed)
    curve = []
    for epoch in range(args.epochs):
        order = torch.randperm(len(y), generator=order_gen)
        for b in range(steps):
            index = order[b * 50 : (b + 1) * 50]
            for group in opt.param_groups:
                group["lr"] = lr(epoch * steps + b)
            with opt.sampled_params(train=True):  # type: ignore[attr-defined]
                opt.zero_grad()
                F.cross_entropy(model(x[index]), y[index]).backward()
            opt.step()
        curve.append(evaluate(model, opt, x_test, y_test, args.test_samples))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--noise", default="pairflip:0.4", help="none, or kind:rate")
    parser.add_argument("--test-samples", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    curves = {w: [train(w, s, args) for s in range(args.seeds)] for w in ("smoothlab", "official")}
    print(f"MNIST {args.subset}, {args.noise}, {args.epochs} epochs, {args.seeds} seeds")
    print(f"{'optimizer':10} {'acc (mean)':>16} {'NLL (mean)':>16} {'acc (predictive)':>18}")
    for which, runs in curves.items():
        cells = []
        for k in range(3):
            final = [run[-1][k] for run in runs]
            spread = statistics.stdev(final) if len(final) > 1 else 0.0
            cells.append(f"{statistics.mean(final):.4f} ± {spread:.4f}")
        print(f"{which:10} {cells[0]:>16} {cells[1]:>16} {cells[2]:>18}")
    gaps = [
        abs(
            statistics.mean(r[e][0] for r in curves["smoothlab"])
            - statistics.mean(r[e][0] for r in curves["official"])
        )
        for e in range(args.epochs)
    ]
    print(f"mean |accuracy difference| over epochs: {statistics.mean(gaps):.4f}")


if __name__ == "__main__":
    main()
