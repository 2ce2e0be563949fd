import pytest
import torch

from losses import ContentLoss, StyleLoss, gram_matrix


def test_gram_matrix_by_hand() -> None:
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # [1, 2, 1, 2]
    # F F^T = [[1+4, 3+8], [3+8, 9+16]], divided by C*H*W = 2*1*2
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    assert torch.allclose(gram_matrix(f), expected)
    with pytest.raises(ValueError):
        gram_matrix(torch.zeros(2, 3))


def _feats():
    out = {
        "a": torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]]),  # [2, 1, 1, 2]
        "b": torch.tensor([[[[1.0, 5.0]]], [[[0.0, 2.0]]]]),
        "unused": torch.full((2, 1, 1, 2), 99.0),
    }
    style = {
        "a": torch.tensor([[[[1.0, 1.0]]], [[[0.0, 2.0]]]]),
        "b": out["b"].clone(),  # identical -> contributes 0
        "unused": torch.zeros(2, 1, 1, 2),
    }
    return out, style


def test_style_loss_means_plus_gram_over_batch() -> None:
    out, style = _feats()
    # means: out 2, 2 ; style 1, 1 -> (2-1)^2 + (2-1)^2 = 2
    # grams (C=1, /(1*1*2)): out (1+9)/2=5, (4+4)/2=4 ; style (1+1)/2=1, (0+4)/2=2 -> 16 + 4 = 20
    # divided by batch size 2
    expected = (2 + 20) / 2
    assert StyleLoss(layers=("a", "b"), weight=1.0)(out, style).item() == pytest.approx(expected)
    assert StyleLoss(layers=("a",), weight=0.02)(out, style).item() == pytest.approx(0.02 * expected)


def test_style_defaults_and_grad() -> None:
    loss = StyleLoss()
    assert loss.layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1") and loss.weight == 0.02
    out, style = _feats()
    o = out["a"].clone().requires_grad_(True)
    s = style["a"].clone().requires_grad_(True)
    StyleLoss(layers=("a",), weight=1.0)({"a": o}, {"a": s}).backward()
    assert o.grad is not None and s.grad is None
    with pytest.raises(KeyError, match="relu1_1"):
        loss(out, style)


def test_content_loss() -> None:
    o = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], requires_grad=True)
    c = torch.zeros(1, 1, 2, 2, requires_grad=True)
    loss = ContentLoss()
    assert loss.layer == "relu4_1" and loss.weight == 1.0
    value = loss({"relu4_1": o}, {"relu4_1": c, "relu1_1": c})
    assert value.item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    value.backward()
    assert torch.allclose(o.grad, o.detach() * 2 / 4) and c.grad is None
    assert ContentLoss("x", weight=2.0)({"x": o}, {"x": c}).item() == pytest.approx(2 * 30 / 4)
