"""Linear Style Transfer networks (Li, Liu, Kautz, Yang, "Learning Linear Transformations for Fast Arbitrary
Style Transfer", CVPR 2019; official code ``sunshineatnoon/LinearStyleTransfer``, ``libs/models.py`` and
``libs/Matrix.py``).
Docs: docs/papers/lst.md (commands, datasets, official weights, measured figures).

* :class:`VGGEncoder` — the fixed VGG-19 encoder up to ``relu3_1`` (``r31``) or ``relu4_1`` (``r41``), with
  reflection padding and the ImageNet preprocessing folded into a leading 1x1 convolution (official
  ``encoder3`` / ``encoder4``). Inputs are RGB in [0, 1].
* :class:`VGGDecoder` — its mirror (official ``decoder3`` / ``decoder4``): nearest-neighbour upsampling,
  reflection-padded 3x3 convolutions, no output activation.
* :class:`CovarianceMatrixNet` — official ``CNN``: a small conv net, the (uncentred) covariance of its output
  and a fully connected layer, giving an ``m x m`` matrix (paper §3.2, Fig. 2).
* :class:`LinearTransform` — official ``MulLayer`` (paper §3, Eq. 2-5): ``T = T_s T_c`` applied to the
  centred, compressed content features, then un-compressed and shifted by the style mean.
* :class:`LinearStylizer` — encoder + transform + decoder for inference (alpha blending, style codes computed
  once for video, style mixing).

Parameter names equal the official ones (``conv1``..``conv10``, ``conv11``..``conv19``, ``snet.convs.0``,
``snet.fc``, ``compress``, ``unzip``), so the official ``vgg_r41.pth`` / ``dec_r41.pth`` / ``r41.pth`` state dicts
load with ``load_state_dict`` as they are (the official code hard-codes ``matrix_size=32``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from networks.vgg import torchvision_vgg19_cache_path
from networks.weights import read_state_dict, warn_random_weights

logger = logging.getLogger(__name__)

LEVELS = ("r31", "r41")
"""Encoder depths of the paper: relu3_1 (256 channels, stride 4) and relu4_1 (512 channels, stride 8)."""
LEVEL_CHANNELS = {"r31": 256, "r41": 512}
LEVEL_STRIDE = {"r31": 4, "r41": 8}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# Encoder layout: (name of the conv, in, out, name of its ReLU output, max-pool before the conv?).
# conv1 is the 1x1 preprocessing conv (no ReLU). ``vgg`` = index of the same conv in torchvision's vgg19().features.
_ENCODER_LAYERS: tuple[tuple[str, int, int, str, bool, int], ...] = (
    ("conv2", 3, 64, "r11", False, 0),
    ("conv3", 64, 64, "r12", False, 2),
    ("conv4", 64, 128, "r21", True, 5),
    ("conv5", 128, 128, "r22", False, 7),
    ("conv6", 128, 256, "r31", True, 10),
    ("conv7", 256, 256, "r32", False, 12),
    ("conv8", 256, 256, "r33", False, 14),
    ("conv9", 256, 256, "r34", False, 16),
    ("conv10", 256, 512, "r41", True, 19),
)
_ENCODER_DEPTH = {"r31": 5, "r41": 9}  # entries of _ENCODER_LAYERS used by each level

# Decoder layouts (official decoder3 / decoder4): (name, in, out, upsample x2 before the conv?).
_DECODER_LAYERS: dict[str, tuple[tuple[str, int, int, bool], ...]] = {
    "r31": (
        ("conv7", 256, 128, False),
        ("conv8", 128, 128, True),
        ("conv9", 128, 64, False),
        ("conv10", 64, 64, True),
        ("conv11", 64, 3, False),
    ),
    "r41": (
        ("conv11", 512, 256, False),
        ("conv12", 256, 256, True),
        ("conv13", 256, 256, False),
        ("conv14", 256, 256, False),
        ("conv15", 256, 128, False),
        ("conv16", 128, 128, True),
        ("conv17", 128, 64, False),
        ("conv18", 64, 64, True),
        ("conv19", 64, 3, False),
    ),
}

_RANDOM_WEIGHTS = (None, "none", "random")


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"level={level!r} is unknown; use one of {LEVELS} (model.level)")
    return level


def _load_strict(module: nn.Module, path: str, what: str) -> None:
    state = read_state_dict(path, what)
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{what} weights file {path} does not match {type(module).__name__}"
            f"(level={getattr(module, 'level', '?')}): {exc}. It must be a state dict of this module "
            f"(the official LinearStyleTransfer files use the same key names)"
        ) from exc


def _reflect_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    return conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


class VGGEncoder(nn.Module):
    """Fixed VGG-19 encoder up to ``relu3_1`` or ``relu4_1`` (official ``encoder3`` / ``encoder4``).

    ``conv1`` is a 1x1 conv holding the input preprocessing; then reflection-padded 3x3 convs with ReLU
    (``conv2`` = VGG conv1_1 -> ``r11``, ``conv3`` -> ``r12``, pool, ``conv4`` -> ``r21``, ``conv5`` -> ``r22``,
    pool, ``conv6`` -> ``r31``; ``r41`` continues ``conv7..9`` -> ``r32..r34``, pool, ``conv10`` -> ``r41``).

    Weights: ``weights_path`` = a state dict of this module (the official ``vgg_r31.pth`` / ``vgg_r41.pth`` have
    the same keys), loaded strictly. Else ``weights="imagenet"``: torchvision's VGG-19 ImageNet file (from
    ``vgg19_path`` or the torch hub cache) is copied into ``conv2..`` and ``conv1`` becomes the ImageNet
    normalisation (weight ``diag(1/std)``, bias ``-mean/std``), as the official ``vgg_normalised`` bakes its
    preprocessing into conv1; without the file the encoder stays RANDOM with a loud warning. ``weights=None``:
    random, quietly. Random convs are Kaiming-normal (fan_in) so activations keep their scale; ``conv1`` is the
    ImageNet normalisation unless a ``weights_path`` replaces it. ``weights_source`` says which happened.
    """

    #: ReLU in place on each fresh conv output (as the official ``nn.ReLU(inplace=True)``; the returned features
    #: are never written afterwards); False only to measure the lever (scripts/bench_speed.py)
    inplace_activations: bool = True

    def __init__(
        self,
        level: str = "r41",
        weights: str | None = "imagenet",
        weights_path: str | None = None,
        vgg19_path: str | None = None,
    ) -> None:
        super().__init__()
        self.level = _check_level(level)
        self.conv1 = nn.Conv2d(3, 3, 1, 1, 0)
        self._layers = _ENCODER_LAYERS[: _ENCODER_DEPTH[level]]
        for name, cin, cout, _, _, _ in self._layers:
            setattr(self, name, nn.Conv2d(cin, cout, 3, 1, 0))
        self.output_channels: int = LEVEL_CHANNELS[level]
        self.total_stride: int = LEVEL_STRIDE[level]
        self.feature_names: tuple[str, ...] = tuple(layer[3] for layer in self._layers)
        if weights_path is None and weights not in (*_RANDOM_WEIGHTS, "imagenet"):
            raise ValueError(f"weights={weights!r} is unknown; use 'imagenet', None/'random', or pass weights_path")
        self._init_random()
        self.weights_source: str = self._load_weights(weights, weights_path, vgg19_path)

    @torch.no_grad()
    def _init_random(self) -> None:
        """Random init that keeps activations at scale through the ReLU stack (Kaiming-normal fan_in, zero bias)
        so a random encoder still carries information; conv1 is the ImageNet normalisation in every case."""
        for name, *_ in self._layers:
            conv: nn.Conv2d = getattr(self, name)
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self._set_normalisation()

    @torch.no_grad()
    def _set_normalisation(self) -> None:
        mean = torch.tensor(_IMAGENET_MEAN)
        std = torch.tensor(_IMAGENET_STD)
        self.conv1.weight.copy_(torch.diag(1.0 / std).view(3, 3, 1, 1))
        self.conv1.bias.copy_(-mean / std)

    # ------------------------------------------------------------------ weights
    def _load_weights(self, weights: str | None, weights_path: str | None, vgg19_path: str | None) -> str:
        if weights_path is not None:
            _load_strict(self, os.fspath(weights_path), f"LST encoder ({self.level})")
            return f"file:{weights_path}"
        if weights != "imagenet":
            return "random (requested)"
        path = os.fspath(vgg19_path) if vgg19_path is not None else torchvision_vgg19_cache_path()
        if os.path.isfile(path):
            self.load_torchvision_vgg19(read_state_dict(path, "VGG19"), path)
            return f"imagenet:{path}"
        if vgg19_path is not None:
            raise FileNotFoundError(
                f"VGG19 weights file not found: {vgg19_path} (paths.vgg19_weights); point it at a torchvision "
                f"vgg19 state dict or set it to null to use the torch hub cache {torchvision_vgg19_cache_path()}"
            )
        message = (
            f"LST encoder ({self.level}): VGG19 ImageNet weights not found at {path}; the encoder is RANDOM, so "
            f"style transfer quality will be meaningless. To fix, put torchvision's vgg19-dcbb9e9d.pth there, set "
            f"paths.vgg19_weights=<vgg19 state dict>, or model.networks.encoder.weights_path=<official "
            f"vgg_{self.level}.pth>."
        )
        warn_random_weights(message)
        return "random (offline fallback: no VGG19 ImageNet weights)"

    @torch.no_grad()
    def load_torchvision_vgg19(self, state: Mapping[str, Tensor], source: str = "state dict") -> None:
        """Copy torchvision's ``vgg19().features`` convs into ``conv2..`` and set ``conv1`` to the ImageNet
        normalisation ``(x - mean) / std``."""
        self._set_normalisation()
        for name, _, _, _, _, index in self._layers:
            conv: nn.Conv2d = getattr(self, name)
            for attr in ("weight", "bias"):
                key = f"features.{index}.{attr}"
                if key not in state:
                    raise ValueError(f"{source} has no {key}: not a torchvision vgg19 state dict")
                value = state[key]
                target = getattr(conv, attr)
                if value.shape != target.shape:
                    raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(target.shape)}")
                target.copy_(value)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, return_features: Sequence[str] | None = None) -> Tensor | dict[str, Tensor]:
        """The ``level`` feature map [B, C, H/s, W/s], or a dict name -> Tensor of ``return_features``
        (``r11, r12, r21, r22, r31`` and for r41 ``r32, r33, r34, r41``)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGGEncoder expects [B, 3, H, W] images in [0, 1], got {tuple(x.shape)}")
        wanted: tuple[str, ...] = ()
        if return_features is not None:
            wanted = (return_features,) if isinstance(return_features, str) else tuple(return_features)
            unknown = [n for n in wanted if n not in self.feature_names]
            if unknown:
                raise ValueError(f"unknown encoder feature(s) {unknown}; level {self.level} has {self.feature_names}")
        last = max((self.feature_names.index(n) for n in wanted), default=len(self._layers) - 1)
        found: dict[str, Tensor] = {}
        out = self.conv1(x)
        for name, _, _, relu_name, pool, _ in self._layers[: last + 1]:
            if pool:
                out = F.max_pool2d(out, kernel_size=2, stride=2)
            out = F.relu(_reflect_conv(getattr(self, name), out), inplace=self.inplace_activations)
            if relu_name in wanted:
                found[relu_name] = out
        if return_features is None:
            return out
        return {n: found[n] for n in wanted}


class VGGDecoder(nn.Module):
    """Mirror of :class:`VGGEncoder` (official ``decoder3`` / ``decoder4``): reflection-padded 3x3 convs with ReLU,
    nearest x2 upsampling, and no activation on the RGB output (callers clamp at inference).

    ``weights_path``: optional state dict of this module (the official ``dec_r31.pth`` / ``dec_r41.pth`` have the
    same keys), loaded strictly. Otherwise the hidden convs are Kaiming-normal (fan_in, ReLU) with zero bias and the
    RGB conv starts small around mid-grey: PyTorch's default init halves the signal at each of the up to 9 layers,
    and stage ``decoder`` then spends its first thousands of steps just getting a signal through.
    """

    #: ReLU in place on each fresh conv output (official ``nn.ReLU(inplace=True)``); False only to measure the lever
    inplace_activations: bool = True

    def __init__(self, level: str = "r41", weights_path: str | None = None) -> None:
        super().__init__()
        self.level = _check_level(level)
        self._layers = _DECODER_LAYERS[level]
        for name, cin, cout, _ in self._layers:
            setattr(self, name, nn.Conv2d(cin, cout, 3, 1, 0))
        self.input_channels: int = LEVEL_CHANNELS[level]
        self.total_stride: int = LEVEL_STRIDE[level]
        self.weights_source = "random (trained by stage=decoder)"
        self._init_random()
        if weights_path is not None:
            _load_strict(self, os.fspath(weights_path), f"LST decoder ({level})")
            self.weights_source = f"file:{weights_path}"

    @torch.no_grad()
    def _init_random(self) -> None:
        *hidden, (rgb_name, *_) = self._layers
        for name, *_ in hidden:
            conv: nn.Conv2d = getattr(self, name)
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        rgb: nn.Conv2d = getattr(self, rgb_name)
        nn.init.kaiming_normal_(rgb.weight, mode="fan_in", nonlinearity="linear")
        rgb.weight.mul_(0.1)
        rgb.bias.fill_(0.5)

    def forward(self, features: Tensor) -> Tensor:
        if features.dim() != 4 or features.shape[1] != self.input_channels:
            raise ValueError(
                f"VGGDecoder({self.level}) expects [B, {self.input_channels}, h, w] features, got {tuple(features.shape)}"
            )
        out = features
        last = len(self._layers) - 1
        for i, (name, _, _, up) in enumerate(self._layers):
            if up:
                out = F.interpolate(out, scale_factor=2, mode="nearest")
            out = _reflect_conv(getattr(self, name), out)
            if i < last:
                out = F.relu(out, inplace=self.inplace_activations)
        return out


class CovarianceMatrixNet(nn.Module):
    """Official ``CNN`` (paper Fig. 2): convs ``in -> in/2 -> in/4 -> m`` (3x3, pad 1, ReLU between), the
    covariance ``F F^T / (H W)`` of the output (uncentred, as officially: the input is already centred), flattened,
    and ``Linear(m*m, m*m)`` -> [B, m, m]."""

    def __init__(self, in_channels: int, matrix_size: int = 32) -> None:
        super().__init__()
        if in_channels < 4 or in_channels % 4:
            raise ValueError(f"in_channels={in_channels} must be a multiple of 4 (in -> in/2 -> in/4 -> m)")
        if matrix_size < 1:
            raise ValueError(f"matrix_size={matrix_size} must be >= 1")
        self.in_channels = int(in_channels)
        self.matrix_size = int(matrix_size)
        c = self.in_channels
        self.convs = nn.Sequential(
            nn.Conv2d(c, c // 2, 3, 1, 1),
            nn.ReLU(inplace=True),  # on a fresh conv output: safe, as officially
            nn.Conv2d(c // 2, c // 4, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // 4, self.matrix_size, 3, 1, 1),
        )
        self.fc = nn.Linear(self.matrix_size**2, self.matrix_size**2)

    def forward(self, x: Tensor) -> Tensor:
        out = self.convs(x)
        b, m, h, w = out.shape
        flat = out.reshape(b, m, h * w)
        cov = torch.bmm(flat, flat.transpose(1, 2)) / (h * w)
        return self.fc(cov.reshape(b, m * m)).view(b, m, m)


def _centre(feat: Tensor) -> tuple[Tensor, Tensor]:
    mean = feat.mean(dim=(2, 3), keepdim=True)
    return feat - mean, mean


class LinearTransform(nn.Module):
    """Official ``MulLayer`` (paper §3, Eq. 2-5).

    ``T = T_s T_c`` with ``T_s = snet(style - mean_s)``, ``T_c = cnet(content - mean_c)`` (each [B, m, m]); the
    transformed features are ``unzip(T compress(content - mean_c)) + mean_s``. Content and style may differ in
    spatial size; a style code of batch 1 broadcasts over a content batch.
    """

    def __init__(self, in_channels: int = 512, matrix_size: int = 32) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.matrix_size = int(matrix_size)
        self.snet = CovarianceMatrixNet(in_channels, matrix_size)
        self.cnet = CovarianceMatrixNet(in_channels, matrix_size)
        self.compress = nn.Conv2d(in_channels, matrix_size, 1, 1, 0)
        self.unzip = nn.Conv2d(matrix_size, in_channels, 1, 1, 0)

    def _check(self, feat: Tensor, what: str) -> None:
        if feat.dim() != 4 or feat.shape[1] != self.in_channels:
            raise ValueError(f"LinearTransform expects {what} features [B, {self.in_channels}, h, w], "
                             f"got {tuple(feat.shape)}")

    def style_statistics(self, style_feat: Tensor) -> tuple[Tensor, Tensor]:
        """(T_style [B, m, m], style mean [B, C, 1, 1]) — compute once per style (video, mixing)."""
        self._check(style_feat, "style")
        centred, mean = _centre(style_feat)
        return self.snet(centred), mean

    def content_matrix(self, content_feat: Tensor) -> Tensor:
        """T_content = cnet(content - mean) [B, m, m]."""
        self._check(content_feat, "content")
        return self.cnet(_centre(content_feat)[0])

    def _transform(self, centred: Tensor, matrix: Tensor, style_mean: Tensor) -> Tensor:
        compressed = self.compress(centred)
        b, m, h, w = compressed.shape
        transformed = torch.matmul(matrix, compressed.reshape(b, m, h * w)).reshape(b, m, h, w)
        return self.unzip(transformed) + style_mean

    def apply_style(self, content_feat: Tensor, t_style: Tensor, style_mean: Tensor,
                    t_content: Tensor | None = None) -> Tensor:
        """Transform ``content_feat`` with a style code: centre, compress, multiply by ``T = t_style @ t_content``
        (``t_content`` computed from the content when None), unzip, add ``style_mean``."""
        if t_content is None:
            t_content = self.content_matrix(content_feat)
        return self.transform_with_matrix(content_feat, torch.matmul(t_style, t_content), style_mean)

    def transform_with_matrix(self, content_feat: Tensor, matrix: Tensor, style_mean: Tensor) -> Tensor:
        """``unzip(matrix @ compress(content - mean_c)) + style_mean`` for a given T [B or 1, m, m]."""
        self._check(content_feat, "content")
        return self._transform(_centre(content_feat)[0], matrix, style_mean)

    def forward(self, content_feat: Tensor, style_feat: Tensor) -> tuple[Tensor, Tensor]:
        """(transformed content features [B, C, h, w], T [B, m, m])."""
        t_style, style_mean = self.style_statistics(style_feat)
        matrix = torch.matmul(t_style, self.content_matrix(content_feat))
        return self.transform_with_matrix(content_feat, matrix, style_mean), matrix


StyleCode = tuple[Tensor, Tensor]


def check_parts_fit(encoder: VGGEncoder, transform: LinearTransform, decoder: VGGDecoder) -> None:
    """Encoder, transformation and decoder must work on the same VGG level (same feature channels)."""
    if encoder.output_channels != transform.in_channels or decoder.input_channels != transform.in_channels:
        raise ValueError(
            f"encoder ({encoder.level}, {encoder.output_channels} ch), transform ({transform.in_channels} ch) and "
            f"decoder ({decoder.level}, {decoder.input_channels} ch) do not fit together: build them with the same "
            f"level (set model.level only)"
        )


class LinearStylizer(nn.Module):
    """Encoder + linear transformation + decoder, for inference. Images in [0, 1], any size: the content is
    replicate-padded to a multiple of the encoder stride and the output cropped back; outputs are clamped.

    ``alpha`` blends in feature space: ``alpha * T(c, s) + (1 - alpha) * c`` (official TestArtistic has no alpha;
    this is the usual content/style trade-off knob).

    Style mixing (:meth:`mix_codes`) interpolates the style codes: ``t = sum w_i t_i``, ``mean = sum w_i mean_i``
    with the weights normalised to sum 1. Because the transformation is linear in (t_style, mean) — and the
    ``unzip`` bias is added once when the weights sum to 1 — this equals the same weighted sum of the transformed
    features of each style (the paper's mixing), at the cost of a single decode.
    """

    def __init__(self, encoder: VGGEncoder, transform: LinearTransform, decoder: VGGDecoder) -> None:
        super().__init__()
        check_parts_fit(encoder, transform, decoder)
        self.encoder = encoder
        self.transform = transform
        self.decoder = decoder

    @property
    def total_stride(self) -> int:
        return int(self.encoder.total_stride)

    def _pad(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        h, w = x.shape[-2:]
        s = self.total_stride
        ph, pw = (-h) % s, (-w) % s
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    @torch.no_grad()
    def style_code(self, style: Tensor) -> StyleCode:
        """(t_style [B, m, m], style mean [B, C, 1, 1]) of style images; compute once, reuse for every frame."""
        return self.transform.style_statistics(self.encoder(style))

    def stylize_with_code(self, content: Tensor, t_style: Tensor, style_mean: Tensor, alpha: float = 1.0) -> Tensor:
        """Stylise ``content`` [B, 3, H, W] with a precomputed style code; returns [B, 3, H, W] in [0, 1]."""
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha={alpha} must be in [0, 1] (1 = full style, 0 = content reconstruction)")
        padded, (h, w) = self._pad(content)
        c_feat = self.encoder(padded)
        feat = self.transform.apply_style(c_feat, t_style, style_mean)
        if alpha < 1.0:
            feat = alpha * feat + (1.0 - alpha) * c_feat
        out = self.decoder(feat)[..., :h, :w]
        return out.clamp(0.0, 1.0)

    def forward(self, content: Tensor, style: Tensor, alpha: float = 1.0) -> Tensor:
        t_style, style_mean = self.transform.style_statistics(self.encoder(style))
        return self.stylize_with_code(content, t_style, style_mean, alpha)

    @staticmethod
    def mix_codes(codes: Sequence[StyleCode], weights: Sequence[float]) -> StyleCode:
        """Interpolate style codes by ``weights`` (normalised to sum 1)."""
        if len(codes) == 0 or len(codes) != len(weights):
            raise ValueError(f"mix_codes needs one weight per code; got {len(codes)} codes, {len(weights)} weights")
        total = float(sum(float(w) for w in weights))
        if abs(total) < 1e-8:
            raise ValueError(f"style mixing weights {list(weights)} sum to 0; give weights with a non-zero sum")
        ws = [float(w) / total for w in weights]
        t_style = sum(w * c[0] for w, c in zip(ws, codes, strict=True))
        mean = sum(w * c[1] for w, c in zip(ws, codes, strict=True))
        return t_style, mean  # type: ignore[return-value]
