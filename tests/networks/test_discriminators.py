import pytest
import torch
import torch.nn.functional as F
from torch import nn

from networks.discriminators import MultiscaleDiscriminator, NLayerDiscriminator


def conv4_params(c_in: int, c_out: int) -> int:
    return 4 * 4 * c_in * c_out + c_out


def patch_size(size: int, stride: int) -> int:
    """Output size of a 4x4 conv with padding ceil(3/2) = 2."""
    return (size + 2 * 2 - 4) // stride + 1


def test_nlayer_features_channels_sizes_and_params() -> None:
    disc = NLayerDiscriminator(input_nc=7, ndf=8, n_layers=3)
    feats = disc(torch.randn(2, 7, 64, 64))
    assert len(feats) == 5
    assert [f.shape[1] for f in feats] == [8, 16, 32, 64, 1]
    sizes, s = [], 64
    for stride in (2, 2, 2, 1, 1):
        s = patch_size(s, stride)
        sizes.append(s)
    assert sizes == [33, 17, 9, 10, 11]
    assert [tuple(f.shape[-2:]) for f in feats] == [(s, s) for s in sizes]
    expected = conv4_params(7, 8) + conv4_params(8, 16) + conv4_params(16, 32) + conv4_params(32, 64)
    expected += conv4_params(64, 1)
    assert sum(p.numel() for p in disc.parameters()) == expected
    # no norm after the first conv, norm after the middle ones, plain conv last
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in disc.blocks[0])
    assert all(isinstance(disc.blocks[i][1], nn.InstanceNorm2d) for i in (1, 2, 3))
    assert len(disc.blocks[-1]) == 1


@pytest.mark.parametrize("n_layers", [1, 2, 4])
def test_nlayer_returns_n_layers_plus_two(n_layers: int) -> None:
    disc = NLayerDiscriminator(input_nc=3, ndf=4, n_layers=n_layers)
    feats = disc(torch.randn(1, 3, 32, 32))
    assert len(feats) == len(disc.blocks) == n_layers + 2
    assert feats[-1].shape[1] == 1


def test_nlayer_channel_cap_and_sigmoid() -> None:
    disc = NLayerDiscriminator(input_nc=3, ndf=8, n_layers=3, max_channels=16, use_sigmoid=True)
    feats = disc(torch.randn(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [8, 16, 16, 16, 1]
    assert isinstance(disc.blocks[-1][-1], nn.Sigmoid)
    assert feats[-1].min() > 0 and feats[-1].max() < 1
    plain = NLayerDiscriminator(input_nc=3, ndf=8, n_layers=3)
    assert not any(isinstance(m, nn.Sigmoid) for m in plain.modules())


def test_nlayer_last_output_is_last_block_applied_to_previous() -> None:
    disc = NLayerDiscriminator(input_nc=3, ndf=4, n_layers=2)
    feats = disc(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(disc.blocks[-1](feats[-2]), feats[-1])


def test_multiscale_outputs_per_scale() -> None:
    torch.manual_seed(0)
    msd = MultiscaleDiscriminator(input_nc=5, ndf=4, n_layers=2, num_D=3)
    assert msd.num_D == 3 and msd.n_layers == 2
    x = torch.randn(2, 5, 64, 64)
    outs = msd(x)
    assert len(outs) == 3
    assert all(len(o) == 4 for o in outs)
    first_sizes = [o[0].shape[-1] for o in outs]
    assert first_sizes == [33, 17, 9]
    # element i is discriminator i on the input average-pooled i times
    xi = x
    for i, disc in enumerate(msd.discriminators):
        if i > 0:
            xi = F.avg_pool2d(xi, 3, stride=2, padding=1, count_include_pad=False)
        for got, want in zip(outs[i], disc(xi), strict=True):
            torch.testing.assert_close(got, want)


def test_multiscale_weights_are_not_shared() -> None:
    msd = MultiscaleDiscriminator(input_nc=3, ndf=4, n_layers=2, num_D=2)
    d0, d1 = msd.discriminators
    ptrs0 = {p.data_ptr() for p in d0.parameters()}
    ptrs1 = {p.data_ptr() for p in d1.parameters()}
    assert not ptrs0 & ptrs1
    x = torch.randn(1, 3, 16, 16)
    before = d1(x)[-1].clone()
    with torch.no_grad():
        for p in d0.parameters():
            p.add_(1.0)
    torch.testing.assert_close(d1(x)[-1], before)
    assert sum(p.numel() for p in msd.parameters()) == 2 * sum(p.numel() for p in d0.parameters())
