import logging
import os

import pytest
import torch
from torch import nn
from torchvision.models import vgg19
from torchvision.models.vgg import cfgs, make_layers

from networks.vgg import VGG19_LAYERS, VGG19Features

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def tv_features() -> nn.Sequential:
    """A randomly initialised torchvision VGG-19 feature stack (same constructor torchvision's vgg19 uses)."""
    torch.manual_seed(0)
    return make_layers(cfgs["E"]).eval()


@pytest.fixture(scope="module")
def full_state_path(tmp_path_factory: pytest.TempPathFactory, tv_features: nn.Sequential) -> str:
    """A torchvision-style full vgg19 state dict (features.* plus a classifier entry that must be ignored)."""
    state = {f"features.{k}": v for k, v in tv_features.state_dict().items()}
    state["classifier.6.weight"] = torch.randn(10, 4)
    path = str(tmp_path_factory.mktemp("vgg") / "vgg19_full.pth")
    torch.save(state, path)
    return path


def test_layer_indices_match_torchvision() -> None:
    assert VGG19_LAYERS["relu1_1"] == 1
    assert VGG19_LAYERS["relu2_1"] == 6
    assert VGG19_LAYERS["relu3_1"] == 11
    assert VGG19_LAYERS["relu4_1"] == 20
    assert VGG19_LAYERS["relu5_1"] == 29
    assert VGG19_LAYERS["relu5_4"] == 35
    with torch.device("meta"):
        reference = vgg19(weights=None).features
    for name, index in VGG19_LAYERS.items():
        kind = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}[name[:4]]
        assert isinstance(reference[index], kind), name


def test_channels_spatial_sizes_and_truncation() -> None:
    vgg = VGG19Features(weights=None)
    assert vgg.weights_source.startswith("random")
    assert len(vgg.features) == 30  # truncated right after relu5_1
    out = vgg(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert list(out) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert [v.shape[1] for v in out.values()] == [64, 128, 256, 512, 512]
    assert [v.shape[-1] for v in out.values()] == [32, 16, 8, 4, 2]
    assert len(VGG19Features(layers=("relu2_1",), weights=None).features) == 7


def test_keys_follow_requested_order_and_relu_not_inplace() -> None:
    vgg = VGG19Features(layers=("relu1_1", "conv1_1"), weights=None)
    out = vgg(torch.randn(1, 3, 8, 8))
    assert list(out) == ["relu1_1", "conv1_1"]
    assert out["conv1_1"].min() < 0  # a later in-place ReLU must not clobber the returned conv output
    torch.testing.assert_close(out["relu1_1"], out["conv1_1"].clamp_min(0))


def test_unknown_layer_and_bad_options() -> None:
    with pytest.raises(ValueError) as err:
        VGG19Features(layers=("relu9_1",), weights=None)
    assert "relu9_1" in str(err.value) and "relu4_1" in str(err.value)
    with pytest.raises(ValueError, match="input_range"):
        VGG19Features(layers=("relu1_1",), weights=None, input_range="0_255")
    with pytest.raises(ValueError, match="weights"):
        VGG19Features(layers=("relu1_1",), weights="places365")


def test_load_full_torchvision_state_dict(full_state_path: str, tv_features: nn.Sequential) -> None:
    vgg = VGG19Features(
        layers=("relu1_1", "relu3_1", "relu5_1"),
        weights_path=full_state_path,
        input_range="zero_one",
        normalize=False,
    )
    assert vgg.weights_source == f"file:{full_state_path}"
    x = torch.rand(2, 3, 32, 32)
    out = vgg(x)
    with torch.no_grad():
        torch.testing.assert_close(out["relu1_1"], tv_features[:2](x))
        torch.testing.assert_close(out["relu3_1"], tv_features[:12](x))
        torch.testing.assert_close(out["relu5_1"], tv_features[:30](x))


def test_load_features_only_state_dict_and_input_mapping(tmp_path, tv_features: nn.Sequential) -> None:
    path = str(tmp_path / "features_only.pth")
    torch.save({k: v for k, v in tv_features.state_dict().items() if int(k.split(".")[0]) < 3}, path)
    vgg = VGG19Features(layers=("relu1_2",), weights_path=path)  # default: [-1, 1] input, ImageNet norm
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = tv_features[:4](((y + 1) / 2 - IMAGENET_MEAN) / IMAGENET_STD)
    torch.testing.assert_close(vgg(y)["relu1_2"], expected)
    # the same file lacks conv2_1, so asking for relu2_1 must fail loudly, naming the file
    with pytest.raises(ValueError, match="features_only.pth"):
        VGG19Features(layers=("relu2_1",), weights_path=path)


def test_missing_weights_path(tmp_path) -> None:
    path = str(tmp_path / "nope" / "vgg19.pth")
    with pytest.raises(FileNotFoundError) as err:
        VGG19Features(layers=("relu1_1",), weights_path=path)
    assert path in str(err.value)


def test_corrupt_weights_file(tmp_path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError) as err:
        VGG19Features(layers=("relu1_1",), weights_path=str(path))
    assert str(path) in str(err.value)


def test_imagenet_missing_cache_warns(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected_path = os.path.join(str(tmp_path), "checkpoints", "vgg19-dcbb9e9d.pth")
    with caplog.at_level(logging.WARNING, logger="networks.vgg"), pytest.warns(UserWarning) as record:
        vgg = VGG19Features(layers=("relu1_1",), weights="imagenet")
    message = str(record[0].message)
    assert "RANDOM" in message and expected_path in message and "weights_path" in message
    assert any(expected_path in r.getMessage() for r in caplog.records)
    assert "random" in vgg.weights_source


def test_imagenet_loads_from_torchvision_cache(tmp_path, monkeypatch, tv_features: nn.Sequential) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    cache = tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth"
    torch.save({f"features.{k}": v for k, v in tv_features.state_dict().items() if k.startswith("0.")}, cache)
    vgg = VGG19Features(layers=("relu1_1",), weights="imagenet", input_range="zero_one", normalize=False)
    assert vgg.weights_source == f"torchvision-cache:{cache}"
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(vgg(x)["relu1_1"], tv_features[:2](x))


def test_frozen_and_stays_in_eval() -> None:
    vgg = VGG19Features(layers=("relu2_1",), weights=None)
    assert all(not p.requires_grad for p in vgg.parameters())
    parent = nn.ModuleDict({"vgg": vgg, "head": nn.Conv2d(3, 3, 1)})
    parent.train()
    assert parent["head"].training
    assert not vgg.training and not any(m.training for m in vgg.modules())
    # the input still receives gradients (perceptual loss back-propagates into the generator)
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    vgg(x)["relu2_1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())
