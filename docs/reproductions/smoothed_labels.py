"""Reproductions, claim 4 (004's Fig. 4): IVON's smoothed labels beside LS and online smoothing.

Run: ``.venv/bin/python docs/reproductions/smoothed_labels.py`` (``SMOOTHLAB_DATA`` must hold
MNIST; ``../shared/datasets`` is used when it exists). Writes ``smoothed_labels.png``/``.svg``
next to this file and prints the numbers quoted in ``docs/reproductions.md``.

Yang et al. (2025, Sec. 4.2, Fig. 4) compare the average smoothed label of each class under IVON
(the label noise its posterior induces, Eq. 10), uniform label smoothing and online label
smoothing (OLS, Zhang et al. 2021), and find IVON's distribution "surprisingly similar" to OLS's,
with stronger noise. An MLP 784-256-10 is trained on 10,000 clean MNIST images for 10 epochs
(batch 50) with each method: LS r = 0.1 and OLS (alpha = 0.5) with SGD (lr 0.05, momentum 0.9,
steps at epochs 5 and 8), IVON with the paper's recipe (lr 0.2, one-epoch warm-up then cosine,
h0 0.9, beta2 1 - 1e-5, weight decay 1e-3) at ess = N as in the paper, and at ess = N / 100 (a
100x wider posterior). IVON's noise is estimated on the training images with 64 posterior
samples (:func:`smoothlab.analysis.predictive_label_noise`); the matrices are
:func:`smoothlab.analysis.class_smoothed_labels`, drawn with
:func:`smoothlab.plots.smoothed_label_maps`. Similarity to OLS is the Pearson correlation of the
off-diagonal entries of S. Then both IVON runs are repeated on labels with 40 % pair-flip noise,
and the noise on the given label is split by whether that label is clean or flipped: the
adaptive-smoothing reading predicts that flipped labels get the most smoothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothlab import label_smoothing_cross_entropy, plots, schedules
from smoothlab.analysis import (
    class_smoothed_labels,
    noise_magnitude,
    online_smoothing_label_noise,
    predictive_label_noise,
    smoothing_label_noise,
)
from smoothlab.datasets import load_dataset
from smoothlab.noise import noise_kind
from smoothlab.online import OnlineLabelSmoothingLoss
from smoothlab.optim import IVON

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "datasets"
EPOCHS, BATCH = 10, 50


def load() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """10,000 MNIST training images (x / 255 minus their mean) and the test set."""
    root = os.environ.get("SMOOTHLAB_DATA") or (str(SHARED) if SHARED.is_dir() else None)
    mnist = load_dataset("mnist", root=root)
    keep = torch.randperm(60000, generator=torch.Generator().manual_seed(0))[:10000]
    x, y = mnist.x_train[keep].flatten(1) / 255, mnist.y_train[keep]
    mean = x.mean(0)
    return x - mean, y, mnist.x_test.flatten(1) / 255 - mean, mnist.y_test


def train(method: str, x: Tensor, y: Tensor, ess: float = 0.0) -> tuple[nn.Module, object]:
    """Train one model; return it with its IVON optimizer or OLS loss (None for LS)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    steps = (len(y) + BATCH - 1) // BATCH
    if method == "ivon":
        opt: torch.optim.Optimizer = IVON(
            model.parameters(), lr=0.2, ess=ess, hess_init=0.9, beta2=1 - 1e-5,
            weight_decay=1e-3, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        warm = schedules.linear(0.0, 0.2, steps, begin=0)
        lr = schedules.join([warm, schedules.cosine(0.2, (EPOCHS - 1) * steps)], [steps])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        lr = schedules.step(0.05, [5 * steps, 8 * steps], 0.1)
    ols = OnlineLabelSmoothingLoss(10, alpha=0.5) if method == "ols" else None
    order = torch.Generator().manual_seed(0)
    for epoch in range(EPOCHS):
        for b, index in enumerate(torch.randperm(len(y), generator=order).split(BATCH)):
            for group in opt.param_groups:
                group["lr"] = lr(epoch * steps + b)
            opt.zero_grad()
            if isinstance(opt, IVON):
                with opt.sampled_params(train=True):
                    F.cross_entropy(model(x[index]), y[index]).backward()
            else:
                logits = model(x[index])
                loss = ols(logits, y[index]) if ols is not None else (
                    label_smoothing_cross_entropy(logits, y[index], 0.1))  # fmt: skip
                loss.backward()
            opt.step()
        if ols is not None:
            ols.next_epoch()
    return model, opt if method == "ivon" else ols


def off_diagonal_correlation(a: Tensor, b: Tensor) -> float:
    mask = ~torch.eye(a.shape[0], dtype=torch.bool)
    return float(torch.corrcoef(torch.stack([a[mask], b[mask]]))[0, 1])


def ivon_noise(model: nn.Module, opt: IVON, x: Tensor) -> Tensor:
    gen = torch.Generator().manual_seed(1)
    return predictive_label_noise(model, opt, x, n_samples=64, generator=gen).noise.double()


def noisy_labels(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """40 % pair-flip noise (each class to the next); returns the labels and the flipped mask."""
    noisy = noise_kind("pairflip").build(y, 0.4, num_classes=10, features=x,
                                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    return noisy, noisy != y


def main() -> None:
    torch.set_num_threads(1)
    x, y, x_test, y_test = load()
    matrices: dict[str, Tensor] = {}
    n = float(len(y))
    runs = [("LS r=0.1", "ls", 0.0), ("OLS", "ols", 0.0), ("IVON ess=N", "ivon", n),
            ("IVON ess=N/100", "ivon", n / 100)]  # fmt: skip
    for name, method, ess in runs:
        model, state = train(method, x, y, ess)
        with torch.no_grad():
            accuracy = float((model(x_test).argmax(1) == y_test).double().mean())
        if isinstance(state, IVON):
            noise = ivon_noise(model, state, x)
        elif isinstance(state, OnlineLabelSmoothingLoss):
            noise = online_smoothing_label_noise(y, state.soft_labels, alpha=state.alpha)
        else:
            noise = smoothing_label_noise(y, 10, 0.1)
        matrices[name] = s = class_smoothed_labels(y, noise.double())
        m = noise_magnitude(noise)
        off = s[~torch.eye(10, dtype=torch.bool)]
        print(f"{name}: test accuracy {accuracy:.4f}; |eps| mean {m.mean():.4f}, "
              f"median {m.median():.4f}, max {m.max():.4f}; mean S_cc {s.diagonal().mean():.4f}; "
              f"off-diagonal S < 0: {(off < 0).double().mean():.2f}")  # fmt: skip
    for name in ("IVON ess=N", "IVON ess=N/100"):
        r = off_diagonal_correlation(matrices[name], matrices["OLS"])
        print(f"correlation of off-diagonal S with OLS's: {name} {r:.3f}")
    figure = plots.smoothed_label_maps(matrices, title="average label noise per class, MNIST")
    plots.save_figure(figure, HERE / "smoothed_labels")
    noisy, flipped = noisy_labels(x, y)
    for name, ess in (("IVON ess=N", n), ("IVON ess=N/100", n / 100)):
        model, opt = train("ivon", x, noisy, ess)
        assert isinstance(opt, IVON)
        with torch.no_grad():
            accuracy = float((model(x_test).argmax(1) == y_test).double().mean())
        given = ivon_noise(model, opt, x).gather(1, noisy.unsqueeze(1)).squeeze(1)
        print(f"{name}, 40 % pair-flip: test accuracy {accuracy:.4f}; noise on the given label: "
              f"clean {given[~flipped].mean():+.4f}, flipped {given[flipped].mean():+.4f}; "
              f"share < 0: clean {(given[~flipped] < 0).double().mean():.2f}, "
              f"flipped {(given[flipped] < 0).double().mean():.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
