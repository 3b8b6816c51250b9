"""Models used by the lab, written out in plain PyTorch (no torchvision).

- ``mlp``: fully connected ReLU network of any widths; ``hidden = [1024, 1024]`` is the label
  relaxation supplement's MNIST / Fashion-MNIST network.
- ``cnn``: a small two-convolution network for 28x28 (or any square) images.
- ``logreg``: multinomial logistic regression (one linear layer).
- ``resnet18``, ``resnet34``: CIFAR ResNets (3x3 stem, no max-pool; He et al. 2016), TSLA's
  (001) and the variational-learning paper's (004) networks.
- ``resnet56v2``: pre-activation bottleneck ResNet-56 for CIFAR (He et al. 2016, "Identity
  mappings"), ``vgg16bn`` (VGG16 with batch norm and dropout) and ``densenet-bc`` (depth 100,
  growth 12): the label relaxation supplement's (000, A.2) CIFAR networks.
- ``cnn3``: the three-layer CNN of 004's Fig. 3.
- ``resnet18-imagenet``: ResNet-18 with ImageNet's stem, for TSLA's (001) fine-tuning of
  ImageNet-pretrained weights on Stanford Dogs and CUB-200-2011 (``model.checkpoint``).

The convolutional networks of the seeds are defined in :mod:`smoothlab.lab.plan.convnets`; they
are for users with GPUs, and the canned configs run on a CPU with the small models. The
classifier of every model is its last ``nn.Linear`` (:func:`classifier`): the layer that
``train.backbone_lr`` leaves at ``train.lr`` and that ``model.checkpoint`` may skip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from smoothlab.lab.plan.convnets import CNN3, VGG16BN, CifarResNet, DenseNetBC, image_shape

__all__ = ["MODELS", "ModelSpec", "build_model", "classifier"]


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
        self.shape = image_shape(shape)
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
        self.shape = image_shape(shape)
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
    ``table``), and the smallest image side it takes (VGG16's five poolings need 32 pixels)."""

    name: str
    description: str
    build: Builder
    inputs: tuple[str, ...]
    min_side: int = 1


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
        ModelSpec(
            "resnet18",
            "CIFAR ResNet-18 (GPU)",
            lambda s, k, h: CifarResNet(s, k, (2, 2, 2, 2)),
            _IMAGES,
        ),
        ModelSpec(
            "resnet56v2",
            "pre-activation ResNet-56 (GPU)",
            lambda s, k, h: ResNetV2(s, k),
            _IMAGES,
        ),
        ModelSpec(
            "resnet34",
            "CIFAR ResNet-34 (GPU)",
            lambda s, k, h: CifarResNet(s, k, (3, 4, 6, 3)),
            _IMAGES,
        ),
        ModelSpec(
            "resnet18-imagenet",
            "ResNet-18, ImageNet stem, for pretrained weights (GPU)",
            lambda s, k, h: CifarResNet(s, k, (2, 2, 2, 2), imagenet_stem=True),
            _IMAGES,
            min_side=32,
        ),
        ModelSpec(
            "vgg16bn",
            "VGG16 with batch norm, dropout (GPU)",
            lambda s, k, h: VGG16BN(s, k),
            _IMAGES,
            min_side=32,
        ),
        ModelSpec(
            "densenet-bc",
            "DenseNet-BC, depth 100, growth 12 (GPU)",
            lambda s, k, h: DenseNetBC(s, k, depth=100, growth=12),
            _IMAGES,
        ),
        ModelSpec("cnn3", "three conv layers (004's Fig. 3)", lambda s, k, h: CNN3(s, k), _IMAGES),
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


def classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of ``model``'s classifier layer: its last ``nn.Linear``.

    Every registered model ends in one linear layer to the classes, so this is the head that a
    pretrained backbone's fine-tuning trains at its own learning rate (TSLA, 001, Section 5.1).

    >>> name, layer = classifier(build_model("resnet18", (3, 32, 32), 10))
    >>> name, layer.out_features
    ('net.13', 10)
    """
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"`model` must have an nn.Linear classifier, got {type(model).__name__}")
    return linears[-1]
