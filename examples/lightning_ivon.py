"""Lightning + IVON + online label smoothing: train, checkpoint, resume, predict.

A LightningModule trains a small MLP on noisy Gaussian blobs with
:class:`smoothlab.OnlineLabelSmoothingLoss` (advanced each epoch by
:class:`smoothlab.integrations.lightning.OnlineLabelSmoothingCallback`) and
:class:`smoothlab.optim.IVON`, which Lightning drives through its closure like any optimizer.
The script trains once without interruption, then again in two halves through a checkpoint,
checks that both runs end with the same weights bit for bit, and predicts with the posterior
predictive. Needs ``pip install smoothlab[lightning]``; runs in seconds on one CPU core::

    python examples/lightning_ivon.py
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from smoothlab import OnlineLabelSmoothingLoss
from smoothlab.integrations.lightning import OnlineLabelSmoothingCallback
from smoothlab.optim import IVON

CLASSES, FEATURES, N_TRAIN = 4, 8, 512


def blobs(n: int, seed: int, noise: float = 0.0) -> TensorDataset:
    """Gaussian class blobs; a fraction ``noise`` of the labels replaced by random ones."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = centres[y] + 0.9 * torch.randn(n, FEATURES, generator=g)
    flip = torch.rand(n, generator=g) < noise
    return TensorDataset(x, torch.where(flip, torch.randint(0, CLASSES, (n,), generator=g), y))


class EpochShuffle(Sampler[int]):
    """A new permutation each epoch, seeded by the epoch (Lightning calls ``set_epoch``), so a
    resumed run sees the same batches as an uninterrupted one."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES))
        # a submodule: Lightning checkpoints its soft labels and eval() stops its accumulation
        self.loss_fn = OnlineLabelSmoothingLoss(CLASSES, alpha=0.5)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss: Tensor = self.loss_fn(self.net(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> IVON:
        # ess: the training-set size; the generator makes the weight noise repeatable
        self.ivon = IVON(self.net.parameters(), lr=0.2, ess=N_TRAIN,
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
        return self.ivon

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        # average the softmax over 16 weight samples of IVON's posterior
        out = self.ivon.predict(self.net, batch[0], n_samples=16,
                                generator=torch.Generator().manual_seed(batch_idx))  # fmt: skip
        return out.predictive


def fit(epochs: int, root: Path, resume: Path | None = None) -> tuple[Classifier, pl.Trainer]:
    torch.manual_seed(0)  # the script owns global state (initial weights); smoothlab never seeds
    model = Classifier()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        default_root_dir=root,
        callbacks=[
            OnlineLabelSmoothingCallback(),
            pl.callbacks.ModelCheckpoint(dirpath=root, save_last=True),
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = blobs(N_TRAIN, seed=1, noise=0.2)
    loader = DataLoader(data, batch_size=64, sampler=EpochShuffle(len(data)))
    trainer.fit(model, loader, ckpt_path=resume)
    return model, trainer


def main(epochs: int = 6, workdir: Path | None = None) -> None:
    torch.set_num_threads(1)  # the same thread count in every run: bitwise resumes
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no banners
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
        for chatter in ("does not have many workers", "LeafSpec", "exists and is not empty"):
            warnings.filterwarnings("ignore", f".*{chatter}.*")
        root = Path(workdir or scratch)
        straight, _ = fit(epochs, root / "straight")
        fit(epochs // 2, root / "halves")
        checkpoint = root / "halves" / "last.ckpt"
        resumed, trainer = fit(epochs, root / "halves", resume=checkpoint)
        pairs = zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
        same = all(torch.equal(a, b) for a, b in pairs)
        print(f"\n{epochs} epochs, checkpoint after epoch {epochs // 2}, then resumed")
        print(f"resumed run equals the uninterrupted run bit for bit: {same}")
        test = blobs(1024, seed=2)
        probs = torch.cat(trainer.predict(resumed, DataLoader(test, batch_size=256)))
        with torch.no_grad():
            at_mean = resumed.net(test.tensors[0]).argmax(1)
        labels = test.tensors[1]
        print(f"test accuracy (trained on 20% noisy labels): posterior predictive "
              f"{(probs.argmax(1) == labels).float().mean():.3f}, mean weights "
              f"{(at_mean == labels).float().mean():.3f}")  # fmt: skip
        print(f"soft label row of class 0 after training: {resumed.loss_fn.soft_labels[0]}")


if __name__ == "__main__":
    main()
