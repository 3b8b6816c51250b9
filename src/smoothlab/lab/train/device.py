"""How a run uses its device: the training set resident on a GPU, bf16 autocast, channels_last
memory for convolutions, and ``torch.compile``; on a CPU in fp32 the model is used as it is.

A GPU step of a small network is short, so what a loop does around it matters: copying each
batch from the host, a ``float(loss)`` per step (which waits for the GPU), a float32 forward
where bf16 would do. Here the training set moves to the GPU once when it fits
(:data:`RESIDENT_BYTES`) and each batch is picked there by an epoch's order copied once; what
still crosses per step (a batch of a training set kept on the host, augmentation offsets,
the batch's indices) goes through pinned memory, whose copies do not wait for the device
(:func:`to_device`, :func:`gather`). The training forward runs under ``torch.autocast`` in bf16 when
``train.precision = "bf16"`` (logits are returned in float32, so the loss is computed in float32),
images are fed as channels_last to convolutional models on CUDA, and ``train.compile`` compiles
the training forward. Evaluation uses the plain model (in fp32).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smoothlab.lab.plan.schema import TrainConfig

__all__ = [
    "RESIDENT_BYTES",
    "TrainingForward",
    "gather",
    "resident",
    "to_device",
    "training_forward",
]

#: Training sets up to this size live on the GPU for the whole run (CIFAR-10 in float32: 0.6 GB).
RESIDENT_BYTES = 4 * 1024**3


def resident(x: Tensor, device: torch.device, limit: int = RESIDENT_BYTES) -> Tensor:
    """``x`` on ``device`` when it is at most ``limit`` bytes; else on the host, pinned on CUDA
    hosts so that each batch's copy can be non-blocking.

    >>> resident(torch.zeros(3), torch.device("cpu")).device
    device(type='cpu')
    """
    if device.type == "cpu":
        return x
    if x.element_size() * x.nelement() <= limit:
        return x.to(device)
    return x.pin_memory() if device.type == "cuda" else x


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """Host tensor ``x`` on ``device`` without waiting for the device: on CUDA through pinned
    memory, whose copy is queued like a kernel (a copy from pageable memory first waits for
    every kernel queued before it). Per-step draws (batch indices, augmentation offsets) go
    this way.

    >>> to_device(torch.arange(3), torch.device("cpu"))
    tensor([0, 1, 2])
    """
    if x.device == device:
        return x
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def gather(source: Tensor, index: Tensor, device: torch.device) -> Tensor:
    """Rows ``index`` of ``source`` (a training set from :func:`resident`) on ``device``:
    picked on the device when ``source`` and ``index`` are there; from a pinned host copy,
    gathered into pinned memory and copied without waiting (:func:`to_device`).

    >>> gather(torch.arange(10).view(5, 2), torch.tensor([4, 0]), torch.device("cpu"))
    tensor([[8, 9],
            [0, 1]])
    """
    if source.device == device:
        return source[to_device(index, device)]
    if not source.is_pinned():
        return source[index].to(device)
    rows = torch.empty((len(index), *source.shape[1:]), dtype=source.dtype, pin_memory=True)
    torch.index_select(source, 0, index, out=rows)
    return rows.to(device, non_blocking=True)


class TrainingForward(nn.Module):
    """``model``'s forward under bf16 autocast (``bf16``), with channels_last images
    (``channels_last``); float32 logits out. Shares ``model``'s parameters.

    >>> forward = TrainingForward(nn.Linear(2, 3), bf16=True, channels_last=False)
    >>> forward(torch.ones(1, 2)).dtype
    torch.float32
    """

    def __init__(self, model: nn.Module, bf16: bool, channels_last: bool) -> None:
        super().__init__()
        self.model, self.bf16, self.channels_last = model, bf16, channels_last

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(x)
        return logits.float()  # type: ignore[no-any-return]


def training_forward(model: nn.Module, train: TrainConfig, device: torch.device) -> nn.Module:
    """What the training step calls: ``model`` itself (fp32, no compile), or a
    :class:`TrainingForward` around it, compiled when ``train.compile``."""
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    channels_last = device.type == "cuda" and convolutional
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    forward: nn.Module = model
    if train.precision == "bf16" or channels_last:
        forward = TrainingForward(model, train.precision == "bf16", channels_last)
    if train.compile:
        forward = torch.compile(forward)  # type: ignore[assignment]
    return forward
