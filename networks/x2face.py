"""X2Face (Wiles, Koepke, Zisserman, ECCV 2018) networks, equal by default to the official oawiles/X2Face code
(``UnwrapMosaic/UnwrappedFace.py``, ``SkipNet.py``, ``NoSkipNet_X2Face.py``), written anew.
Docs: docs/papers/x2face.md (commands, datasets, official weights, measured figures).

* :class:`EmbeddingNet`: the pix2pix U-Net with the "better upsampler" (bilinear x2 then a 3x3 conv) and skip
  connections; 8 stride-2 4x4 convs (64-128-256-512-512-512-512-512), batch norm, no conv biases. 3 outputs: 2 are
  a flow (tanh + identity grid) that samples the source frame into the embedded face, 1 a confidence exp(c) + 0.1.
* :class:`DrivingNet`: the same encoder-decoder without skips; its bottleneck (the innermost conv's output,
  ``bottleneck`` = 128 channels at 1x1) is the driving vector. The official decoder ends in a tanh and
  ``UnwrappedFace`` applies a second tanh before adding the identity grid: both are kept (official weights need it).
* :class:`X2Face`: both networks; several sources combine as the confidence-weighted average of their embedded faces.
* :class:`PoseCode`: the linear maps driving vector -> (pitch, yaw, roll) and pose -> driving vector (linear without
  bias + batch norm), official ``posefrombottle`` / ``bottlefrompose``.
* :class:`FaceIdentityNet`: a VGG-11 (configuration A) shaped identity classifier with named features conv1..conv7
  (conv6/conv7 = fc6/fc7 as convolutions), the identity-loss network.

``align_corners``: the official weights were trained with PyTorch 0.2, whose bilinear ``Upsample`` and
``grid_sample`` behaved as ``align_corners=True`` (and the identity grid is ``linspace(-1, 1, size)``, the
align_corners=True pixel centres). Both default to True here and are set explicitly in every call
(``align_corners`` argument / ``model.align_corners``).

Official checkpoint: ``x2face_model.pth`` holds ``{"state_dict": ...}`` with keys
``pix2pixUnwrapped.netG.model.<submodule.>*k{down,up}.<j>.*`` (embedding) and ``pix2pixSampler.netG.model...``
(driving), k = depth level. :func:`official_to_ours` / :func:`ours_to_official` map them to and from
``embedding.downs.<k>.<j>.*`` / ``driving.ups.<k>.<j>.*`` (same Sequential indices as the official blocks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from networks.official import with_step_counters
from networks.weights import read_state_dict


def level_widths(depth: int, ngf: int, bottleneck: int) -> list[int]:
    """Output channels of each stride-2 conv: ngf * min(2**k, 8) for the outer levels, ``bottleneck`` innermost
    (official unet_256: 64-128-256-512-512-512-512-512 with ngf 64)."""
    if depth < 2:
        raise ValueError(f"U-Net depth={depth} must be >= 2")
    return [ngf * min(2 ** k, 8) for k in range(depth - 1)] + [int(bottleneck)]


def init_official(module: nn.Module) -> None:
    """Official init_weights('xavier'): xavier_normal_ on conv/linear weights; batch-norm weights uniform between
    0.02 and 1 (``init.uniform(w, 1.0, 0.02)`` in PyTorch 0.2) and biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.02, 1.0)
                m.bias.zero_()


class UNet(nn.Module):
    """The official ``UnetGeneratorBetterUpsampler`` as two flat lists of levels (outermost first).

    Level k: ``downs[k]`` = [LeakyReLU(0.2), Conv4x4/2, BN] (outermost: [Conv] only; innermost: no BN) and
    ``ups[k]`` = [ReLU, Upsample x2 bilinear, Conv3x3, BN] (outermost: no BN, plus a Tanh when ``out_tanh``).
    With ``skips`` each level's up input is its inner level's output concatenated with the skip (up output first,
    as the official ``torch.cat([x, x_orig], 1)``). ``forward`` returns ``(output, bottleneck)``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, depth: int = 8, ngf: int = 64,
                 bottleneck: int = 512, skips: bool = True, out_tanh: bool = False, align_corners: bool = True):
        super().__init__()
        self.depth, self.skips, self.align_corners = int(depth), bool(skips), bool(align_corners)
        widths = level_widths(self.depth, int(ngf), int(bottleneck))
        self.widths = widths
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        downs, ups = [], []
        for k in range(self.depth):
            inner = widths[k]
            outer_in = self.in_channels if k == 0 else widths[k - 1]
            outer_out = self.out_channels if k == 0 else widths[k - 1]
            conv = nn.Conv2d(outer_in, inner, 4, stride=2, padding=1, bias=False)
            if k == 0:
                down: list[nn.Module] = [conv]
            elif k == self.depth - 1:
                down = [nn.LeakyReLU(0.2, inplace=False), conv]
            else:
                down = [nn.LeakyReLU(0.2, inplace=False), conv, nn.BatchNorm2d(inner)]
            up_in = inner * 2 if (self.skips and k < self.depth - 1) else inner
            # in place except on the bottleneck: the official in-place ReLU there also rectifies the bottleneck it
            # returns (and would overwrite a driving vector given to flow_from_vector); ours returns the conv output
            up: list[nn.Module] = [nn.ReLU(inplace=k < self.depth - 1),
                                   nn.Upsample(scale_factor=2, mode="bilinear", align_corners=self.align_corners),
                                   nn.Conv2d(up_in, outer_out, 3, stride=1, padding=1, bias=False)]
            if k > 0:
                up.append(nn.BatchNorm2d(outer_out))
            elif out_tanh:
                up.append(nn.Tanh())
            downs.append(nn.Sequential(*down))
            ups.append(nn.Sequential(*up))
        self.downs = nn.ModuleList(downs)
        self.ups = nn.ModuleList(ups)
        init_official(self)

    @property
    def total_stride(self) -> int:
        return 2 ** self.depth

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The bottleneck and the skips (``skips[k]``: what level k concatenates after its up-sampling, k >= 1)."""
        skips = [x]
        for k, down in enumerate(self.downs):
            if k == 0:
                x = down(x)
                continue
            # the official blocks apply their LeakyReLU in place to the level's input, which is also the skip: the
            # skip that the decoder concatenates is LeakyReLU(input) (pix2pix's in-place quirk, kept for the weights)
            x = down[0](x)
            skips.append(x)
            x = down[1:](x)
        return x, skips

    def decode(self, bottleneck: Tensor, skips: Sequence[Tensor] | None = None) -> Tensor:
        x = bottleneck
        for k in range(self.depth - 1, -1, -1):
            x = self.ups[k](x)
            if self.skips and k > 0:
                assert skips is not None
                x = torch.cat([x, skips[k]], 1)
        return x

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        v, skips = self.encode(x)
        return self.decode(v, skips if self.skips else None), v


class EmbeddingNet(UNet):
    """The embedding network (official ``Pix2PixModel(3)``: skip U-Net, 3 outputs, 512-channel bottleneck)."""

    def __init__(self, depth: int = 8, ngf: int = 64, bottleneck: int | None = None, align_corners: bool = True):
        super().__init__(3, 3, depth, ngf, ngf * 8 if bottleneck is None else bottleneck, skips=True,
                         out_tanh=False, align_corners=align_corners)


class DrivingNet(UNet):
    """The driving network (official ``NoSkipPix2PixModel(3, 2, inner_nc=128)``): no skips, tanh output, the
    128-d bottleneck is the driving vector."""

    def __init__(self, depth: int = 8, ngf: int = 64, bottleneck: int = 128, align_corners: bool = True):
        super().__init__(3, 2, depth, ngf, bottleneck, skips=False, out_tanh=True, align_corners=align_corners)

    def driving_vector(self, x: Tensor) -> Tensor:
        """[B, bottleneck] driving vectors of the frames ``x``."""
        return self.encode(x)[0].flatten(1)

    def flow_from_vector(self, v: Tensor) -> Tensor:
        """The decoder's 2-channel output (after its tanh) for driving vectors ``v`` ([B, C] or [B, C, 1, 1])."""
        if v.dim() == 2:
            v = v[:, :, None, None]
        return self.decode(v)


def identity_grid(b: int, h: int, w: int, device: torch.device | None = None,
                  dtype: torch.dtype | None = None) -> Tensor:
    """[B, H, W, 2] sampling grid of the identity warp: x = linspace(-1, 1, W), y = linspace(-1, 1, H) (official:
    ``np.meshgrid(linspace(-1,1,size))``, the pixel centres under align_corners=True). Computed in float64 and then
    rounded, as the official float64 NumPy grid: a float32 ``linspace`` is off by an ulp at some pixels, which a
    256-pixel grid_sample turns into ~1e-5 differences in the generated frame."""
    ys = torch.linspace(-1, 1, h, device=device, dtype=torch.float64)
    xs = torch.linspace(-1, 1, w, device=device, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).to(dtype or torch.get_default_dtype())
    return grid.unsqueeze(0).expand(b, h, w, 2)


def warp(image: Tensor, flow: Tensor, align_corners: bool = True) -> Tensor:
    """Bilinear sampling of ``image`` at tanh(``flow``) + identity grid (``flow``: [B, 2, H, W], x then y;
    zeros outside, as the official grid_sample).

    The coordinates and the sampling stay in float32 under mixed precision (autocast off here): a bf16 grid is up
    to 0.25 px off at 256 px, and an identity warp of a random image then differs by 0.37. The result is cast back
    to ``image``'s dtype. In fp32 this is the same computation as without the guard."""
    b, _, h, w = flow.shape
    with torch.autocast(device_type=flow.device.type, enabled=False):
        grid = torch.tanh(flow.float()).permute(0, 2, 3, 1) + identity_grid(b, h, w, flow.device, torch.float32)
        out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
    return out.to(image.dtype)


class X2Face(nn.Module):
    """Embedding + driving networks (official ``UnwrappedFaceWeightedAverage``)."""

    def __init__(self, embedding: EmbeddingNet, driving: DrivingNet, align_corners: bool = True):
        super().__init__()
        self.embedding, self.driving, self.align_corners = embedding, driving, bool(align_corners)

    @property
    def total_stride(self) -> int:
        return max(self.embedding.total_stride, self.driving.total_stride)

    def embed(self, sources: Tensor | Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """The embedded face of one or several source frames (``[B, 3, H, W]``, a list of them, or ``[B, K, 3, H,
        W]``) and their confidences ``[B, K, 1, H, W]`` (exp(c) + 0.1): sum_k conf_k * warp_k / sum_k conf_k."""
        if isinstance(sources, Tensor):
            sources = [sources] if sources.dim() == 4 else list(sources.unbind(1))
        b = sources[0].shape[0]
        stacked = torch.cat(list(sources), 0)
        if self.training and len(sources) > 1:
            # the official code runs the embedding network once per source: in training, batch norm then normalises
            # each source's batch with its own statistics (and updates the running ones once per source)
            out = torch.cat([self.embedding(s)[0] for s in sources], 0)
        else:  # eval mode: one pass for every source frame gives the same result
            out = self.embedding(stacked)[0]
        warped = warp(stacked, out[:, :2], self.align_corners)
        conf = out[:, 2:3].exp() + 0.1
        k = len(sources)
        warped = warped.view(k, b, *warped.shape[1:]).transpose(0, 1)
        conf = conf.view(k, b, *conf.shape[1:]).transpose(0, 1)
        return (warped * conf).sum(1) / conf.sum(1), conf

    def drive(self, embedded: Tensor, driving_output: Tensor) -> Tensor:
        """Sample the embedded face with the driving network's output (official: a second tanh, then + grid)."""
        return warp(embedded, driving_output, self.align_corners)

    def forward(self, driving: Tensor, sources: Tensor | Sequence[Tensor]) -> Tensor:
        embedded, _ = self.embed(sources)
        return self.drive(embedded, self.driving(driving)[0])

    def from_vector(self, vector: Tensor, sources: Tensor | Sequence[Tensor]) -> Tensor:
        """The generated frame for driving vectors ``vector`` (pose or audio driven)."""
        embedded, _ = self.embed(sources)
        return self.drive(embedded, self.driving.flow_from_vector(vector))


# ------------------------------------------------------------------------------ official checkpoint keys
_OFFICIAL_PREFIX = {"embedding": "pix2pixUnwrapped.netG.model.", "driving": "pix2pixSampler.netG.model."}
_OFFICIAL_KEY = re.compile(r"^(pix2pixUnwrapped|pix2pixSampler)\.netG\.model\.((?:submodule\.)*)(down|up)\.(.*)$")


def official_to_ours(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official ``UnwrappedFaceWeightedAverage`` keys -> ``{embedding,driving}.{downs,ups}.<level>.<rest>``.
    Keys of other parts (pose maps: ``posefrombottle``/``bottlefrompose``) are left out."""
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        m = _OFFICIAL_KEY.match(key)
        if m is None:
            continue
        net = "embedding" if m.group(1) == "pix2pixUnwrapped" else "driving"
        level = m.group(2).count("submodule.")
        out[f"{net}.{m.group(3)}s.{level}.{m.group(4)}"] = value
    return out


def ours_to_official(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`official_to_ours` (writes a file in the official layout)."""
    out = {}
    pat = re.compile(r"^(embedding|driving)\.(down|up)s\.(\d+)\.(.*)$")
    for key, value in state.items():
        m = pat.match(key)
        if m is None:
            continue
        out[_OFFICIAL_PREFIX[m.group(1)] + "submodule." * int(m.group(3)) + f"{m.group(2)}.{m.group(4)}"] = value
    return out


def load_official(model: X2Face, path: str) -> None:
    """Load an official ``x2face_model.pth`` (``{"state_dict": ...}`` or a bare state dict) into ``model``
    strictly: every weight of both networks must be in the file with the same shape (batch-norm
    ``num_batches_tracked`` counters, which files of PyTorch < 0.4.1 lack, are set to 0 when absent)."""
    state = read_state_dict(path, "X2Face (official x2face_model.pth)")
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    ours = official_to_ours(with_step_counters(state))  # the released weights are from PyTorch < 0.4.1
    target = model.state_dict()
    missing = sorted(set(target) - set(ours))
    bad = sorted(k for k in ours if k in target and ours[k].shape != target[k].shape)
    unknown = sorted(set(ours) - set(target))
    if missing or bad or unknown:
        detail = (f"missing {missing[:3]}" if missing else
                  f"shape of {bad[0]} is {tuple(ours[bad[0]].shape)}, the network's {tuple(target[bad[0]].shape)}"
                  if bad else f"unknown keys {unknown[:3]}")
        raise ValueError(
            f"{path} does not fit the X2Face networks ({detail}): official weights need the paper sizes "
            f"(depth 8, ngf 64, driving bottleneck 128, size=paper)"
        )
    model.load_state_dict(ours, strict=True)


# ---------------------------------------------------------------------------------------------- pose code
class PoseCode(nn.Module):
    """Official pose maps: ``pose_from_vector`` = Linear(bottleneck, 3) (posefrombottle) and ``vector_from_pose`` =
    Linear(3, bottleneck, bias=False) + BatchNorm1d (bottlefrompose). Poses are (pitch, yaw, roll) in radians, as
    the official Pose2Face notebook feeds them."""

    def __init__(self, bottleneck: int = 128, pose_dims: int = 3):
        super().__init__()
        self.pose_from_vector = nn.Linear(bottleneck, pose_dims)
        self.vector_from_pose = nn.Sequential(nn.Linear(pose_dims, bottleneck, bias=False), nn.BatchNorm1d(bottleneck))

    def retarget(self, v_src: Tensor, pose: Tensor) -> Tensor:
        """v = v_src + f(p_new) - f(p(v_src)) (paper §4.1, official NoSkipNet_X2Face_pose)."""
        return v_src + self.vector_from_pose(pose) - self.vector_from_pose(self.pose_from_vector(v_src))


# ---------------------------------------------------------------------------------------- identity network
VGG_A = (1, 1, 2, 2, 2)  # convs per block of VGG-11 (configuration A)


class FaceIdentityNet(nn.Module):
    """VGG-11 (configuration A) shaped identity network; ``forward`` returns named features ``conv1``..``conv5``
    (each block's last ReLU, before pooling), ``conv6``/``conv7`` (fc6/fc7 as convolutions, after ReLU) and
    ``logits`` (fc8). conv5's map is average-pooled to ``pool_size`` (7 at the paper's 224 input) so any input of at
    least 32 pixels fits. Inputs in [0, 1], normalised with ``mean``/``std``.

    Weights: ``weights_path`` = a state dict in this layout or in torchvision's VGG-11 layout (``features.N``,
    ``classifier.0/3/6``; linear fc weights are reshaped to convolutions), e.g. VGG-Face converted by the user.
    ``init`` (training from scratch): ``default`` (PyTorch's) or ``kaiming`` (He normal for ReLU, fan-in, zero
    biases), which this batch-norm-free VGG needs to train with plain SGD: PyTorch's default draws a third of He's
    variance, so the signal fades through the 11 layers and SGD at VGG-Face's lr 1e-2 stays at chance.
    """

    def __init__(self, num_classes: int = 2622, channels: Sequence[int] = (64, 128, 256, 512, 512), fc: int = 4096,
                 pool_size: int = 7, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 weights_path: str | None = None, init: str = "default"):
        super().__init__()
        if len(channels) != 5:
            raise ValueError(f"channels={list(channels)} must list the 5 VGG block widths")
        if init not in ("default", "kaiming"):
            raise ValueError(f"identity network init={init!r} is not one of default, kaiming")
        layers: list[nn.Module] = []
        c_in = 3
        self.block_ends: list[int] = []
        for n, c in zip(VGG_A, channels, strict=True):
            for _ in range(n):
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = c
            self.block_ends.append(len(layers) - 1)
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.fc6 = nn.Conv2d(c_in, fc, pool_size)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.fc8 = nn.Conv2d(fc, num_classes, 1)
        self.num_classes, self.pool_size = int(num_classes), int(pool_size)
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1), persistent=False)
        if init == "kaiming":
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        if weights_path:
            self.load_weights(weights_path)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        x = (x - self.mean) / self.std
        ends = {e: f"conv{i + 1}" for i, e in enumerate(self.block_ends)}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in ends:
                out[ends[i]] = x
        x = F.relu(self.fc6(self.pool(x)))
        out["conv6"] = x
        x = F.relu(self.fc7(x))
        out["conv7"] = x
        out["logits"] = self.fc8(x).flatten(1)
        return out

    def load_weights(self, path: str) -> None:
        state = dict(read_state_dict(path, "identity network (VGG-11 / VGG-Face)"))
        if "state_dict" in state and isinstance(state["state_dict"], Mapping):
            state = dict(state["state_dict"])
        renamed = {}
        tv = {"classifier.0.": "fc6.", "classifier.3.": "fc7.", "classifier.6.": "fc8."}
        for k, v in state.items():
            for old, new in tv.items():
                if k.startswith(old):
                    k = new + k[len(old):]
            target = self.state_dict().get(k)
            if target is not None and v.dim() == 2 and target.dim() == 4 and v.numel() == target.numel():
                v = v.reshape(target.shape)  # torchvision's Linear fc -> our conv (C, H, W order as its flatten)
            renamed[k] = v
        target = self.state_dict()
        bad = [k for k in target if k not in renamed or renamed[k].shape != target[k].shape]
        if bad:
            k = bad[0]
            got = tuple(renamed[k].shape) if k in renamed else "absent"
            raise ValueError(
                f"identity network weights {path} do not fit: {k} is {got}, the network's {tuple(target[k].shape)}; "
                f"set model.networks.identity.num_classes / channels / fc to the file's sizes"
            )
        self.load_state_dict({k: renamed[k] for k in target})
