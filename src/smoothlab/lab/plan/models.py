"""Models used by the lab, written out in plain PyTorch (no torchvision).

- ``mlp``: fully connected ReLU network of any widths; ``hidden = [1024, 1024]`` is the label
  relaxation supplement's MNIST / Fashion-MNIST network.
- ``cnn``: a small two-convolution network for 28x28 (or any square) images.
- ``logreg``: multinomial logistic regression (one linear layer).
- ``resnet18``: the CIFAR variant of ResNet-18 (3x3 stem, no max-pool; He et al. 2016).
- ``resnet56v2``: pre-activation bottleneck ResNet-56 for CIFAR (He et al. 2016, "Identity
  mappings"), the architecture of the label relaxation paper's CIFAR runs. These two are for
  users with GPUs; the canned configs run on a CPU with the small models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["MODELS", "ModelSpec", "build_model"]


class MLP(nn.Sequential):
    """Linear -> ReLU blocks of the given widths, then a linear classifier."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int]) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


class SmallCNN(nn.Module):
    """Two 3x3 convolutions with max-pooling, then a hidden layer: ~99 % on MNIST."""

    def __init__(self, shape: Sequence[int], num_classes: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.shape = _image_shape(shape)
        channels, size = self.shape[0], self.shape[1]
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        width = hidden[0] if hidden else 128
        flat = 64 * (size // 4) * (size // 4)
        self.head = nn.Sequential(nn.Linear(flat, width), nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x.reshape(-1, *self.shape)))  # type: ignore[no-any-return]


def _image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) from an input shape: images as they are, flat square inputs as one channel."""
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2])
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    side = math.isqrt(math.prod(shape))
    if side * side != math.prod(shape):
        raise ValueError(f"`input shape` must be an image or a square, got {tuple(shape)}")
    return (1, side, side)


class BasicBlock(nn.Module):
    """ResNet-18's block: two 3x3 convolutions with batch norm and a shortcut."""

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


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3x3 stem, four stages of two basic blocks (64-512 channels)."""

    def __init__(self, shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.shape = _image_shape(shape)
        layers: list[nn.Module] = [
            nn.Conv2d(self.shape[0], 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        ]
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, *self.shape))  # type: ignore[no-any-return]


class PreActBottleneck(nn.Module):
    """ResNet v2 bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1, plus shortcut."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, first: bool) -> None:
        super().__init__()
        # The very first block sees the stem's already activated output (Keras' resnet_v2).
        self.pre: nn.Module = (
            nn.Identity() if first else nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU())
        )
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, stride, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, mid, 3, 1, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, cout, 1, bias=False),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.pre(x)
        return self.body(out) + self.shortcut(out)  # type: ignore[no-any-return]


class ResNetV2(nn.Module):
    """Pre-activation bottleneck ResNet of depth 9n + 2 (n = 6 gives ResNet-56 v2)."""

    def __init__(self, shape: Sequence[int], num_classes: int, depth: int = 56) -> None:
        super().__init__()
        self.shape = _image_shape(shape)
        blocks = (depth - 2) // 9
        layers: list[nn.Module] = [
            nn.Conv2d(self.shape[0], 16, 3, 1, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        ]
        cin, mid = 16, 16
        for stage in range(3):
            cout = mid * 4
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(PreActBottleneck(cin, mid, cout, stride, stage == block == 0))
                cin = cout
            mid *= 2
        layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        layers.append(nn.Linear(cin, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(-1, *self.shape))  # type: ignore[no-any-return]


Builder = Callable[[Sequence[int], int, Sequence[int]], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: name, one-line description, ``build(input_shape, K, hidden)``, and the
    input kinds it accepts (:data:`~smoothlab.lab.plan.inputs.DATASET_INPUTS`: ``image``,
    ``table``)."""

    name: str
    description: str
    build: Builder
    inputs: tuple[str, ...]


_ANY = ("table", "image")  # flattening models take images too
_IMAGES = ("image",)  # convolutions need (C, H, W): a table's features have no neighbours

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "mlp",
            "ReLU MLP of widths model.hidden",
            lambda s, k, h: MLP(math.prod(s), k, h),
            _ANY,
        ),
        ModelSpec(
            "cnn",
            "two conv layers + one hidden layer",
            lambda s, k, h: SmallCNN(s, k, h),
            _IMAGES,
        ),
        ModelSpec("logreg", "logistic regression", lambda s, k, h: MLP(math.prod(s), k, ()), _ANY),
        ModelSpec("resnet18", "CIFAR ResNet-18 (GPU)", lambda s, k, h: ResNet18(s, k), _IMAGES),
        ModelSpec(
            "resnet56v2",
            "pre-activation ResNet-56 (GPU)",
            lambda s, k, h: ResNetV2(s, k),
            _IMAGES,
        ),
    )
}


def build_model(
    name: str, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = ()
) -> nn.Module:
    """Build the registered model ``name`` for inputs of ``input_shape`` (without batch).

    >>> model = build_model("mlp", (64,), 10, (1024, 1024))
    >>> sum(p.numel() for p in model.parameters())
    1126410
    """
    if name not in MODELS:
        raise ValueError(f"`model.name` must be one of {', '.join(MODELS)}, got {name!r}")
    return MODELS[name].build(tuple(input_shape), num_classes, tuple(hidden))
