"""pix2pixHD's own networks (Wang et al., CVPR 2018): the coarse-to-fine generator (global generator G1 and
local enhancer G2, §3.2) and the instance-wise feature encoder E with vectorised instance pooling (§3.4).
The discriminators are shared (:mod:`networks.discriminators`).

Docs: docs/papers/pix2pixhd.md (commands, datasets, official weights, measured figures)."""

from __future__ import annotations

import torch
from torch import nn

from networks.blocks import (
    ResnetBlock,
    check_spatial_multiple,
    downsample_layers,
    output_layers,
    stem_layers,
    upsample_layers,
)
from networks.label_encoding import as_long_ids


class GlobalGenerator(nn.Module):
    """pix2pixHD global generator G1 (Wang et al. 2018, §3.2), a Johnson-style residual encoder-decoder.

    ``body`` maps the input to ``ngf`` feature channels at input resolution; ``head`` turns them into an
    image in [-1, 1]. The split lets the local enhancer reuse ``body`` (G1 without its last layers).
    Input height and width must be multiples of ``total_stride = 2**n_downsampling``.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int = 3,
        ngf: int = 64,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        norm: str = "instance",
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if n_downsampling < 0 or n_blocks < 0:
            raise ValueError(f"n_downsampling ({n_downsampling}) and n_blocks ({n_blocks}) must be >= 0.")
        self.total_stride: int = 2**n_downsampling
        layers: list[nn.Module] = stem_layers(input_nc, ngf, norm)
        for i in range(n_downsampling):
            layers += downsample_layers(ngf * 2**i, ngf * 2 ** (i + 1), norm)
        width = ngf * 2**n_downsampling
        layers += [ResnetBlock(width, padding_type=padding_type, norm=norm) for _ in range(n_blocks)]
        for i in range(n_downsampling, 0, -1):
            layers += upsample_layers(ngf * 2**i, ngf * 2 ** (i - 1), norm)
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(*output_layers(ngf, output_nc))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map of G1: [B, ngf, H, W]."""
        check_spatial_multiple(x, self.total_stride, type(self).__name__)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Synthesised image [B, output_nc, H, W] in [-1, 1]."""
        return self.head(self.features(x))


class LocalEnhancer(nn.Module):
    """pix2pixHD local enhancer G2 wrapped around G1 (Wang et al. 2018, §3.2, coarse-to-fine generator).

    G1 (``global_body``) runs on the input downsampled ``n_local_enhancers`` times. Each enhancer n = 1..N
    (coarse to fine, stored at index n-1 of ``local_down``/``local_up``) encodes the input at its own scale,
    adds the previous stage's last feature map element-wise, and decodes with residual blocks and a
    transposed convolution. Only the finest enhancer carries the output conv + Tanh.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int = 3,
        ngf: int = 32,
        n_downsample_global: int = 4,
        n_blocks_global: int = 9,
        n_local_enhancers: int = 1,
        n_blocks_local: int = 3,
        norm: str = "instance",
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if n_local_enhancers < 1:
            raise ValueError(f"n_local_enhancers must be >= 1, got {n_local_enhancers}; use GlobalGenerator.")
        self.n_local_enhancers = n_local_enhancers
        self.total_stride: int = 2 ** (n_downsample_global + n_local_enhancers)

        global_gen = GlobalGenerator(
            input_nc,
            output_nc,
            ngf * 2**n_local_enhancers,
            n_downsample_global,
            n_blocks_global,
            norm,
            padding_type,
        )
        self.global_body = global_gen.body  # G1 without its final conv/Tanh

        self.local_down = nn.ModuleList()
        self.local_up = nn.ModuleList()
        for n in range(1, n_local_enhancers + 1):
            ngf_n = ngf * 2 ** (n_local_enhancers - n)
            down = stem_layers(input_nc, ngf_n, norm) + downsample_layers(ngf_n, 2 * ngf_n, norm)
            up: list[nn.Module] = [
                ResnetBlock(2 * ngf_n, padding_type=padding_type, norm=norm) for _ in range(n_blocks_local)
            ]
            up += upsample_layers(2 * ngf_n, ngf_n, norm)
            if n == n_local_enhancers:
                up += output_layers(ngf, output_nc)
            self.local_down.append(nn.Sequential(*down))
            self.local_up.append(nn.Sequential(*up))

        # Input pyramid for the enhancers, as in official pix2pixHD.
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Synthesised image [B, output_nc, H, W] in [-1, 1]."""
        check_spatial_multiple(x, self.total_stride, type(self).__name__)
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.global_body(pyramid[-1])
        for i in range(self.n_local_enhancers):
            scale_input = pyramid[self.n_local_enhancers - 1 - i]
            out = self.local_up[i](self.local_down[i](scale_input) + out)
        return out

    def part_modules(self) -> dict[str, list[nn.Module]]:
        """G1 (``global``: ``global_body``) and the enhancer(s) (``local``): what stages freeze or train (§3.2)."""
        return {"global": [self.global_body], "local": [self.local_down, self.local_up]}


def _group_keys(features: torch.Tensor, inst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Map every pixel to a group key ``b * U + rank(id)`` where U is the number of distinct ids.

    Returns (keys [B*H*W], sorted distinct ids [U], U). Keys of absent (batch, id) pairs are never hit.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be [B, C, H, W], got shape {tuple(features.shape)}.")
    b, _, h, w = features.shape
    if inst.dim() != 4 or inst.shape[1] != 1 or inst.shape[0] != b or inst.shape[-2:] != (h, w):
        raise ValueError(
            f"inst must be [B, 1, H, W] = [{b}, 1, {h}, {w}] to match features, got {tuple(inst.shape)}."
        )
    ids = as_long_ids(inst, "inst").reshape(b, h * w).to(features.device)
    unique_ids, rank = torch.unique(ids, return_inverse=True)  # rank: [B, H*W] in [0, U)
    n_ids = unique_ids.numel()
    batch_offset = torch.arange(b, device=ids.device).unsqueeze(1) * n_ids
    return (rank + batch_offset).reshape(-1), unique_ids, n_ids


def _group_sums(
    features: torch.Tensor, keys: torch.Tensor, n_groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group feature sums [G, C] (accumulated in float32 or wider) and pixel counts [G]."""
    b, c, h, w = features.shape
    acc_dtype = torch.promote_types(features.dtype, torch.float32)
    flat = features.permute(0, 2, 3, 1).reshape(b * h * w, c).to(acc_dtype)
    sums = flat.new_zeros(n_groups, c).index_add(0, keys, flat)
    counts = torch.bincount(keys, minlength=n_groups)
    return sums, counts


def instance_average_pool(features: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
    """Replace every pixel's features by the mean over its instance in its own batch item (pix2pixHD §3.4).

    ``features`` [B, C, H, W]; ``inst`` [B, 1, H, W] integer instance ids (any integer dtype, arbitrary
    and possibly negative values). Fully vectorised (no Python loop over batch, instances or channels) and
    differentiable w.r.t. ``features``. Sums are accumulated in at least float32.
    """
    keys, _, n_ids = _group_keys(features, inst)
    b, c, h, w = features.shape
    sums, counts = _group_sums(features, keys, b * n_ids)
    means = sums / counts.clamp_min(1).unsqueeze(1).to(sums.dtype)
    pooled = means.index_select(0, keys).reshape(b, h, w, c).permute(0, 3, 1, 2)
    return pooled.to(features.dtype).contiguous()


def instance_mean_features(
    features: torch.Tensor, inst: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-(batch item, instance) mean features, e.g. to fit the K-means feature bank of §3.4.

    Returns ``(batch_index [N] long, instance_id [N] long, means [N, C], pixel_counts [N] long)`` with one
    row per (batch item, instance id) present, sorted by batch index then instance id.
    """
    keys, unique_ids, n_ids = _group_keys(features, inst)
    b = features.shape[0]
    sums, counts = _group_sums(features, keys, b * n_ids)
    present = torch.nonzero(counts, as_tuple=True)[0]
    means = (sums[present] / counts[present].unsqueeze(1).to(sums.dtype)).to(features.dtype)
    batch_index = torch.div(present, n_ids, rounding_mode="floor")
    instance_id = unique_ids[present % n_ids]
    return batch_index, instance_id, means, counts[present].long()


class FeatureEncoder(nn.Module):
    """pix2pixHD instance-wise feature encoder E (Wang et al. 2018, §3.4).

    A conv encoder-decoder (stem, ``n_downsampling`` stride-2 convs, as many transposed convs, conv7 + Tanh)
    whose output is average-pooled inside each instance, giving a low-dimensional per-instance code map.
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        nef: int = 16,
        n_downsampling: int = 4,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        self.total_stride: int = 2**n_downsampling
        layers: list[nn.Module] = stem_layers(input_nc, nef, norm)
        for i in range(n_downsampling):
            layers += downsample_layers(nef * 2**i, nef * 2 ** (i + 1), norm)
        for i in range(n_downsampling, 0, -1):
            layers += upsample_layers(nef * 2**i, nef * 2 ** (i - 1), norm)
        layers += output_layers(nef, output_nc)
        self.model = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, inst: torch.Tensor) -> torch.Tensor:
        """Instance-pooled feature map [B, output_nc, H, W]."""
        check_spatial_multiple(image, self.total_stride, type(self).__name__)
        return instance_average_pool(self.model(image), inst)
