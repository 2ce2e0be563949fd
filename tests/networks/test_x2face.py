"""X2Face networks: shapes, parameter counts at paper sizes, the identity warp, confidence-weighted averaging by hand,
gradients, equality with a nested re-implementation of the official blocks, and the official-checkpoint loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from networks.x2face import (
    DrivingNet,
    EmbeddingNet,
    FaceIdentityNet,
    PoseCode,
    X2Face,
    identity_grid,
    load_official,
    official_to_ours,
    ours_to_official,
    warp,
)


def tiny(depth: int = 5, ngf: int = 4) -> X2Face:
    torch.manual_seed(0)
    return X2Face(EmbeddingNet(depth=depth, ngf=ngf), DrivingNet(depth=depth, ngf=ngf, bottleneck=8))


# ----------------------------------------------------------------- a nested re-implementation of the official code
class _OfficialBlock(nn.Module):
    """UnetSkipConnectionBlockBetterUpsampler (SkipNet / NoSkipNet_X2Face) as written officially: nested blocks,
    in-place LeakyReLU/ReLU, align_corners=True upsampling (PyTorch 0.2's behaviour)."""

    def __init__(self, outer, inner, input_nc=None, sub=None, outermost=False, innermost=False, skip=True,
                 tanh=False):
        super().__init__()
        self.outermost, self.innermost, self.skip = outermost, innermost, skip
        input_nc = outer if input_nc is None else input_nc
        conv = nn.Conv2d(input_nc, inner, 4, 2, 1, bias=False)
        ups = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        up_in = inner * 2 if (skip and not innermost) else inner
        upconv = nn.Conv2d(up_in, outer, 3, 1, 1, bias=False)
        if outermost:
            self.down = nn.Sequential(conv)
            self.up = nn.Sequential(nn.ReLU(True), ups, upconv, *([nn.Tanh()] if tanh else []))
        elif innermost:
            self.down = nn.Sequential(nn.LeakyReLU(0.2, True), conv)
            self.up = nn.Sequential(nn.ReLU(True), ups, upconv, nn.BatchNorm2d(outer))
        else:
            self.down = nn.Sequential(nn.LeakyReLU(0.2, True), conv, nn.BatchNorm2d(inner))
            self.up = nn.Sequential(nn.ReLU(True), ups, upconv, nn.BatchNorm2d(outer))
        self.submodule = sub

    def forward(self, x_orig):
        x_fv = self.down(x_orig)
        if self.innermost:
            x = self.up(x_fv)
            return (torch.cat([x, x_orig], 1) if self.skip else x), x_fv
        x, x_fv = self.submodule(x_fv)
        x = self.up(x)
        if self.outermost or not self.skip:
            return x, x_fv
        return torch.cat([x, x_orig], 1), x_fv


def _official_unet(out_nc, depth, ngf, inner_nc, skip, tanh):
    block = _OfficialBlock(ngf * 8, inner_nc, innermost=True, skip=skip)
    for _ in range(depth - 5):
        block = _OfficialBlock(ngf * 8, ngf * 8, sub=block, skip=skip)
    for outer, inner in ((ngf * 4, ngf * 8), (ngf * 2, ngf * 4), (ngf, ngf * 2)):
        block = _OfficialBlock(outer, inner, sub=block, skip=skip)
    block = _OfficialBlock(out_nc, ngf, input_nc=3, sub=block, outermost=True, skip=skip, tanh=tanh)
    wrapper = nn.Module()
    wrapper.netG = nn.Module()
    wrapper.netG.model = block
    return wrapper


class _OfficialX2Face(nn.Module):
    """UnwrappedFaceWeightedAverage.forward, on the CPU."""

    def __init__(self, depth, ngf, inner_nc):
        super().__init__()
        self.pix2pixUnwrapped = _official_unet(3, depth, ngf, ngf * 8, skip=True, tanh=False)
        self.pix2pixSampler = _official_unet(2, depth, ngf, inner_nc, skip=False, tanh=True)

    def forward(self, target_pose, *input_imgs):
        xs = np.linspace(-1, 1, input_imgs[0].size(2))
        xs = np.stack(np.meshgrid(xs, xs), 2)
        xs = torch.Tensor(xs).unsqueeze(0).repeat(input_imgs[0].size(0), 1, 1, 1)
        warped, conf = [], []
        for img in input_imgs:
            temp = self.pix2pixUnwrapped.netG.model(img)[0]
            c = temp[:, 2:3].unsqueeze(4).exp().add(0.1)
            grid = torch.tanh(temp[:, 0:2]).permute(0, 2, 3, 1) + xs
            w = F.grid_sample(img, grid, align_corners=True).unsqueeze(4)
            warped.append(w * c.expand_as(w))
            conf.append(c)
        result_xc = torch.cat(warped, 4).sum(4) / torch.cat(conf, 4).sum(4)
        sampler = torch.tanh(self.pix2pixSampler.netG.model(target_pose)[0]).permute(0, 2, 3, 1) + xs
        return F.grid_sample(result_xc, sampler, align_corners=True)


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


# --------------------------------------------------------------------------------------------------- tests
def test_shapes_and_driving_vector() -> None:
    model = tiny()
    src, drv = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    emb_out, emb_v = model.embedding(src)
    assert emb_out.shape == (2, 3, 32, 32) and emb_v.shape == (2, 32, 1, 1)
    drv_out, v = model.driving(drv)
    assert drv_out.shape == (2, 2, 32, 32) and v.shape == (2, 8, 1, 1)
    assert model.driving.driving_vector(drv).shape == (2, 8)
    assert model(drv, src).shape == (2, 3, 32, 32)
    assert model(drv, torch.rand(2, 3, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_parameter_counts_at_paper_sizes() -> None:
    """Counted by hand from the official layer list (bias-free convs, affine batch norms)."""
    def count(out_nc, inner_nc, skip):
        w = [64, 128, 256, 512, 512, 512, 512, inner_nc]
        outer_in = [3] + w[:-1]
        outer_out = [out_nc] + w[:-1]
        n = sum(i * o * 16 for i, o in zip(outer_in, w, strict=True))                      # 4x4 down convs
        n += sum(2 * c for c in w[1:-1])                                       # down batch norms (not first/last)
        n += sum((2 * c if skip and k < 7 else c) * o * 9 for k, (c, o) in enumerate(zip(w, outer_out, strict=True)))  # 3x3 ups
        n += sum(2 * c for c in outer_out[1:])                                 # up batch norms (not outermost)
        return n

    emb, drv = EmbeddingNet(), DrivingNet()
    assert sum(p.numel() for p in emb.parameters()) == count(3, 512, True) == 39_157_760
    assert sum(p.numel() for p in drv.parameters()) == count(2, 128, False) == 25_614_080
    assert emb.widths == [64, 128, 256, 512, 512, 512, 512, 512] and drv.widths[-1] == 128
    assert emb.total_stride == 256


def test_zero_flow_is_the_identity_warp() -> None:
    img = torch.rand(2, 3, 16, 12)
    assert torch.allclose(warp(img, torch.zeros(2, 2, 16, 12), align_corners=True), img, atol=1e-6)
    grid = identity_grid(1, 3, 5)
    assert torch.allclose(grid[0, 0, :, 0], torch.linspace(-1, 1, 5)) and torch.allclose(grid[0, :, 0, 1],
                                                                                        torch.linspace(-1, 1, 3))


def test_confidence_weighted_average_by_hand() -> None:
    model = tiny()
    model.eval()
    sources = [torch.rand(1, 3, 32, 32) for _ in range(3)]
    embedded, conf = model.embed(sources)
    num, den = 0, 0
    for s in sources:
        out = model.embedding(s)[0]
        c = torch.exp(out[:, 2:3]) + 0.1
        num = num + c * warp(s, out[:, :2])
        den = den + c
    assert conf.shape == (1, 3, 1, 32, 32) and float(conf.min().detach()) > 0.1
    assert torch.allclose(embedded, num / den, atol=1e-5)
    # one source: the average is that source's embedded face whatever its confidence
    one, _ = model.embed(sources[0])
    out = model.embedding(sources[0])[0]
    assert torch.allclose(one, warp(sources[0], out[:, :2]), atol=1e-6)


def test_gradients_reach_both_networks() -> None:
    model = tiny()
    loss = (model(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)) - torch.rand(2, 3, 32, 32)).abs().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(float(p.grad.abs().sum()) > 0 for p in model.embedding.parameters())
    assert any(float(p.grad.abs().sum()) > 0 for p in model.driving.parameters())


@pytest.mark.parametrize("depth", [5, 6])
def test_equal_to_the_official_nested_blocks_and_the_loader(tmp_path, depth: int) -> None:
    """Our weights written in the official layout load into the nested official structure (strictly) and give the
    same output; the file then loads back through ``load_official`` into a fresh model, output identical."""
    model = tiny(depth=depth)
    _randomize_bn(model)
    model.eval()
    official = _OfficialX2Face(depth, 4, 8).eval()
    state = ours_to_official(model.state_dict())
    official.load_state_dict(state, strict=True)
    assert set(official_to_ours(state)) == set(model.state_dict())
    drv, srcs = torch.rand(2, 3, 64, 64), [torch.rand(2, 3, 64, 64) for _ in range(2)]
    with torch.no_grad():
        ours, ref = model(drv, srcs), official(drv, *srcs)
    assert float((ours - ref).abs().max()) < 1e-6  # float32 rounding only (one batched pass for the sources)
    path = tmp_path / "x2face_model.pth"
    # as the released file (PyTorch 0.2): no batch-norm num_batches_tracked counters, plus the optimizer state
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(state)
    torch.save({"state_dict": old, "optimizer": {}}, path)
    fresh = tiny(depth=depth)
    torch.manual_seed(5)
    fresh.apply(lambda m: m.reset_parameters() if isinstance(m, nn.Conv2d) else None)
    load_official(fresh, str(path))
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(drv, srcs), ours)


@pytest.mark.parametrize("num_sources", [1, 3])
def test_train_mode_batch_norm_as_the_official_per_source_passes(num_sources: int) -> None:
    """In training the official code runs the embedding network once per source frame, so batch norm uses each
    source's own batch statistics and updates its running statistics once per source: ours does the same (a single
    stacked pass would normalise over all sources together)."""
    model = tiny(depth=5)
    official = _OfficialX2Face(5, 4, 8)
    official.load_state_dict(ours_to_official(model.state_dict()), strict=True)
    model.train()
    official.train()
    drv, srcs = torch.rand(2, 3, 32, 32), [torch.rand(2, 3, 32, 32) for _ in range(num_sources)]
    with torch.no_grad():
        ours, ref = model(drv, srcs), official(drv, *srcs)
    assert float((ours - ref).abs().max()) < 1e-6
    theirs, mine = official.state_dict(), ours_to_official(model.state_dict())
    for key in (k for k in mine if ".running_" in k):
        assert torch.allclose(mine[key], theirs[key], atol=1e-6), key


def test_identity_grid_equals_the_official_float64_grid() -> None:
    """The official grid is NumPy's float64 linspace rounded to float32; a float32 linspace differs by an ulp at some
    pixels (about 1e-5 in a 256x256 generated frame)."""
    for n in (64, 256):
        xs = np.linspace(-1, 1, n)
        ref = torch.from_numpy(np.stack(np.meshgrid(xs, xs), 2)).float()
        assert torch.equal(identity_grid(1, n, n)[0], ref)
    assert not torch.equal(torch.linspace(-1, 1, 256), ref[0, :, 0])  # why the grid is built in float64


def test_driving_vector_is_not_overwritten() -> None:
    """Decoding a given driving vector leaves it unchanged (the official in-place ReLU on the bottleneck would
    rectify it), and the driving network's returned bottleneck is the driving vector (the innermost conv's output)."""
    model = tiny().eval()
    v = torch.randn(2, 8)
    given = v.clone()
    with torch.no_grad():
        model.driving.flow_from_vector(given)
        assert torch.equal(given, v)
        drv = torch.rand(2, 3, 32, 32)
        assert torch.equal(model.driving(drv)[1].flatten(1), model.driving.driving_vector(drv))
        assert float(model.driving.driving_vector(drv).min()) < 0  # not rectified


def test_official_loader_errors(tmp_path) -> None:
    model = tiny()
    with pytest.raises(FileNotFoundError, match="not found"):
        load_official(model, str(tmp_path / "nope.pth"))
    (tmp_path / "bad.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="could not read"):
        load_official(model, str(tmp_path / "bad.pth"))
    torch.save({"state_dict": ours_to_official(tiny(depth=6).state_dict())}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit the X2Face networks"):
        load_official(model, str(tmp_path / "other.pth"))


def test_pose_code_retarget() -> None:
    torch.manual_seed(0)
    pc = PoseCode(bottleneck=8).eval()
    v = torch.randn(4, 8)
    assert torch.allclose(pc.retarget(v, pc.pose_from_vector(v)), v, atol=1e-6)  # same pose: unchanged
    assert pc.retarget(v, torch.zeros(4, 3)).shape == (4, 8)


def test_identity_net_features_and_torchvision_layout(tmp_path) -> None:
    torch.manual_seed(0)
    net = FaceIdentityNet(num_classes=5, channels=(4, 8, 8, 16, 16), fc=32, pool_size=2).eval()
    out = net(torch.rand(2, 3, 64, 64))
    assert [out[f"conv{i}"].shape[1] for i in range(1, 8)] == [4, 8, 8, 16, 16, 32, 32]
    assert out["logits"].shape == (2, 5)
    # torchvision VGG-11 layout: features.N + classifier.0/3/6 as Linear layers
    tv = {k: v for k, v in net.state_dict().items() if k.startswith("features.")}
    for ours, theirs in (("fc6", "classifier.0"), ("fc7", "classifier.3"), ("fc8", "classifier.6")):
        w = getattr(net, ours).weight
        tv[f"{theirs}.weight"] = w.detach().flatten(1).clone()
        tv[f"{theirs}.bias"] = getattr(net, ours).bias.detach().clone()
    torch.save(tv, tmp_path / "vgg_face.pth")
    other = FaceIdentityNet(num_classes=5, channels=(4, 8, 8, 16, 16), fc=32, pool_size=2,
                            weights_path=str(tmp_path / "vgg_face.pth")).eval()
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(other(x)["logits"], net(x)["logits"])
    with pytest.raises(ValueError, match="num_classes"):
        FaceIdentityNet(num_classes=7, channels=(4, 8, 8, 16, 16), fc=32, pool_size=2,
                        weights_path=str(tmp_path / "vgg_face.pth"))


def test_the_warp_keeps_float32_coordinates_under_bf16_autocast() -> None:
    """Issue 'Train 2x faster': X2Face under bf16 autocast was 0.94 off fp32, from a grid built in the flow's bf16."""
    from networks.x2face import warp

    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 256, 256, generator=g).bfloat16()  # what bf16 convolutions hand the warp
    flow = (torch.randn(1, 2, 256, 256, generator=g) * 0.01).bfloat16()
    exact = warp(image.float(), flow.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = warp(image, flow)
    assert (mixed.float() - exact).abs().max() < 1e-2  # bf16 rounding of the output only
    identity = warp(image.float(), torch.zeros(1, 2, 256, 256))
    assert (identity - image.float()).abs().max() < 1e-4
