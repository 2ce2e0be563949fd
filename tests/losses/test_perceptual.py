import pytest
import torch

from losses import DEFAULT_VGG_LAYER_WEIGHTS, VGGPerceptualLoss
from tests.losses.conftest import t


def test_value_with_custom_layer_weights(two_conv) -> None:
    fake, real = t([1.0, 2.0], [3.0, 4.0]), torch.zeros(1, 1, 2, 2)
    loss = VGGPerceptualLoss(two_conv, layer_weights={"a": 0.5, "b": 0.25}, weight=10.0)
    # a = 2x -> mean|.| = (2+4+6+8)/4 = 5 ; b = 6x -> 15
    assert loss(fake, real).item() == pytest.approx(10 * (0.5 * 5 + 0.25 * 15))


def test_default_weights_are_pix2pixhd(fake_vgg) -> None:
    assert DEFAULT_VGG_LAYER_WEIGHTS == {
        "relu1_1": 1 / 32,
        "relu2_1": 1 / 16,
        "relu3_1": 1 / 8,
        "relu4_1": 1 / 4,
        "relu5_1": 1.0,
    }
    loss = VGGPerceptualLoss(fake_vgg)
    fake, real = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    # layer i gives i * x, so its L1 is i
    expected = 10 * (1 / 32 * 1 + 1 / 16 * 2 + 1 / 8 * 3 + 1 / 4 * 4 + 1 * 5)
    assert loss(fake, real).item() == pytest.approx(expected)


def test_gradients_and_frozen_extractor(two_conv) -> None:
    fake = t([1.0, -2.0], [3.0, 4.0]).requires_grad_(True)
    real = torch.zeros(1, 1, 2, 2, requires_grad=True)
    loss = VGGPerceptualLoss(two_conv, layer_weights={"a": 1.0}, weight=1.0)
    loss(fake, real).backward()
    # d/dx mean|2x| = 2 sign(x) / 4
    assert torch.allclose(fake.grad, t([0.5, -0.5], [0.5, 0.5]))
    assert real.grad is None
    assert all(not p.requires_grad and p.grad is None for p in two_conv.parameters())
    loss.train()
    assert loss.training and not loss.vgg.training


def test_missing_layer_is_named(two_conv) -> None:
    loss = VGGPerceptualLoss(two_conv, layer_weights={"a": 1.0, "relu9_9": 1.0})
    with pytest.raises(KeyError, match="relu9_9"):
        loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
