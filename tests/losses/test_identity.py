import pytest
import torch

from losses import IdentityLoss
from tests.losses.conftest import t


def test_l1_with_layer_weights(two_conv) -> None:
    x, y = t([1.0, 2.0], [3.0, 4.0]), torch.zeros(1, 1, 2, 2)
    loss = IdentityLoss(two_conv, layers=["a", "b"], layer_weights=[1.0, 0.5], weight=2.0)
    # a = 2x -> L1 5 ; b = 6x -> L1 15
    assert loss(x, y).item() == pytest.approx(2 * (1.0 * 5 + 0.5 * 15))


def test_l2(two_conv) -> None:
    x, y = t([1.0, 2.0], [3.0, 4.0]), t([1.0, 1.0], [1.0, 1.0])
    loss = IdentityLoss(two_conv, layers=["a", "b"], distance="l2")
    # a: 2x - 2 = 0, 2, 4, 6 -> (0+4+16+36)/4 = 14 ; b: 6x - 6 = 0, 6, 12, 18 -> (0+36+144+324)/4 = 126
    assert loss(x, y).item() == pytest.approx(14 + 126)


def test_frozen_network_and_gradients(two_conv) -> None:
    loss = IdentityLoss(two_conv, layers=["b"])
    assert all(not p.requires_grad for p in two_conv.parameters())
    x = t([1.0, -2.0], [3.0, 4.0]).requires_grad_(True)
    y = torch.zeros(1, 1, 2, 2, requires_grad=True)
    loss(x, y).backward()
    # d/dx mean|6x| = 6 sign(x) / 4
    assert torch.allclose(x.grad, t([1.5, -1.5], [1.5, 1.5]))
    assert y.grad is None
    assert all(p.grad is None for p in two_conv.parameters())
    loss.train()
    assert not loss.network.training


def test_errors(two_conv) -> None:
    with pytest.raises(ValueError, match="l1"):
        IdentityLoss(two_conv, layers=["a"], distance="cos")
    with pytest.raises(ValueError):
        IdentityLoss(two_conv, layers=["a", "b"], layer_weights=[1.0])
    with pytest.raises(KeyError, match="zzz"):
        IdentityLoss(two_conv, layers=["zzz"])(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
