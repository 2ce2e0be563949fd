"""task=fetch_weights: the real download path (torch.hub) on a local file:// URL, into the hub cache, used by the
VGG-19 loader; a wrong hash is refused and leaves nothing behind."""

from __future__ import annotations

import hashlib

import pytest
import torch

from networks.vgg import VGG19Features
from tasks.fetch_weights import fetch_weights
from tests.conftest import compose_config


def _published(tmp_path) -> tuple[str, str, dict]:
    """A file standing for torchvision's vgg19-dcbb9e9d.pth (the first conv layer only: all relu1_1 needs)."""
    state = {"features.0.weight": torch.randn(64, 3, 3, 3), "features.0.bias": torch.randn(64)}
    folder = tmp_path / "server"
    folder.mkdir()
    path = folder / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest(), state


def test_fetch_lands_in_the_hub_cache_and_is_used(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url, sha, state = _published(tmp_path)
    cfg = compose_config(["task=fetch_weights", "task.only=[vgg19]", f"task.files.vgg19.url={url}", f"task.files.vgg19.sha256={sha}"],
                         tmp_path / "run")
    out = fetch_weights(cfg)
    assert out["vgg19"] == str(tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    vgg = VGG19Features(layers=["relu1_1"], weights="imagenet")
    assert vgg.weights_source.startswith("torchvision-cache:")
    assert torch.equal(vgg.features[0].weight, state["features.0.weight"])
    assert fetch_weights(cfg) == out  # in the cache with the right hash: not fetched again


def test_a_wrong_hash_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url, sha, _ = _published(tmp_path)
    wrong = ("0" if sha[0] != "0" else "1") + sha[1:]
    cfg = compose_config(["task=fetch_weights", "task.only=[vgg19]", f"task.files.vgg19.url={url}", f"task.files.vgg19.sha256={wrong}"],
                         tmp_path / "run")
    with pytest.raises(ValueError, match="does not have the published SHA-256"):
        fetch_weights(cfg)
    assert not list((tmp_path / "torch" / "hub" / "checkpoints").glob("*"))
    # the default entry's hash is the prefix in torchvision's file name
    cfg = compose_config(["task=fetch_weights", "task.only=[vgg19]", f"task.files.vgg19.url={url}"], tmp_path / "run2")
    with pytest.raises(ValueError, match="published SHA-256 dcbb9e9d"):
        fetch_weights(cfg)
