"""Speed levers keep outputs: eager fp32 vs the lever on, at tiny size (lightning_modules/speed.py, networks/lst.py).

Tolerances: channels-last and torch.compile change only the order of float additions (1e-5 absolute on outputs
of order 1); in-place ReLU changes nothing (bit-identical outputs and gradients).
"""

from __future__ import annotations

import copy

import pytest
import torch

from lightning_modules.factory import build_module
from lightning_modules.speed import apply_speed, apply_speed_config, networks_of
from networks.lst import LinearStylizer, LinearTransform, VGGDecoder, VGGEncoder
from tests.conftest import compose_config

REORDER_ATOL = 1e-5


def _stylizer(level: str = "r31") -> LinearStylizer:
    torch.manual_seed(0)
    return LinearStylizer(VGGEncoder(level, weights=None), LinearTransform(256 if level == "r31" else 512, 8),
                          VGGDecoder(level)).eval()


def test_inplace_relu_in_lst_changes_neither_outputs_nor_gradients(monkeypatch) -> None:
    stylizer = _stylizer()
    content, style = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)

    def run(inplace: bool) -> tuple[torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(VGGEncoder, "inplace_activations", inplace)
        monkeypatch.setattr(VGGDecoder, "inplace_activations", inplace)
        x = content.clone().requires_grad_(True)
        out = stylizer(x, style)
        out.square().sum().backward()
        return out.detach(), x.grad

    out_inplace, grad_inplace = run(True)
    out_plain, grad_plain = run(False)
    assert torch.equal(out_inplace, out_plain)
    assert torch.equal(grad_inplace, grad_plain)


def test_channels_last_lst_stylisation_equals_nchw() -> None:
    stylizer = _stylizer("r41")
    fast = apply_speed(copy.deepcopy(stylizer), channels_last=True)
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        expected, got = stylizer(content, style), fast(content, style)
    assert fast.encoder.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert (got - expected).abs().max() < REORDER_ATOL


def _batch(size: int = 16) -> dict[str, torch.Tensor]:
    from datamodules.pix2pixhd import SyntheticScenesDataset

    ds = SyntheticScenesDataset(num_samples=1, image_size=(size, size), label_nc=8, seed=2)
    return {k: ds[0][k].unsqueeze(0) for k in ("label", "inst", "image")}


def test_channels_last_pix2pixhd_generation_and_training_step_equal_nchw(make_config) -> None:
    torch.manual_seed(0)
    plain = build_module(make_config())
    fast = build_module(make_config("speed.channels_last=true"))
    fast.load_state_dict(plain.state_dict())
    conv = next(p for p in fast.netG.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    batch = _batch()
    assert (fast.generate(batch) - plain.generate(batch)).abs().max() < REORDER_ATOL
    logs = []
    for module in (plain, fast):
        opt_g, opt_d = [c["optimizer"] for c in module.configure_optimizers()]
        logs.append(module.gan_step(batch, opt_g, opt_d))
    for name, value in logs[0].items():
        assert logs[1][name] == pytest.approx(float(value), abs=REORDER_ATOL), name
    # Adam's first step is about lr * sign(grad): an element whose gradient is ~0 may step the other way (a 2 * lr
    # difference); every other element agrees within REORDER_ATOL
    diff = torch.cat([(p - q).abs().flatten() for p, q in zip(plain.netG.parameters(), fast.netG.parameters(),
                                                              strict=True)])
    assert diff.max() <= 2 * 2e-4 + REORDER_ATOL
    assert (diff > REORDER_ATOL).float().mean() < 0.01


def test_networks_of_lists_each_top_level_network_once(make_config) -> None:
    module = build_module(make_config())
    nets = networks_of(module)
    assert {id(n) for n in nets} == {id(module.netG), id(module.netD), id(module.netE),
                                      id(module.objective.perceptual.vgg)}


def test_unknown_speed_option_is_a_clear_error(make_config) -> None:
    with pytest.raises(ValueError, match="speed.channel_last is not a speed option"):
        apply_speed_config(torch.nn.Linear(1, 1), {"channel_last": True})


@pytest.mark.slow
def test_compiled_generator_equals_eager() -> None:
    from networks.pix2pixhd import GlobalGenerator

    torch.manual_seed(0)
    g = GlobalGenerator(input_nc=4, output_nc=3, ngf=4, n_downsampling=1, n_blocks=1, norm="instance").eval()
    compiled = copy.deepcopy(g)
    compiled.compile()
    x = torch.randn(1, 4, 16, 16)
    with torch.inference_mode():
        assert (compiled(x) - g(x)).abs().max() < REORDER_ATOL
    assert list(compiled.state_dict()) == list(g.state_dict())  # checkpoints keep their keys


def test_instance_norm_gradient_is_right_for_a_channels_last_batch_of_one() -> None:
    """The shared InstanceNorm2d works around PyTorch's CPU backward for batch 1 with a channels-last gradient:
    the input gradient equals the one from an NCHW gradient (plain nn.InstanceNorm2d is off by O(1) there)."""
    from networks.blocks import get_norm_layer

    torch.manual_seed(0)
    x, g = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8)
    norm = get_norm_layer("instance")(8)

    def input_grad(grad_out: torch.Tensor) -> torch.Tensor:
        xr = x.clone().requires_grad_(True)
        return torch.autograd.grad(norm(xr), xr, grad_out)[0]

    expected = input_grad(g)
    assert (input_grad(g.contiguous(memory_format=torch.channels_last)) - expected).abs().max() < REORDER_ATOL


def test_activation_checkpointing_is_exact_in_fp32() -> None:
    """speed.checkpoint_activations: the residual blocks (and D blocks) recomputed in backward give the same
    gradients bit for bit."""
    from lightning_modules.speed import checkpoint_activations
    from networks.discriminators import MultiscaleDiscriminator
    from networks.pix2pixhd import GlobalGenerator

    def grads(flag):
        torch.manual_seed(0)
        g = GlobalGenerator(input_nc=4, output_nc=3, ngf=8, n_downsampling=2, n_blocks=2)
        d = MultiscaleDiscriminator(input_nc=3, ndf=8, n_layers=2, num_D=2)
        net = torch.nn.ModuleDict({"g": g, "d": d})
        checkpoint_activations(net, flag)
        calls = {"g": 0, "d": 0}
        for m in net.modules():  # a recomputed block runs its forward again in backward
            if isinstance(m, torch.nn.Sequential) and m is not getattr(g, "body", None):
                key = "d" if any(m is b for b in d.modules()) else "g"
                m.register_forward_pre_hook(lambda *_, key=key: calls.__setitem__(key, calls[key] + 1))
        x = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(1))
        loss = sum(f.mean() for scale in d(g(x)) for f in scale)
        loss.backward()
        return [p.grad.clone() for p in net.parameters()], calls

    plain, plain_calls = grads(False)
    for flag in ("generator", "all"):
        checkpointed, calls = grads(flag)
        assert all(torch.equal(a, b) for a, b in zip(plain, checkpointed, strict=True)), flag
        assert calls["g"] > plain_calls["g"] and (calls["d"] > plain_calls["d"]) == (flag == "all"), calls


def test_activation_checkpointing_from_the_config(tmp_path) -> None:
    from networks.blocks import ResnetBlock
    from networks.discriminators import NLayerDiscriminator

    module = build_module(compose_config(["speed.checkpoint_activations=generator"], tmp_path))
    blocks = [m for m in module.netG.modules() if isinstance(m, ResnetBlock)]
    assert blocks and all(b.checkpoint_activations for b in blocks)
    assert not any(m.checkpoint_activations for m in module.modules() if isinstance(m, NLayerDiscriminator))
    with pytest.raises(ValueError, match="speed.checkpoint_activations='some'"):
        build_module(compose_config(["speed.checkpoint_activations=some"], tmp_path))
