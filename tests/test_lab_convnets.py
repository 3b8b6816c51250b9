"""The seeds' CIFAR networks: output shapes and the published parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothlab.lab.plan.convnets import CNN3, VGG16BN, CifarResNet, DenseNetBC, image_shape


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _keras_count(model: nn.Module) -> int:
    """Parameters plus batch-norm statistics: what Keras' model summary counts."""
    stats = sum(b.numel() for name, b in model.named_buffers() if "num_batches" not in name)
    return _parameters(model) + stats


@pytest.mark.parametrize(
    ("make", "classes", "count"),
    [
        # He et al. 2016 CIFAR variants: 11.17M and 21.28M (10 classes)
        (lambda k: CifarResNet((3, 32, 32), k, (2, 2, 2, 2)), 10, 11_173_962),
        (lambda k: CifarResNet((3, 32, 32), k, (3, 4, 6, 3)), 10, 21_282_122),
        (lambda k: CifarResNet((3, 32, 32), k, (3, 4, 6, 3)), 100, 21_328_292),
        # Huang et al. 2017, Table 2: DenseNet-BC (L = 100, k = 12) has 0.8M parameters
        (lambda k: DenseNetBC((3, 32, 32), k), 10, 769_162),
        (lambda k: DenseNetBC((3, 32, 32), k), 100, 800_032),
        (lambda k: CNN3((1, 28, 28), k), 10, 104_202),
    ],
)
def test_parameter_counts(make, classes: int, count: int) -> None:  # type: ignore[no-untyped-def]
    assert _parameters(make(classes)) == count


def test_vgg16_bn_has_the_published_keras_count() -> None:
    model = VGG16BN((3, 32, 32), 10)
    assert _keras_count(model) == 15_001_418  # the Keras CIFAR-10 VGG16 summary
    assert _parameters(model) == 14_991_946
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.3] + [0.4] * 7 + [0.5, 0.5]


@pytest.mark.parametrize(
    "model",
    [
        CifarResNet((3, 32, 32), 7, (3, 4, 6, 3)),
        VGG16BN((3, 32, 32), 7),
        DenseNetBC((3, 32, 32), 7, depth=40),
        CNN3((3, 32, 32), 7),
        CNN3((784,), 7),
    ],
)
def test_outputs_are_logits_per_image(model: nn.Module) -> None:
    x = torch.randn(3, *model.shape, generator=torch.Generator().manual_seed(0))
    model.eval()
    out = model(x)
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    assert torch.equal(model(x.flatten(1)), out)  # flat rows are reshaped to the image
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"^`depth` must be 6n \+ 4 for DenseNet-BC, got 50$"):
        DenseNetBC((3, 32, 32), 10, depth=50)
    with pytest.raises(
        ValueError, match=r"^`input shape` must be an image or a square, got \(10,\)$"
    ):
        image_shape((10,))
