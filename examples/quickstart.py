"""Quick start: cross-entropy and three smoothlab losses on digits with 30 % symmetric noise.

A small MLP is trained with plain cross-entropy, label smoothing, the confidence penalty and
label relaxation, each a drop-in replacement for ``F.cross_entropy`` in the same loop; the script
prints test accuracy, NLL and ECE for each. Runs in well under a minute on one CPU core::

    python examples/quickstart.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import smoothlab
from smoothlab.datasets import flatten, load_dataset, standardize, transform_features
from smoothlab.metrics import accuracy, expected_calibration_error, negative_log_likelihood
from smoothlab.noise import corrupt_labels, symmetric

Loss = Callable[[Tensor, Tensor], Tensor]

LOSSES: dict[str, Loss] = {
    "cross-entropy": F.cross_entropy,
    "label smoothing r=0.1": lambda z, y: smoothlab.label_smoothing_cross_entropy(z, y, 0.1),
    "confidence penalty b=0.5": lambda z, y: smoothlab.confidence_penalty_loss(z, y, 0.5),
    "label relaxation a=0.1": lambda z, y: smoothlab.label_relaxation_loss(z, y, 0.1),
}


def train(loss_fn: Loss, x: Tensor, y: Tensor, *, seed: int, epochs: int = 40) -> nn.Module:
    """A plain training loop: the loss function is the only thing that changes."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the example's script owns global state; the library never seeds
    model = nn.Sequential(nn.Linear(x.shape[1], 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=g).split(64):
            opt.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            opt.step()
    return model


def main(epochs: int = 40) -> None:
    torch.set_num_threads(1)
    data, _ = standardize(transform_features(load_dataset("digits"), flatten))
    noisy = corrupt_labels(
        data.y_train, symmetric(10, 0.3), generator=torch.Generator().manual_seed(0), exact=True
    )
    print(
        f"digits: {len(data.y_train)} train / {len(data.y_test)} test, 10 classes; "
        f"{(noisy != data.y_train).float().mean():.0%} of training labels flipped\n"
    )
    print(f"{'loss':<28}{'accuracy':>10}{'NLL':>8}{'ECE':>8}{'time':>8}")
    for name, loss_fn in LOSSES.items():
        start = time.perf_counter()
        model = train(loss_fn, data.x_train, noisy, seed=1, epochs=epochs)
        with torch.no_grad():
            probs = torch.softmax(model(data.x_test).double(), dim=1)  # float64: no 0 underflow
        acc = accuracy(probs, data.y_test)
        nll = negative_log_likelihood(probs, data.y_test)
        ece = expected_calibration_error(probs, data.y_test)
        print(f"{name:<28}{acc:>10.3f}{nll:>8.3f}{ece:>8.3f}{time.perf_counter() - start:>7.1f}s")


if __name__ == "__main__":
    main()
