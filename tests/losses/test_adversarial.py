import math

import pytest
import torch

from losses import AdversarialLoss
from tests.losses.conftest import t


def test_lsgan_d_real_fake_and_g() -> None:
    x = t([1.0, 0.0], [0.5, -1.0])
    loss = AdversarialLoss("lsgan")
    # (x - 1)^2 = 0, 1, 0.25, 4 ; x^2 = 1, 0, 0.25, 1
    assert loss(x, True).item() == pytest.approx((0 + 1 + 0.25 + 4) / 4)
    assert loss(x, False).item() == pytest.approx((1 + 0 + 0.25 + 1) / 4)
    # generator: same formula with the real target
    assert loss(x, True, for_discriminator=False).item() == pytest.approx((0 + 1 + 0.25 + 4) / 4)


def test_lsgan_custom_targets() -> None:
    x = t([1.0, 0.0], [0.5, -1.0])
    loss = AdversarialLoss("lsgan", target_real=0.9, target_fake=0.1)
    assert loss(x, True).item() == pytest.approx((0.01 + 0.81 + 0.16 + 3.61) / 4)
    assert loss(x, False).item() == pytest.approx((0.81 + 0.01 + 0.16 + 1.21) / 4)


def test_bce_on_logits() -> None:
    ln3 = math.log(3.0)
    x = t([0.0, ln3], [-ln3, 2 * ln3])  # sigmoid: 1/2, 3/4, 1/4, 9/10
    loss = AdversarialLoss("bce")
    expected_real = (math.log(2) + math.log(4 / 3) + math.log(4) + math.log(10 / 9)) / 4
    expected_fake = (math.log(2) + math.log(4) + math.log(4 / 3) + math.log(10)) / 4
    assert loss(x, True).item() == pytest.approx(expected_real, rel=1e-5)
    assert loss(x, False).item() == pytest.approx(expected_fake, rel=1e-5)
    assert loss(x, True, for_discriminator=False).item() == pytest.approx(expected_real, rel=1e-5)


def test_hinge_d_and_g() -> None:
    x = t([2.0, 0.5], [-0.5, -3.0])
    loss = AdversarialLoss("hinge")
    assert loss(x, True).item() == pytest.approx((0 + 0.5 + 1.5 + 4) / 4)  # relu(1 - x)
    assert loss(x, False).item() == pytest.approx((3 + 1.5 + 0.5 + 0) / 4)  # relu(1 + x)
    assert loss(x, True, for_discriminator=False).item() == pytest.approx(-(2 + 0.5 - 0.5 - 3) / 4)


def test_sum_over_scales_list_of_lists_uses_last_tensor() -> None:
    inter = torch.full((1, 4, 2, 2), 100.0)  # intermediate features: must be ignored
    preds = [[inter, torch.ones(1, 1, 2, 2)], [inter, inter, torch.full((1, 1, 1, 1), 3.0)]]
    loss = AdversarialLoss("lsgan")
    assert loss(preds, False).item() == pytest.approx(1.0 + 9.0)
    assert loss(preds, True).item() == pytest.approx(0.0 + 4.0)
    # list of tensors = one prediction per scale
    flat = [torch.ones(1, 1, 2, 2), torch.full((1, 1, 1, 1), 3.0)]
    assert loss(flat, False).item() == pytest.approx(1.0 + 9.0)
    hinge = AdversarialLoss("hinge")
    assert hinge(preds, True, for_discriminator=False).item() == pytest.approx(-1.0 - 3.0)


def test_gradient_flows_to_predictions() -> None:
    x = t([1.0, 0.0], [0.5, -1.0]).requires_grad_(True)
    AdversarialLoss("lsgan")([[x]], True).backward()
    # d/dx mean((x-1)^2) = 2 (x - 1) / 4
    assert torch.allclose(x.grad, t([0.0, -0.5], [-0.25, -1.0]))


def test_bad_mode_and_hinge_generator_fake() -> None:
    with pytest.raises(ValueError, match="lsgan.*bce.*hinge"):
        AdversarialLoss("wgan")
    with pytest.raises(ValueError):
        AdversarialLoss("hinge")(torch.zeros(1), False, for_discriminator=False)
    with pytest.raises(TypeError):
        AdversarialLoss()([], True)
