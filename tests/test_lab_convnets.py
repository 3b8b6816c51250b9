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


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("resnet18", 11_173_962),  # models.py's ResNet-18 of earlier versions: same count
        ("resnet34", 21_282_122),
        ("vgg16bn", 14_991_946),
        ("densenet-bc", 769_162),
    ],
)
def test_registered_conv_nets_are_the_published_ones(name: str, count: int) -> None:
    from smoothlab.lab.plan.models import MODELS, build_model, classifier

    model = build_model(name, (3, 32, 32), 10)
    assert _parameters(model) == count and MODELS[name].inputs == ("image",)
    head_name, head = classifier(model)
    assert head.out_features == 10
    assert head_name == [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


def test_resnet18_keeps_its_state_dict_keys() -> None:
    from smoothlab.lab.plan.models import build_model

    keys = list(build_model("resnet18", (3, 32, 32), 10).state_dict())
    assert keys[:3] == ["net.0.weight", "net.1.weight", "net.1.bias"]
    assert "net.3.body.0.weight" in keys and "net.5.shortcut.0.weight" in keys
    assert keys[-2:] == ["net.13.weight", "net.13.bias"]


def test_cnn3_is_registered_for_mnist_and_classifier_needs_a_linear() -> None:
    from smoothlab.lab.plan.models import build_model, classifier

    model = build_model("cnn3", (1, 28, 28), 10)
    assert _parameters(model) == 104_202 and classifier(model)[0] == "net.10"
    with pytest.raises(ValueError, match=r"^`model` must have an nn.Linear classifier, got ReLU$"):
        classifier(nn.ReLU())


def test_vgg16bn_needs_32_pixels_at_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from smoothlab.lab.plan.loading import load_config
    from smoothlab.lab.plan.schema import ConfigError

    path = tmp_path / "c.toml"
    path.write_text('[data]\ndataset = "mnist"\n[model]\nname = "vgg16bn"\n')
    with pytest.raises(ConfigError, match=r"vgg16bn needs images of side >= 32\), got 'vgg16bn'$"):
        load_config(path)


def test_imagenet_resnet18_has_torchvisions_count_and_takes_its_tensors_in_order() -> None:
    from smoothlab.lab.plan.convnets import from_torchvision_resnet

    model = CifarResNet((3, 64, 64), 1000, (2, 2, 2, 2), imagenet_stem=True)
    assert _parameters(model) == 11_689_512  # torchvision's resnet18
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)
    # torchvision's names, in its order: conv1, bn1, layer1.0.conv1, ..., fc
    state = {f"tv{i}": v.clone() for i, v in enumerate(model.state_dict().values())}
    state[f"tv{len(state) - 2}"] = torch.zeros(120, 512)  # a head for 120 classes passes
    renamed = from_torchvision_resnet(state, model)
    assert list(renamed) == list(model.state_dict())
    assert torch.equal(renamed["net.0.weight"], model.state_dict()["net.0.weight"])
    state["tv0"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(
        ValueError,
        match=r"^`state\['tv0'\]` must have shape \(64, 3, 7, 7\) for net.0.weight, got \(64, 3, 3, 3\)$",
    ):
        from_torchvision_resnet(state, model)
    with pytest.raises(
        ValueError, match=r"^`state` must have the \d+ tensors of the model, got 1$"
    ):
        from_torchvision_resnet({"a": torch.zeros(1)}, model)
