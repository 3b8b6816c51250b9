"""The seeds' convolutional networks for CIFAR-sized images, in plain PyTorch (no torchvision).

- :class:`CifarResNet`: ResNet-18 / ResNet-34 in their CIFAR form (3x3 stem, no max-pool; He et
  al. 2016), basic blocks in four stages of 64-512 channels. ResNet-18 is TSLA's (001) CIFAR-100
  network, ResNet-34 the variational-learning paper's (004, App. C).
- :class:`VGG16BN`: VGG16 with batch norm after every convolution and dropout between the
  convolutions of a block (0.3 after the network's first convolution, 0.4 after the others,
  0.5 before each classifier layer) and a 512-unit classifier: the CIFAR adaptation that the
  label relaxation supplement (000, A.2.3) describes ("dropout from 0.3 to 0.5 for increasing
  depth"), with the published 15.0M weights.
- :class:`DenseNetBC`: DenseNet-BC (Huang et al. 2017) with bottlenecks and compression 0.5;
  depth 100 and growth rate 12 is the supplement's (A.2.4), 0.8M parameters.
- :class:`CNN3`: three 3x3 convolution layers (32, 64, 128 channels, each followed by ReLU and
  2x2 max-pooling) and a linear classifier, for 004's Fig. 3 on MNIST. The paper says only
  "3-layers convolutional neural network"; this is the plain reading of it.

Every model takes inputs of shape ``(N, C, H, W)`` (or flat rows it can reshape to a square).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "CNN3",
    "VGG16BN",
    "BasicBlock",
    "CifarResNet",
    "DenseNetBC",
    "from_torchvision_resnet",
    "image_shape",
]


def image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) from an input shape: images as they are, flat square inputs as one channel.

    >>> image_shape((3, 32, 32)), image_shape((28, 28)), image_shape((784,))
    ((3, 32, 32), (1, 28, 28), (1, 28, 28))
    """
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2])
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    side = math.isqrt(math.prod(shape))
    if side * side != math.prod(shape):
        raise ValueError(f"`input shape` must be an image or a square, got {tuple(shape)}")
    return (1, side, side)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with batch norm and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.relu(self.body(x) + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem, four stages of basic blocks (64, 128, 256, 512 channels).

    ``blocks = (2, 2, 2, 2)`` is ResNet-18 (11.2M parameters at 10 classes), ``(3, 4, 6, 3)``
    ResNet-34 (21.3M). With ``imagenet_stem`` it is the ImageNet ResNet (He et al. 2016, Table
    1): 11,689,512 parameters for ResNet-18 at 1000 classes, torchvision's count, so that
    weights converted with :func:`from_torchvision_resnet` fit.

    >>> sum(p.numel() for p in CifarResNet((3, 32, 32), 10, (3, 4, 6, 3)).parameters())
    21282122
    """

    def __init__(
        self,
        shape: Sequence[int],
        num_classes: int,
        blocks: Sequence[int],
        imagenet_stem: bool = False,
    ) -> None:
        super().__init__()
        self.shape = image_shape(shape)
        # ImageNet's stem (7x7 stride-2 convolution, then 3x3 stride-2 max-pool) for 224-pixel
        # images and ImageNet-pretrained weights; CIFAR's keeps 32 pixels at full resolution
        stem = (7, 2, 3) if imagenet_stem else (3, 1, 1)
        layers: list[nn.Module] = [
            nn.Conv2d(self.shape[0], 64, *stem, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        ]
        if imagenet_stem:
            layers.append(nn.MaxPool2d(3, 2, 1))
        cin = 64
        for (cout, stride), count in zip(
            ((64, 1), (128, 2), (256, 2), (512, 2)), blocks, strict=True
        ):
            layers.append(BasicBlock(cin, cout, stride))
            layers += [BasicBlock(cout, cout, 1) for _ in range(count - 1)]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, *self.shape))  # type: ignore[no-any-return]


#: VGG16's convolution widths, "M" for 2x2 max-pooling.
VGG16_LAYERS: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


class VGG16BN(nn.Module):
    """VGG16 with batch norm and dropout for 32x32 images, and a 512-unit classifier.

    Counting batch-norm statistics as Keras does, it has the published 15,001,418 weights at 10
    classes (14,991,946 trainable parameters in PyTorch, which keeps the statistics as buffers).

    >>> sum(p.numel() for p in VGG16BN((3, 32, 32), 10).parameters())
    14991946
    """

    def __init__(self, shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.shape = image_shape(shape)
        layers: list[nn.Module] = []
        cin = self.shape[0]
        for item in VGG16_LAYERS:
            if item == "M":
                layers[-1:] = [nn.MaxPool2d(2)]  # the block's last dropout gives way to pooling
                continue
            cout = int(item)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(cout)]
            layers.append(nn.Dropout(0.3 if not layers[4:] else 0.4))
            cin = cout
        side = self.shape[1] // 32
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Dropout(0.5))
        self.classifier = nn.Sequential(
            nn.Linear(512 * side * side, 512),
            nn.ReLU(),
            nn.BatchNorm1d(512),
            nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x.reshape(-1, *self.shape)))  # type: ignore[no-any-return]


class _DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (4k channels), BN-ReLU-conv3x3 (k channels), concatenated to the input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseNetBC(nn.Module):
    """DenseNet-BC for CIFAR: three dense blocks of ``(depth - 4) / 6`` bottleneck layers.

    The stem has ``2 * growth`` channels; transitions halve channels (BN-ReLU-conv1x1) and
    resolution (2x2 average pooling). Depth 100, growth 12: 769,162 parameters at 10 classes.

    >>> sum(p.numel() for p in DenseNetBC((3, 32, 32), 10).parameters())
    769162
    """

    def __init__(
        self, shape: Sequence[int], num_classes: int, depth: int = 100, growth: int = 12
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"`depth` must be 6n + 4 for DenseNet-BC, got {depth}")
        self.shape = image_shape(shape)
        per_block, channels = (depth - 4) // 6, 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(self.shape[0], channels, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(per_block):
                layers.append(_DenseLayer(channels, growth))
                channels += growth
            if block < 2:
                out = channels // 2
                layers += [
                    nn.BatchNorm2d(channels),
                    nn.ReLU(),
                    nn.Conv2d(channels, out, 1, bias=False),
                    nn.AvgPool2d(2),
                ]
                channels = out
        layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        layers.append(nn.Linear(channels, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, *self.shape))  # type: ignore[no-any-return]


class CNN3(nn.Module):
    """Three conv3x3-ReLU-maxpool2x2 layers (32, 64, 128 channels) and a linear classifier.

    >>> sum(p.numel() for p in CNN3((1, 28, 28), 10).parameters())
    104202
    """

    def __init__(self, shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.shape = image_shape(shape)
        layers: list[nn.Module] = []
        cin = self.shape[0]
        for cout in (32, 64, 128):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            cin = cout
        side_h, side_w = self.shape[1] // 8, self.shape[2] // 8
        layers += [nn.Flatten(), nn.Linear(128 * side_h * side_w, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, *self.shape))  # type: ignore[no-any-return]


def from_torchvision_resnet(state: Mapping[str, Tensor], model: CifarResNet) -> dict[str, Tensor]:
    """torchvision's ResNet state dict renamed to ``model``'s keys (``imagenet_stem`` models).

    Both list their tensors in the same order (stem, then per block conv-BN, conv-BN and the
    projection shortcut, then the classifier), so the names are paired in order and every
    shape is checked; the classifier keeps its ImageNet shape (the lab skips it when the number
    of classes differs). Run this on a machine with torchvision, e.g.
    ``save_file(from_torchvision_resnet(resnet18(weights="IMAGENET1K_V1").state_dict(), model),
    "resnet18-imagenet.safetensors")``.

    >>> ours = CifarResNet((3, 224, 224), 1000, (2, 2, 2, 2), imagenet_stem=True)
    >>> renamed = from_torchvision_resnet({"t" + k: v for k, v in ours.state_dict().items()}, ours)
    >>> list(renamed) == list(ours.state_dict())
    True
    """
    target = model.state_dict()
    if len(state) != len(target):
        raise ValueError(
            f"`state` must have the {len(target)} tensors of the model, got {len(state)}"
        )
    renamed = {}
    for (name, value), (ours, like) in zip(state.items(), target.items(), strict=True):
        if value.shape != like.shape and ours not in list(target)[-2:]:  # the classifier may
            raise ValueError(
                f"`state[{name!r}]` must have shape {tuple(like.shape)} for {ours}, "
                f"got {tuple(value.shape)}"
            )
        renamed[ours] = value
    return renamed
