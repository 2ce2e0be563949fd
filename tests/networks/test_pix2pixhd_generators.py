import pytest
import torch
from torch import nn

from networks.pix2pixhd import GlobalGenerator, LocalEnhancer


def conv_params(k: int, c_in: int, c_out: int) -> int:
    """Weight + bias count of a Conv2d / ConvTranspose2d with a k x k kernel."""
    return k * k * c_in * c_out + c_out


def resblock_params(dim: int) -> int:
    return 2 * conv_params(3, dim, dim)


def global_body_params(input_nc: int, ngf: int, n_down: int, n_blocks: int) -> int:
    total = conv_params(7, input_nc, ngf)
    total += sum(conv_params(3, ngf * 2**i, ngf * 2 ** (i + 1)) for i in range(n_down))
    total += n_blocks * resblock_params(ngf * 2**n_down)
    total += sum(conv_params(3, ngf * 2**i, ngf * 2 ** (i - 1)) for i in range(n_down, 0, -1))
    return total


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_global_generator_param_count_by_hand() -> None:
    gen = GlobalGenerator(input_nc=4, output_nc=3, ngf=4, n_downsampling=2, n_blocks=1)
    expected = (
        (7 * 7 * 4 * 4 + 4)  # c7s1-4
        + (3 * 3 * 4 * 8 + 8)  # d8
        + (3 * 3 * 8 * 16 + 16)  # d16
        + 2 * (3 * 3 * 16 * 16 + 16)  # R16
        + (3 * 3 * 16 * 8 + 8)  # u8
        + (3 * 3 * 8 * 4 + 4)  # u4
        + (7 * 7 * 4 * 3 + 3)  # c7s1-3
    )
    assert expected == 8935
    assert n_params(gen) == expected
    assert n_params(gen.head) == 7 * 7 * 4 * 3 + 3
    # batch norm adds 2 parameters per channel of each of the 7 norm layers (4, 8, 16, 16, 16, 8, 4)
    gen_bn = GlobalGenerator(input_nc=4, output_nc=3, ngf=4, n_downsampling=2, n_blocks=1, norm="batch")
    assert n_params(gen_bn) == expected + 2 * (4 + 8 + 16 + 16 + 16 + 8 + 4)


def test_global_generator_layout() -> None:
    gen = GlobalGenerator(input_nc=4, output_nc=3, ngf=4, n_downsampling=3, n_blocks=2)
    convs = [m for m in gen.body if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1)] + [(2, 2)] * 3
    assert [c.out_channels for c in convs] == [4, 8, 16, 32]
    ups = [m for m in gen.body if isinstance(m, nn.ConvTranspose2d)]
    assert [u.out_channels for u in ups] == [16, 8, 4]
    assert all(u.output_padding == (1, 1) and u.stride == (2, 2) for u in ups)
    assert isinstance(gen.body[0], nn.ReflectionPad2d) and isinstance(gen.head[-1], nn.Tanh)
    assert gen.total_stride == 8


def test_global_generator_shapes_and_features() -> None:
    gen = GlobalGenerator(input_nc=4, output_nc=3, ngf=4, n_downsampling=2, n_blocks=1)
    x = torch.randn(2, 4, 32, 48)
    feats = gen.features(x)
    assert feats.shape == (2, 4, 32, 48)
    out = gen(x)
    assert out.shape == (2, 3, 32, 48)
    assert out.abs().max() <= 1
    torch.testing.assert_close(out, gen.head(feats))


def test_global_generator_rejects_bad_size() -> None:
    gen = GlobalGenerator(input_nc=4, ngf=4, n_downsampling=2, n_blocks=1)
    with pytest.raises(ValueError) as err:
        gen(torch.randn(1, 4, 30, 32))
    assert "30x32" in str(err.value) and "4" in str(err.value) and "multiple" in str(err.value)


def small_local(n_local_enhancers: int = 1) -> LocalEnhancer:
    return LocalEnhancer(
        input_nc=4,
        output_nc=3,
        ngf=4,
        n_downsample_global=2,
        n_blocks_global=1,
        n_local_enhancers=n_local_enhancers,
        n_blocks_local=1,
    )


def test_local_enhancer_shape_and_param_count() -> None:
    local = small_local()
    assert local.total_stride == 8
    out = local(torch.randn(2, 4, 32, 40))
    assert out.shape == (2, 3, 32, 40)
    assert out.abs().max() <= 1
    enhancer_down = conv_params(7, 4, 4) + conv_params(3, 4, 8)  # c7s1-4, d8
    enhancer_up = resblock_params(8) + conv_params(3, 8, 4) + conv_params(7, 4, 3)  # R8, u4, c7s1-3
    enhancer = enhancer_down + enhancer_up
    assert n_params(local) == global_body_params(4, 8, 2, 1) + enhancer
    assert n_params(local.global_body) == global_body_params(4, 8, 2, 1)


def test_local_enhancer_two_enhancers_widths() -> None:
    local = LocalEnhancer(
        input_nc=3, ngf=4, n_downsample_global=1, n_blocks_global=1, n_local_enhancers=2, n_blocks_local=1
    )
    assert local.total_stride == 8
    widths = [[m.out_channels for m in d if isinstance(m, nn.Conv2d)] for d in local.local_down]
    assert widths == [[8, 16], [4, 8]]  # coarse enhancer first
    assert [m for m in local.global_body if isinstance(m, nn.Conv2d)][0].out_channels == 16
    assert isinstance(local.local_up[1][-1], nn.Tanh)
    assert not any(isinstance(m, nn.Tanh) for m in local.local_up[0])
    assert local(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="multiple"):
        local(torch.randn(1, 3, 36, 32))


def test_local_enhancer_loads_global_generator_body() -> None:
    local = small_local()
    g1 = GlobalGenerator(input_nc=4, output_nc=3, ngf=8, n_downsampling=2, n_blocks=1)
    body_keys = {f"global_{k}" for k in g1.state_dict() if k.startswith("body.")}
    assert body_keys == {k for k in local.state_dict() if k.startswith("global_body.")}
    local.global_body.load_state_dict(g1.body.state_dict(), strict=True)
    x = torch.randn(1, 4, 16, 16)
    torch.testing.assert_close(local.global_body(x), g1.features(x))


def _params(local: LocalEnhancer, part: str) -> list[nn.Parameter]:
    return [p for m in local.part_modules()[part] for p in m.parameters()]


def test_local_enhancer_global_features_reach_output() -> None:
    torch.manual_seed(0)
    local = small_local()
    x = torch.randn(1, 4, 32, 32)
    before = local(x)
    with torch.no_grad():
        for p in _params(local, "global"):
            p.add_(0.5 * torch.randn_like(p))
    after = local(x)
    assert not torch.allclose(before, after, atol=1e-4)


def test_local_enhancer_parameter_groups_and_gradients() -> None:
    local = small_local()
    global_ids = {id(p) for p in _params(local, "global")}
    local_ids = {id(p) for p in _params(local, "local")}
    assert not global_ids & local_ids
    assert global_ids | local_ids == {id(p) for p in local.parameters()}
    local(torch.randn(2, 4, 16, 16)).square().mean().backward()
    for group in (_params(local, "global"), _params(local, "local")):
        params = list(group)
        assert all(p.grad is not None for p in params)
        assert sum(float(p.grad.abs().sum()) for p in params) > 0
    first_global_conv = next(m for m in local.global_body if isinstance(m, nn.Conv2d))
    assert first_global_conv.weight.grad.abs().sum() > 0


def test_local_enhancer_needs_an_enhancer() -> None:
    with pytest.raises(ValueError):
        LocalEnhancer(input_nc=3, n_local_enhancers=0)
