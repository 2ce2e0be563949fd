import pytest
import torch
from torch import nn

from networks.blocks import ResnetBlock, get_norm_layer, padding_layers


def test_get_norm_layer_kinds() -> None:
    inorm = get_norm_layer("instance")(6)
    assert isinstance(inorm, nn.InstanceNorm2d)
    assert not inorm.affine and len(list(inorm.parameters())) == 0
    bnorm = get_norm_layer("batch")(6)
    assert isinstance(bnorm, nn.BatchNorm2d) and bnorm.affine
    assert sum(p.numel() for p in bnorm.parameters()) == 12
    assert isinstance(get_norm_layer("none")(6), nn.Identity)


def test_get_norm_layer_unknown_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        get_norm_layer("group")
    msg = str(err.value)
    assert "group" in msg
    for name in ("instance", "batch", "none"):
        assert name in msg


@pytest.mark.parametrize(
    ("padding_type", "layer_type"), [("reflect", nn.ReflectionPad2d), ("replicate", nn.ReplicationPad2d)]
)
def test_padding_layers_explicit(padding_type: str, layer_type: type) -> None:
    layers, conv_pad = padding_layers(padding_type, 3)
    assert conv_pad == 0
    assert len(layers) == 1 and isinstance(layers[0], layer_type)
    assert layers[0].padding == (3, 3, 3, 3)


def test_padding_layers_zero_and_unknown() -> None:
    assert padding_layers("zero", 2) == ([], 2)
    with pytest.raises(ValueError, match="circular"):
        padding_layers("circular", 1)


@pytest.mark.parametrize("padding_type", ["reflect", "replicate", "zero"])
def test_resnet_block_shape_and_param_count(padding_type: str) -> None:
    dim = 6
    block = ResnetBlock(dim, padding_type=padding_type)
    x = torch.randn(2, dim, 9, 7)
    assert block(x).shape == x.shape
    # two conv3x3 dim->dim with bias; InstanceNorm(affine=False) has no parameters
    assert sum(p.numel() for p in block.parameters()) == 2 * (3 * 3 * dim * dim + dim)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    expected_pad = (1, 1) if padding_type == "zero" else (0, 0)
    assert all(c.padding == expected_pad for c in convs)


def test_resnet_block_is_residual() -> None:
    # With the last conv zeroed its output is a constant, which InstanceNorm maps to 0: block(x) == x.
    block = ResnetBlock(4)
    last_conv = [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last_conv.weight.zero_()
        last_conv.bias.fill_(0.3)
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(block(x), x)


def test_resnet_block_dropout_and_norm() -> None:
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in ResnetBlock(4, use_dropout=True).modules())
    assert not any(isinstance(m, nn.Dropout) for m in ResnetBlock(4).modules())
    norms = [m for m in ResnetBlock(4, norm="batch").modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2
