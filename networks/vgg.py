"""Frozen VGG-19 feature extractor for perceptual, feature-matching-style and style losses.

Used by the pix2pixHD VGG perceptual loss (Wang et al. 2018, §3.2, Eq. 5 extension) and by style-transfer
style/content losses. Weights are never downloaded: they come from an explicit file, from torchvision's
local cache, or (loudly) stay random.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import VGG19_Weights, vgg19

from networks.weights import read_state_dict, warn_random_weights

logger = logging.getLogger(__name__)

# Convolutions per block in VGG-19 (configuration "E" of Simonyan & Zisserman 2015).
_VGG19_BLOCK_CONVS: tuple[int, ...] = (2, 2, 4, 4, 4)


def _vgg19_layer_indices() -> dict[str, int]:
    names: dict[str, int] = {}
    index = 0
    for block, n_convs in enumerate(_VGG19_BLOCK_CONVS, start=1):
        for conv in range(1, n_convs + 1):
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
        names[f"pool{block}"] = index
        index += 1
    return names


#: Layer name -> index in ``torchvision.models.vgg19().features`` (relu1_1=1, relu2_1=6, ..., relu5_1=29).
VGG19_LAYERS: dict[str, int] = _vgg19_layer_indices()

_INPUT_RANGES = ("minus_one_one", "zero_one")
_RANDOM_WEIGHTS = (None, "none", "random")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_vgg19_cache_path() -> str:
    """Where torchvision caches the ImageNet VGG-19 checkpoint (``<hub dir>/checkpoints/vgg19-dcbb9e9d.pth``)."""
    filename = os.path.basename(VGG19_Weights.IMAGENET1K_V1.url)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def _truncated_vgg19_features(depth: int) -> nn.Sequential:
    """torchvision's ``vgg19().features[:depth]`` with torchvision's random init, built cheaply.

    The model is instantiated on the meta device so the unused 120M-parameter classifier is never
    allocated or initialised (that costs ~0.5 GB and seconds on CPU); only the kept layers are
    materialised and initialised the way torchvision's ``VGG`` does (Kaiming-normal fan_out, zero bias).
    """
    with torch.device("meta"):
        features = vgg19(weights=None).features[:depth]
    features = features.to_empty(device="cpu")
    for module in features:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.ReLU):
            # torchvision uses in-place ReLUs, which would overwrite a returned conv activation.
            module.inplace = False
    return features


class VGG19Features(nn.Module):
    """Frozen VGG-19 (ImageNet) returning the activations of the requested layers.

    The network is truncated after the deepest requested layer; parameters never require grad and the
    module stays in eval mode even when a parent calls ``.train()``. Inputs in ``input_range`` are mapped
    to [0, 1] and, if ``normalize``, standardised with the ImageNet mean/std. ``weights_source`` records
    where the weights came from.

    Note: official pix2pixHD feeds the [-1, 1] images to VGG without ImageNet normalisation; use
    ``input_range="zero_one", normalize=False`` to reproduce that exactly.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        weights: str | None = "imagenet",
        weights_path: str | None = None,
        input_range: str = "minus_one_one",
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(layers, str):
            layers = (layers,)
        layers = tuple(layers)
        if not layers:
            raise ValueError(
                f"layers must name at least one VGG-19 layer; valid names are {list(VGG19_LAYERS)}."
            )
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown:
            raise ValueError(f"Unknown VGG-19 layer(s) {unknown}; valid names are {list(VGG19_LAYERS)}.")
        if input_range not in _INPUT_RANGES:
            raise ValueError(f"Unknown input_range {input_range!r}; valid values are {list(_INPUT_RANGES)}.")
        if weights_path is None and weights not in (*_RANDOM_WEIGHTS, "imagenet"):
            raise ValueError(
                f"Unknown weights {weights!r}; valid values are 'imagenet', None, 'none', 'random' "
                f"(or pass weights_path)."
            )
        self.layers: tuple[str, ...] = layers
        self.input_range = input_range
        self.normalize = normalize

        depth = max(VGG19_LAYERS[name] for name in layers) + 1
        self.features = _truncated_vgg19_features(depth)
        self._outputs_at: dict[int, list[str]] = {}
        for name in dict.fromkeys(layers):
            self._outputs_at.setdefault(VGG19_LAYERS[name], []).append(name)

        self.weights_source: str = self._load_weights(weights, weights_path)

        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.train(False)

    # ------------------------------------------------------------------ weights
    def _load_weights(self, weights: str | None, weights_path: str | None) -> str:
        if weights_path is not None:
            path = os.fspath(weights_path)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"VGG19 weights file not found: {path}. Fix: point weights_path at a torchvision vgg19 "
                    f"state dict (e.g. vgg19-dcbb9e9d.pth) or set weights_path=null to use the torchvision "
                    f"cache at {torchvision_vgg19_cache_path()}."
                )
            self._load_state_file(path)
            return f"file:{path}"
        if weights == "imagenet":
            cache = torchvision_vgg19_cache_path()
            if os.path.isfile(cache):
                self._load_state_file(cache)
                return f"torchvision-cache:{cache}"
            message = (
                f"VGG19 ImageNet weights not found at {cache}; running with RANDOM weights, so "
                f"perceptual/style losses are not the paper's. To fix, put vgg19-dcbb9e9d.pth there "
                f"or set weights_path."
            )
            warn_random_weights(message)
            return "random (offline fallback)"
        return "random (requested)"

    def _load_state_file(self, path: str) -> None:
        state = read_state_dict(path, "VGG19")
        features_state: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if key.startswith("features."):
                key = key[len("features.") :]
            index = key.split(".", 1)[0]
            if not index.isdigit():
                continue  # classifier.* and other non-feature entries
            if int(index) < len(self.features):  # layers past the truncation point are not needed
                features_state[key] = value
        try:
            self.features.load_state_dict(features_state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"VGG19 weights file {path} does not match torchvision's vgg19 features: {exc}"
            ) from exc

    # ------------------------------------------------------------------ forward
    def train(self, mode: bool = True) -> VGG19Features:
        """Always stay in eval mode: the extractor is frozen (no dropout/BN, but keep it explicit)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations ``{layer name: [B, C, h, w]}`` in the order of ``layers``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG19Features expects [B, 3, H, W] images, got {tuple(x.shape)}.")
        if self.input_range == "minus_one_one":
            x = (x + 1) / 2
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        found: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            for name in self._outputs_at.get(index, ()):
                found[name] = x
        return {name: found[name] for name in self.layers}
