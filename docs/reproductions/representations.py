"""Reproductions, claim 5 and the seeds' figures: what label smoothing does to representations.

Run: ``.venv/bin/python docs/reproductions/representations.py`` (``SMOOTHLAB_DATA`` must hold
Fashion-MNIST; ``../shared/datasets`` is used when it exists). Writes PNG + SVG figures next to
this file and prints the numbers quoted in ``docs/reproductions.md``.

- Mueller, Kornblith & Hinton (NeurIPS 2019): with label smoothing the penultimate-layer
  activations of a class cluster tightly around its template and the templates are equidistant.
  An MLP (784-256-256-10) is trained on 10,000 Fashion-MNIST images with cross-entropy and with
  label smoothing r = 0.1 (same seed, SGD, 15 epochs); the test images of three classes are
  projected on the plane through their templates (:func:`smoothlab.plots.penultimate_projection`).
- The logit gap: at the optimum of smoothed cross-entropy the gap between the true logit and
  every other one is ``log(1 + K (1 - r) / r)`` (4.51 for K = 10, r = 0.1; the r/K convention,
  :func:`smoothlab.theory.optimal_logit_gap`); cross-entropy's grows without bound. Measured on
  the training set with :func:`smoothlab.analysis.model_logit_gaps`.
- 000's Fig. 1 (barycentric loss maps of smoothing and relaxation on the 3-class simplex) and 004's
  Fig. 2 (label-noise magnitude against the mean logit at unit variance), from the library.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from smoothlab import label_smoothing_cross_entropy, plots
from smoothlab.analysis import model_logit_gaps
from smoothlab.datasets import load_dataset
from smoothlab.theory import optimal_logit_gap

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "datasets"
CLASSES = (0, 1, 2)  # T-shirt/top, Trouser, Pullover


def train(smoothing: float, x: torch.Tensor, y: torch.Tensor, epochs: int = 15) -> nn.Sequential:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
    model = nn.Sequential(body, nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    order = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for index in torch.randperm(len(y), generator=order).split(64):
            opt.zero_grad()
            label_smoothing_cross_entropy(model(x[index]), y[index], smoothing).backward()
            opt.step()
    return model


def main() -> None:
    torch.set_num_threads(1)
    root = os.environ.get("SMOOTHLAB_DATA") or (str(SHARED) if SHARED.is_dir() else None)
    data = load_dataset("fashion-mnist", root=root)
    keep = torch.randperm(60000, generator=torch.Generator().manual_seed(0))[:10000]
    x, y = data.x_train[keep].flatten(1) / 255, data.y_train[keep]
    mean = x.mean(0)
    x, x_test = x - mean, data.x_test.flatten(1) / 255 - mean
    names = [data.class_names[k] for k in CLASSES]
    chosen = torch.isin(data.y_test, torch.tensor(CLASSES))
    for smoothing, tag in ((0.0, "ce"), (0.1, "ls")):
        model = train(smoothing, x, y)
        with torch.no_grad():
            features = model[0](x_test[chosen])
            accuracy = float((model(x_test).argmax(1) == data.y_test).double().mean())
            nll = float(F.cross_entropy(model(x_test), data.y_test))
        gaps = model_logit_gaps(model, x, y)
        print(f"{tag}: test accuracy {accuracy:.4f}, NLL {nll:.3f}; training logit gap "
              f"median {gaps.median():.2f}, mean {gaps.mean():.2f}")  # fmt: skip
        title = "cross-entropy" if tag == "ce" else "label smoothing r = 0.1"
        figure = plots.penultimate_projection(
            features, data.y_test[chosen], model[1].weight.detach(), CLASSES,
            class_names=names, title=title,
        )  # fmt: skip
        plots.save_figure(figure, HERE / f"projection_{tag}")
    print(
        f"optimal gap log(1 + K (1 - r) / r) at r = 0.1, K = 10: {optimal_logit_gap(0.1, 10):.2f}"
    )
    for loss, rate in (("ls", 0.25), ("relaxation", 0.25)):
        plots.save_figure(plots.simplex_loss_map(loss, rate=rate), HERE / f"simplex_{loss}")
    plots.save_figure(plots.label_noise_vs_mean_logit(), HERE / "noise_vs_mean_logit")
    print("figures:", ", ".join(sorted(p.name for p in HERE.glob("*.png"))))
    assert math.isfinite(nll)


if __name__ == "__main__":
    main()
