"""Linear Style Transfer networks: layouts and parameter counts (official encoder/decoder/MulLayer), the linear
transformation's algebra, ImageNet weight loading from torchvision's cache, and the stylizer."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.nn.functional as F

from networks.lst import CovarianceMatrixNet, LinearStylizer, LinearTransform, VGGDecoder, VGGEncoder
from networks.vgg import _truncated_vgg19_features


def _conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


# Hand-computed from the official layouts (libs/models.py encoder3/4, decoder3/4; libs/Matrix.py CNN, MulLayer).
ENCODER_R31 = _conv(3, 3, 1) + _conv(3, 64) + _conv(64, 64) + _conv(64, 128) + _conv(128, 128) + _conv(128, 256)
ENCODER_R41 = ENCODER_R31 + 3 * _conv(256, 256) + _conv(256, 512)
DECODER_R31 = _conv(256, 128) + _conv(128, 128) + _conv(128, 64) + _conv(64, 64) + _conv(64, 3)
DECODER_R41 = (_conv(512, 256) + 3 * _conv(256, 256) + _conv(256, 128) + _conv(128, 128) + _conv(128, 64)
               + _conv(64, 64) + _conv(64, 3))


def _cnn(c: int, m: int = 32) -> int:
    return _conv(c, c // 2) + _conv(c // 2, c // 4) + _conv(c // 4, m) + m * m * m * m + m * m


def _n(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_official_layouts() -> None:
    assert (ENCODER_R31, ENCODER_R41) == (555_340, 3_505_740)  # the literal numbers, for the record
    assert (DECODER_R31, DECODER_R41) == (555_075, 3_505_219)
    assert _n(VGGEncoder("r31", weights=None)) == ENCODER_R31
    assert _n(VGGEncoder("r41", weights=None)) == ENCODER_R41
    assert _n(VGGDecoder("r31")) == DECODER_R31
    assert _n(VGGDecoder("r41")) == DECODER_R41
    r41 = 2 * _cnn(512) + _conv(512, 32, 1) + _conv(32, 512, 1)
    assert r41 == 5_156_192
    assert _n(LinearTransform(512, 32)) == r41
    assert _n(LinearTransform(256, 32)) == 2 * _cnn(256) + _conv(256, 32, 1) + _conv(32, 256, 1)


def test_parameter_names_are_the_official_ones() -> None:
    """So the official vgg_r41.pth / dec_r41.pth / r41.pth state dicts load as they are."""
    enc = set(VGGEncoder("r41", weights=None).state_dict())
    assert enc == {f"conv{i}.{p}" for i in range(1, 11) for p in ("weight", "bias")}
    assert set(VGGDecoder("r41").state_dict()) == {f"conv{i}.{p}" for i in range(11, 20) for p in ("weight", "bias")}
    assert set(VGGDecoder("r31").state_dict()) == {f"conv{i}.{p}" for i in range(7, 12) for p in ("weight", "bias")}
    mul = {f"{net}.convs.{i}.{p}" for net in ("snet", "cnet") for i in (0, 2, 4) for p in ("weight", "bias")}
    mul |= {f"{net}.fc.{p}" for net in ("snet", "cnet") for p in ("weight", "bias")}
    mul |= {f"{c}.{p}" for c in ("compress", "unzip") for p in ("weight", "bias")}
    assert set(LinearTransform(512, 32).state_dict()) == mul


@pytest.mark.parametrize("level,channels,stride", [("r31", 256, 4), ("r41", 512, 8)])
def test_encoder_decoder_shapes(level: str, channels: int, stride: int) -> None:
    enc, dec = VGGEncoder(level, weights=None), VGGDecoder(level)
    assert (enc.output_channels, enc.total_stride) == (channels, stride)
    x = torch.rand(2, 3, 32, 24)
    feat = enc(x)
    assert feat.shape == (2, channels, 32 // stride, 24 // stride)
    feats = enc(x, return_features=["r11", "r21", "r31"])
    assert list(feats) == ["r11", "r21", "r31"]
    assert feats["r11"].shape == (2, 64, 32, 24)
    assert feats["r21"].shape == (2, 128, 16, 12)
    assert feats["r31"].shape == (2, 256, 8, 6)
    assert torch.all(feats["r31"] >= 0)  # ReLU outputs
    if level == "r41":
        assert enc(x, return_features=["r41"])["r41"].shape == feat.shape
        assert torch.equal(enc(x, return_features=["r41"])["r41"], feat)
    else:
        assert torch.equal(feats["r31"], feat)
    assert dec(feat).shape == x.shape
    with pytest.raises(ValueError, match="r51"):
        enc(x, return_features=["r51"])


def test_covariance_matrix_net_output() -> None:
    net = CovarianceMatrixNet(16, matrix_size=8)
    x = torch.randn(3, 16, 5, 7)
    out = net(x)
    assert out.shape == (3, 8, 8)
    f = net.convs(x).reshape(3, 8, 35)
    cov = f @ f.transpose(1, 2) / 35
    assert torch.allclose(out, net.fc(cov.reshape(3, 64)).view(3, 8, 8), atol=1e-5)
    assert [m.out_channels for m in net.convs if isinstance(m, torch.nn.Conv2d)] == [8, 4, 8]


def _identity_transform(c: int) -> LinearTransform:
    t = LinearTransform(c, matrix_size=c)
    eye = torch.eye(c).view(c, c, 1, 1)
    with torch.no_grad():
        t.compress.weight.copy_(eye)
        t.compress.bias.zero_()
        t.unzip.weight.copy_(eye)
        t.unzip.bias.zero_()
    return t


def test_identity_matrix_reproduces_the_features() -> None:
    t = _identity_transform(8)
    feat = torch.randn(2, 8, 6, 5)
    mean = feat.mean(dim=(2, 3), keepdim=True)
    out = t.transform_with_matrix(feat, torch.eye(8).expand(2, 8, 8), mean)
    assert torch.allclose(out, feat, atol=1e-5)
    # with another style mean only the mean moves (Eq. 2: centre, transform, add the style mean)
    other = torch.randn(2, 8, 1, 1)
    shifted = t.transform_with_matrix(feat, torch.eye(8)[None], other)
    assert torch.allclose(shifted, feat - mean + other, atol=1e-5)


def test_content_and_style_of_different_sizes_and_the_api_agree() -> None:
    torch.manual_seed(0)
    t = LinearTransform(16, matrix_size=8)
    c, s = torch.randn(2, 16, 5, 7), torch.randn(2, 16, 9, 4)
    out, matrix = t(c, s)
    assert out.shape == c.shape and matrix.shape == (2, 8, 8)
    t_style, s_mean = t.style_statistics(s)
    assert t_style.shape == (2, 8, 8) and s_mean.shape == (2, 16, 1, 1)
    assert torch.allclose(s_mean, s.mean(dim=(2, 3), keepdim=True))
    t_content = t.content_matrix(c)
    assert torch.allclose(matrix, t_style @ t_content, atol=1e-6)
    assert torch.allclose(t.apply_style(c, t_style, s_mean), out, atol=1e-5)
    assert torch.allclose(t.apply_style(c, t_style, s_mean, t_content=t_content), out, atol=1e-5)
    assert torch.allclose(t.transform_with_matrix(c, matrix, s_mean), out, atol=1e-5)
    # the content is centred, so the output's mean is the style mean plus the 1x1 convs' bias path only
    wu = t.unzip.weight.view(16, 8)
    bias_path = (wu @ (matrix @ t.compress.bias).unsqueeze(-1)).squeeze(-1) + t.unzip.bias
    assert torch.allclose(out.mean(dim=(2, 3)), s_mean.view(2, 16) + bias_path, atol=1e-4)
    # one style code broadcasts over a content batch (video: the style code is computed once)
    one = t.apply_style(c, t_style[:1], s_mean[:1])
    assert torch.allclose(one[1], t(c[1:], s[:1])[0][0], atol=1e-5)


def test_module_apply_still_reaches_every_submodule() -> None:
    t = LinearTransform(16, matrix_size=8)
    seen: list[str] = []
    t.apply(lambda m: seen.append(type(m).__name__))
    assert "CovarianceMatrixNet" in seen and seen[-1] == "LinearTransform"


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> str:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return str(tmp_path / "hub")


def _write_fake_vgg19(hub: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    features = _truncated_vgg19_features(30)
    state = {f"features.{k}": v.clone() for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # the real file has the classifier: it is ignored
    os.makedirs(os.path.join(hub, "checkpoints"))
    torch.save(state, os.path.join(hub, "checkpoints", "vgg19-dcbb9e9d.pth"))
    return state


def test_imagenet_weights_come_from_the_torchvision_cache(fake_hub: str) -> None:
    state = _write_fake_vgg19(fake_hub)
    enc = VGGEncoder("r41", weights="imagenet")
    assert enc.weights_source.startswith("imagenet:") and fake_hub in enc.weights_source
    for conv, index in (("conv2", 0), ("conv3", 2), ("conv4", 5), ("conv6", 10), ("conv9", 16), ("conv10", 19)):
        assert torch.equal(getattr(enc, conv).weight, state[f"features.{index}.weight"]), conv
        assert torch.equal(getattr(enc, conv).bias, state[f"features.{index}.bias"]), conv
    x = torch.rand(2, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(enc.conv1(x), (x - mean) / std, atol=1e-5)
    # relu1_1 = VGG conv1_1 on the normalised image (reflection padding, as in the official encoder)
    r11 = F.relu(F.conv2d(F.pad((x - mean) / std, (1, 1, 1, 1), mode="reflect"), state["features.0.weight"],
                          state["features.0.bias"]))
    assert torch.allclose(enc(x, return_features=["r11"])["r11"], r11, atol=1e-4)


def test_missing_cache_warns_that_the_encoder_is_random(fake_hub: str) -> None:
    with pytest.warns(UserWarning, match="RANDOM") as record:
        enc = VGGEncoder("r31", weights="imagenet")
    assert "vgg19-dcbb9e9d.pth" in str(record[0].message)
    assert enc.weights_source.startswith("random")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = VGGEncoder("r31", weights=None)  # random on request: no warning
    assert quiet.weights_source == "random (requested)"


def test_weights_path_loads_a_state_dict_strictly(tmp_path) -> None:
    src = VGGEncoder("r31", weights=None)
    path = tmp_path / "vgg_r31.pth"
    torch.save(src.state_dict(), path)
    enc = VGGEncoder("r31", weights="imagenet", weights_path=str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(enc.state_dict()[k], v)
    assert enc.weights_source == f"file:{path}"
    with pytest.raises(ValueError, match="does not match"):
        VGGEncoder("r41", weights_path=str(path))  # an r31 file for an r41 encoder
    dec_path = tmp_path / "dec_r31.pth"
    torch.save(VGGDecoder("r31").state_dict(), dec_path)
    assert VGGDecoder("r31", weights_path=str(dec_path)).weights_source.startswith("file:")


def _stylizer(level: str = "r31") -> LinearStylizer:
    torch.manual_seed(0)
    c = 256 if level == "r31" else 512
    return LinearStylizer(VGGEncoder(level, weights=None), LinearTransform(c, 8), VGGDecoder(level)).eval()


def test_stylizer_any_size_alpha_and_codes() -> None:
    net = _stylizer("r31")
    content, style = torch.rand(2, 3, 18, 22), torch.rand(1, 3, 20, 16)  # 18x22: not a multiple of the stride 4
    with torch.no_grad():
        out = net(content, style.expand(2, -1, -1, -1))
        assert out.shape == content.shape and out.min() >= 0 and out.max() <= 1
        t_style, mean = net.style_code(style)
        assert torch.allclose(net.stylize_with_code(content, t_style, mean), out, atol=1e-5)
        # alpha = 0: the content's own features, decoded
        padded = F.pad(content, (0, 2, 0, 2), mode="replicate")
        recon = net.decoder(net.encoder(padded))[..., :18, :22].clamp(0, 1)
        assert torch.allclose(net(content, style.expand(2, -1, -1, -1), alpha=0.0), recon, atol=1e-5)
        assert not torch.allclose(out, recon, atol=1e-3)
    with pytest.raises(ValueError, match="alpha"):
        net(content, style, alpha=1.5)


def test_mixing_codes_equals_mixing_transformed_features() -> None:
    net = _stylizer("r31")
    with torch.no_grad():
        feat = net.encoder(torch.rand(1, 3, 16, 16))
        a, b = net.style_code(torch.rand(1, 3, 16, 16)), net.style_code(torch.rand(1, 3, 24, 16))
        mixed = LinearStylizer.mix_codes([a, b], [3.0, 1.0])  # normalised to 0.75 / 0.25
        expected = 0.75 * net.transform.apply_style(feat, *a) + 0.25 * net.transform.apply_style(feat, *b)
        assert torch.allclose(net.transform.apply_style(feat, *mixed), expected, atol=1e-4)
        only_a = LinearStylizer.mix_codes([a, b], [1.0, 0.0])
        assert torch.allclose(only_a[0], a[0]) and torch.allclose(only_a[1], a[1])
    with pytest.raises(ValueError, match="sum to 0"):
        LinearStylizer.mix_codes([a, b], [1.0, -1.0])


def test_mismatched_levels_are_refused() -> None:
    with pytest.raises(ValueError, match="same level"):
        LinearStylizer(VGGEncoder("r31", weights=None), LinearTransform(512, 8), VGGDecoder("r41"))
    with pytest.raises(ValueError, match="r51"):
        VGGEncoder("r51", weights=None)
