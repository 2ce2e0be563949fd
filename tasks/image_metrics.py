"""FID, KID and LPIPS from local weight files, with one rule for all of them.

The config names a local file (``task.fid_weights``, ``task.lpips_weights``; null = the torch hub cache path where
``python run.py task=fetch_weights`` puts the published file). With the file, the metric is the standard
implementation on those weights:

* FID / KID: torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` on torch-fidelity's FID
  Inception (``pt_inception-2015-12-05``, the TF-FID graph converted; Heusel et al. 2017, Bińkowski et al. 2018),
  with torch-fidelity's own TF1-style bilinear resize to 299 (``antialias=False``: torchmetrics' default antialiased
  resize gives different features, and so different numbers, than torch-fidelity and TF-FID). One Inception serves
  both metrics.
* LPIPS (Zhang et al., CVPR 2018): torchmetrics' port of ``lpips`` v0.1 (the linear heads it bundles are the
  ``lpips`` package's ``weights/v0.1/<net>.pth``) on torchvision's ImageNet backbone read from the named file.

Without the file, :func:`weight_file` returns one line naming the file, where it comes from and the fetch command.
No weights are ever downloaded here. Every file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from networks.weights import read_state_dict
from tasks.fetch_weights import cache_path


@dataclass(frozen=True)
class WeightSpec:
    """A published weight file: the ``task=fetch_weights`` entry that downloads it, its URL, the config key."""

    fetch_name: str
    url: str
    key: str
    what: str


# torch-fidelity's FID Inception (torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3)
INCEPTION = WeightSpec(
    "inception_fid",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
    "task.fid_weights", "torch-fidelity's FID Inception")
# torchvision's ImageNet backbones of LPIPS (torchvision.models.<Net>_Weights.IMAGENET1K_V1.url)
LPIPS_BACKBONES: dict[str, tuple[str, WeightSpec]] = {
    "alex": ("alexnet", WeightSpec("alexnet", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                                   "task.lpips_weights", "LPIPS' AlexNet backbone (torchvision ImageNet)")),
    "vgg": ("vgg16", WeightSpec("vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth",
                                "task.lpips_weights", "LPIPS' VGG-16 backbone (torchvision ImageNet)")),
    "squeeze": ("squeezenet1_1", WeightSpec(
        "squeezenet1_1", "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth", "task.lpips_weights",
        "LPIPS' SqueezeNet 1.1 backbone (torchvision ImageNet)")),
}


def weight_file(spec: WeightSpec, configured: str | None) -> tuple[str | None, str | None]:
    """(path, None) when the file is on disk, else (None, one line: the file, where it comes from, the fix)."""
    path = os.fspath(configured) if configured else cache_path(spec.url)
    if os.path.isfile(path):
        return path, None
    return None, (f"no {spec.what} weights at {path} (from {spec.url}): run `python run.py task=fetch_weights "
                  f"'task.only=[{spec.fetch_name}]'` once on a machine with a network, or set {spec.key}=<file>")


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of what computes the figures (for the report)."""
    out: dict[str, str] = {}
    for dist in ("torch", "torchvision", "torchmetrics", "torch-fidelity", "pytorch-lightning", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """torch-fidelity loads its file with ``weights_only=False``; force the safe loader while it builds."""
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = before


# ------------------------------------------------------------------------------------------------ FID / KID
def fidelity_unavailable() -> str | None:
    if importlib.util.find_spec("torch_fidelity") is None:
        return "torch-fidelity is not installed (pip install torch-fidelity; a dependency of condsynth)"
    return None


class InceptionFeatures(nn.Module):
    """torch-fidelity's FID Inception from ``weights_path``; ``forward`` takes [0, 1] images and converts them to
    uint8 as torchmetrics' ``normalize=True`` does. The last batch's features are reused when the same images come
    again (FID and KID see every batch)."""

    def __init__(self, weights_path: str, feature: int = 2048) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        read_state_dict(weights_path, "torch-fidelity Inception")  # a clear error for a wrong or unsafe file
        with _weights_only_loads():
            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(feature)],
                                          feature_extractor_weights_path=weights_path, antialias=False)
        self.num_features = int(feature)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        u8 = (images * 255).byte()
        if self._last is not None and self._last[0].shape == u8.shape and torch.equal(self._last[0], u8):
            return self._last[1]
        features = self.net(u8)
        self._last = (u8, features)
        return features


def build_fid_kid(weights_path: str, names: list[str], feature: int = 2048, kid_subsets: int = 100,
                  kid_subset_size: int = 1000) -> dict[str, Metric]:
    """torchmetrics' FID and/or KID (``names``) on one Inception read from ``weights_path``."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    inception = InceptionFeatures(weights_path, feature)
    out: dict[str, Metric] = {}
    if "fid" in names:
        out["fid"] = FrechetInceptionDistance(feature=inception, normalize=True)
    if "kid" in names:
        out["kid"] = KernelInceptionDistance(feature=inception, subsets=kid_subsets, subset_size=kid_subset_size,
                                             normalize=True)
    return out


# ---------------------------------------------------------------------------------------------------- LPIPS
def lpips_network(net_type: str, backbone_path: str, heads_path: str | None = None) -> nn.Module:
    """torchmetrics' LPIPS network with the torchvision backbone state dict of ``backbone_path`` (strict) and the
    linear heads of ``heads_path`` (null: torchmetrics' bundled copy of ``lpips`` v0.1)."""
    import torchvision
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    if net_type not in LPIPS_BACKBONES:
        raise ValueError(f"task.lpips_net={net_type} is not an LPIPS backbone; use one of {sorted(LPIPS_BACKBONES)}")
    arch, spec = LPIPS_BACKBONES[net_type]
    backbone = getattr(torchvision.models, arch)(weights=None)
    try:
        backbone.load_state_dict(read_state_dict(backbone_path, spec.what), strict=True)
    except RuntimeError as err:
        raise ValueError(f"{spec.key}={backbone_path} is not a torchvision {arch} state dict ({str(err)[:200]}); "
                         f"use {os.path.basename(spec.url)} from {spec.url}") from None
    with _weights_only_loads():  # random backbone first (nothing downloaded), then the heads
        net = _NoTrainLpips(net=net_type, pretrained=True, pnet_rand=True, model_path=heads_path)
    features = backbone.features
    for part in net.net.children():  # LPIPS' slices hold features[i] under the name str(i)
        for index, layer in part.named_children():
            layer.load_state_dict(features[int(index)].state_dict(), strict=True)
    return net.eval()


def build_lpips(task: Any) -> tuple[Metric | None, str | None, dict[str, str]]:
    """The LPIPS metric of ``task`` (``task.lpips_net``, ``task.lpips_weights``, ``task.lpips_heads``) under the one
    rule: (metric, None, {weight files used}) with the local file, else (None, one-line reason, {}). task=test's
    common LPIPS and each paper's own LPIPS figures (e.g. EDN's face crop) all come from here."""
    net_type = str(task.get("lpips_net", "alex"))
    if net_type not in LPIPS_BACKBONES:
        raise ValueError(f"task.lpips_net={net_type} is not an LPIPS backbone; use one of {sorted(LPIPS_BACKBONES)}")
    path, reason = weight_file(LPIPS_BACKBONES[net_type][1], task.get("lpips_weights"))
    if path is None:
        return None, str(reason), {}
    heads = task.get("lpips_heads")
    used = {"lpips": path, **({"lpips_heads": str(heads)} if heads else {})}
    return LPIPSMetric(lpips_network(net_type, path, heads)), None, used


class ImagesTooSmall(ValueError):
    """The test images are smaller than a metric's network can take."""


def smallest_input(net: nn.Module, largest: int = 64) -> int:
    """The smallest square side ``net`` (an LPIPS network) runs on (AlexNet: 31), probed on zero images."""
    with torch.no_grad():
        for side in range(8, largest + 1):
            try:
                x = torch.zeros(1, 3, side, side, device=next(net.parameters()).device)
                net(x, x)
                return side
            except RuntimeError:
                continue
    return largest


class LPIPSMetric(Metric):
    """Mean LPIPS over pairs of [0, 1] images (torchmetrics' ``_lpips_update``, ``normalize=True``)."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, net: nn.Module, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = net
        self.min_side = smallest_input(net)
        self.add_state("sum_scores", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        from torchmetrics.functional.image.lpips import _lpips_update

        if min(fake.shape[-2:]) < self.min_side:
            raise ImagesTooSmall(f"the test images are {tuple(fake.shape[-2:])}, smaller than the {self.min_side} "
                                 f"pixels this LPIPS backbone takes (task.lpips_net)")
        scores = _lpips_update(fake.float(), real.float(), self.net, normalize=True).reshape(-1)
        self.sum_scores += scores.double().sum()
        self.total += scores.numel()

    def compute(self) -> torch.Tensor:
        return (self.sum_scores / self.total).float()


def weight_record(paths: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """{metric: {path, sha256}} of the weight files used."""
    return {name: {"path": os.path.abspath(p), "sha256": sha256(p)} for name, p in paths.items()}
