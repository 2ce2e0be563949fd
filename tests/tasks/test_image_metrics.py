"""FID / KID / LPIPS from local weight files (tasks/image_metrics.py, task=test's build_metrics): the Fréchet distance
against a hand computation, and each metric through the real loading code on weight files written here (random
weights in the reference layout) against the reference library's own result on the same files."""

from __future__ import annotations

import math
import os
from unittest import mock

import pytest
import torch
from omegaconf import OmegaConf

from tasks import image_metrics
from tasks.evaluate import _compute, _update, build_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _task(**task) -> OmegaConf:
    return OmegaConf.create({"task": {"metrics": ["psnr", "ssim", "lpips", "fid", "kid"], **task}})


class _TakeFeatures(torch.nn.Module):
    """A 'feature extractor' that returns the first two channels of [N, C, 1, 1] 'images': fixed feature vectors."""

    num_features = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2, 0, 0]


def test_frechet_distance_matches_a_hand_computation() -> None:
    """real: (+-1, 0), (0, +-2): mean 0, cov diag(2/3, 8/3); fake = 2 real + (3, 4): cov diag(8/3, 32/3).
    d^2 = |mu_r - mu_f|^2 + sum_i (sqrt(s_ri) - sqrt(s_fi))^2 = 25 + 2/3 + 8/3 (rotations leave it unchanged)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64)
    fake = 2 * real + torch.tensor([3.0, 4.0], dtype=torch.float64)
    angle = math.radians(30)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    for r in (torch.eye(2, dtype=torch.float64), rot):  # diagonal, then full covariances
        fid = FrechetInceptionDistance(feature=_TakeFeatures())
        _update("fid", fid, (fake @ r.T)[:, :, None, None], (real @ r.T)[:, :, None, None])
        assert _compute("fid", fid, 4) == pytest.approx(25 + 2 / 3 + 8 / 3, rel=1e-6)


def _random_inception(path: str) -> None:
    """torch-fidelity's FID Inception layout with random weights (PyTorch's default init), saved as a state dict."""
    from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

    with mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        torch.manual_seed(0)
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["64"])
    torch.save(net.state_dict(), path)


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def test_fid_and_kid_equal_torch_fidelity_on_the_same_weight_file(tmp_path) -> None:
    torch_fidelity = pytest.importorskip("torch_fidelity")
    weights = str(tmp_path / "weights-inception-2015-12-05-6726825d.pth")
    _random_inception(weights)
    g = torch.Generator().manual_seed(1)
    n = 72  # > the 64 features: full-rank covariances
    real = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    fake = (real.float() * 0.6 + 60 + torch.randint(0, 40, real.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    cfg = _task(metrics=["fid", "kid"], fid_weights=weights, fid_feature=64, kid_subsets=3)
    metrics, skipped, used = build_metrics(cfg, CPU)
    assert not skipped and used == {"fid": weights, "kid": weights}
    for start in range(0, n, 24):  # [0, 1] floats that are exactly the uint8 images (as task=test passes them)
        f, r = (x[start:start + 24].double() / 255 + 1e-6 for x in (fake, real))
        for name, metric in metrics.items():
            _update(name, metric, f.float(), r.float())
    ours = {name: _compute(name, metric, n) for name, metric in metrics.items()}
    ref = torch_fidelity.calculate_metrics(
        input1=_Images(fake), input2=_Images(real), cuda=False, fid=True, kid=True, verbose=False, cache=False,
        feature_extractor="inception-v3-compat", feature_layer_fid="64", feature_layer_kid="64",
        feature_extractor_weights_path=weights, kid_subset_size=n, kid_subsets=3, batch_size=24, save_cpu_ram=True)
    assert ours["fid"] > 1e-3  # the two sets differ
    assert ours["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert ours["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4, abs=1e-7)


def test_lpips_equals_torchmetrics_own_loading_of_the_same_file(tmp_path, monkeypatch) -> None:
    """The backbone file (random AlexNet in torchvision's layout) read through task.lpips_weights gives the same LPIPS
    as torchmetrics' own LearnedPerceptualImagePatchSimilarity loading that file from the hub cache."""
    import torchvision
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    weights = str(hub / "checkpoints" / "alexnet-owt-7be5be79.pth")
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights)
    g = torch.Generator().manual_seed(2)
    fake, real = torch.rand(4, 3, 64, 64, generator=g), torch.rand(4, 3, 64, 64, generator=g)

    metrics, skipped, used = build_metrics(_task(metrics=["lpips"], lpips_weights=weights), CPU)
    assert not skipped and used == {"lpips": weights}
    _update("lpips", metrics["lpips"], fake[:2], real[:2])
    _update("lpips", metrics["lpips"], fake[2:], real[2:])
    ours = _compute("lpips", metrics["lpips"], 4)

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    reference = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    reference.update(fake, real)
    assert ours > 0
    assert ours == pytest.approx(float(reference.compute()), rel=1e-5)


def test_a_missing_weight_file_is_one_line_naming_the_file_its_source_and_the_fetch(tmp_path) -> None:
    missing = str(tmp_path / "none.pth")
    metrics, skipped, used = build_metrics(_task(fid_weights=missing, lpips_weights=missing), CPU)
    assert set(metrics) == {"psnr", "ssim"} and not used
    for name, spec in (("fid", image_metrics.INCEPTION), ("kid", image_metrics.INCEPTION),
                       ("lpips", image_metrics.LPIPS_BACKBONES["alex"][1])):
        reason = skipped[name]
        assert "\n" not in reason and missing in reason and spec.url in reason
        assert f"python run.py task=fetch_weights 'task.only=[{spec.fetch_name}]'" in reason


def test_the_fetch_entries_are_the_files_the_libraries_load() -> None:
    """Each weight file's URL is the one its library names, and task=fetch_weights has it under the fetch name."""
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    from tasks.config import CONF_DIR

    files = OmegaConf.load(os.path.join(CONF_DIR, "task", "fetch_weights.yaml")).files
    assert image_metrics.INCEPTION.url == URL_INCEPTION_V3
    assert files[image_metrics.INCEPTION.fetch_name].url == URL_INCEPTION_V3
    for arch, spec in image_metrics.LPIPS_BACKBONES.values():
        enum = {"alexnet": "AlexNet_Weights", "vgg16": "VGG16_Weights", "squeezenet1_1": "SqueezeNet1_1_Weights"}[arch]
        assert spec.url == getattr(torchvision.models, enum).IMAGENET1K_V1.url
        assert files[spec.fetch_name].url == spec.url
