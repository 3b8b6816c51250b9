"""HF ``Trainer`` with a smoothlab loss on ``(N, V, T)`` token logits and ``-100`` padding.

A tiny GRU language model (defined here; nothing is downloaded) learns to continue arithmetic
sequences of tokens (start and stride drawn per sequence, lengths varying, padding labelled
``-100``). The loss is :func:`smoothlab.label_smoothing_cross_entropy` on logits moved to
PyTorch's class dimension, ``(N, V, T)``; it is summed and divided by ``Trainer``'s count of
labelled tokens, so gradient accumulation weighs every token alike. The optimizer is
:class:`smoothlab.optim.IVON` with :class:`smoothlab.integrations.hf.IVONCallback` (and
``Trainer``'s default ``max_grad_norm=1.0``, which IVON honours). Needs
``pip install smoothlab[hf]``; runs in seconds on one CPU core::

    python examples/hf_trainer_tokens.py
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import Tensor, nn

import smoothlab
from smoothlab.integrations.hf import IVONCallback
from smoothlab.optim import IVON

VOCAB, LENGTH, PAD = 16, 12, 0  # tokens 1..15 wrap around; 0 pads the inputs


def sequences(n: int, seed: int) -> list[dict[str, Tensor]]:
    """Arithmetic sequences modulo 15 over tokens 1..15; each label is the next token."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB - 1, (n, 1), generator=g)
    stride = torch.randint(1, 4, (n, 1), generator=g)
    tokens = (start + stride * torch.arange(LENGTH + 1)) % (VOCAB - 1) + 1
    lengths = torch.randint(LENGTH // 2, LENGTH + 1, (n,), generator=g)
    pad = torch.arange(LENGTH) >= lengths[:, None]
    inputs = tokens[:, :-1].masked_fill(pad, PAD)
    labels = tokens[:, 1:].masked_fill(pad, -100)  # padding: no loss, no accuracy
    return [{"input_ids": x, "labels": y} for x, y in zip(inputs, labels, strict=True)]


class TinyLM(nn.Module):
    """Embedding, one GRU layer, a linear head: ``(N, T)`` token ids to ``(N, T, V)`` logits."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, VOCAB)

    def forward(self, input_ids: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        hidden, _ = self.gru(self.embed(input_ids))
        return {"logits": self.head(hidden)}


def token_loss(
    outputs: dict[str, Tensor], labels: Tensor, num_items_in_batch: Any = None
) -> Tensor:
    """Label smoothing 0.1 per token; ``(N, T, V)`` logits become ``(N, V, T)``."""
    logits = outputs["logits"].transpose(1, 2)
    if num_items_in_batch is None:  # evaluation: the batch's mean over labelled tokens
        return smoothlab.label_smoothing_cross_entropy(logits, labels, 0.1)
    total = smoothlab.label_smoothing_cross_entropy(logits, labels, 0.1, reduction="sum")
    return total / num_items_in_batch


def token_accuracy(model: nn.Module, data: list[dict[str, Tensor]]) -> float:
    inputs = torch.stack([d["input_ids"] for d in data])
    labels = torch.stack([d["labels"] for d in data])
    with torch.no_grad():
        predicted = model(inputs)["logits"].argmax(-1)
    labelled = labels != -100
    return float((predicted == labels)[labelled].float().mean())


def main(epochs: int = 8, workdir: Path | None = None) -> dict[str, float]:
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the script owns global state (initial weights); smoothlab never seeds
    transformers.logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    train, test = sequences(768, seed=1), sequences(256, seed=2)
    model = TinyLM()
    ivon = IVON(
        model.parameters(), lr=1.0, ess=len(train), generator=torch.Generator().manual_seed(0)
    )
    with tempfile.TemporaryDirectory() as scratch:
        args = transformers.TrainingArguments(
            output_dir=str(workdir or scratch),
            num_train_epochs=epochs,
            per_device_train_batch_size=64,
            gradient_accumulation_steps=2,  # tokens weighted alike across micro-batches
            lr_scheduler_type="constant",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = transformers.Trainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=test,
            optimizers=(ivon, None),
            callbacks=[IVONCallback()],
            compute_loss_func=token_loss,
        )
        trainer.remove_callback(transformers.PrinterCallback)  # no log dicts on stdout
        before = trainer.evaluate()["eval_loss"]
        trainer.train()
        after = trainer.evaluate()["eval_loss"]
    model.eval()
    result = {"loss_before": before, "loss_after": after, "accuracy": token_accuracy(model, test)}
    print(f"test loss (label smoothing 0.1, padding ignored): {before:.3f} -> {after:.3f}")
    print(f"next-token accuracy on labelled test tokens: {result['accuracy']:.3f}")
    return result


if __name__ == "__main__":
    main()
