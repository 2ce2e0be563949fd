"""pix2pixHD instance-wise feature encoder and vectorised instance pooling (Wang et al. 2018, §3.4)."""

from __future__ import annotations

import torch
from torch import nn

from networks.blocks import (
    check_spatial_multiple,
    downsample_layers,
    output_layers,
    stem_layers,
    upsample_layers,
)
from networks.label_encoding import as_long_ids


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
