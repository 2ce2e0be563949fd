"""pix2pixHD PatchGAN and multi-scale discriminators (Wang et al. 2018, §3.2)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from networks.blocks import get_norm_layer


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017) returning every intermediate feature (pix2pixHD §3.2).

    Blocks (each a submodule of ``blocks``): conv s2 + LReLU; ``n_layers - 1`` x [conv s2, norm, LReLU]
    with channels doubling up to ``max_channels``; conv s1, norm, LReLU; conv s1 to one channel (+ Sigmoid).
    ``forward`` returns the ``n_layers + 2`` block outputs; the last one is the patch prediction. The
    intermediate ones feed the feature-matching loss (§3.2, Eq. 4).
    """

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        use_sigmoid: bool = False,
        kernel_size: int = 4,
        negative_slope: float = 0.2,
        max_channels: int = 512,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}.")
        norm_layer = get_norm_layer(norm)
        pad = math.ceil((kernel_size - 1) / 2)
        self.n_layers = n_layers

        def conv(in_nc: int, out_nc: int, stride: int) -> nn.Conv2d:
            return nn.Conv2d(in_nc, out_nc, kernel_size=kernel_size, stride=stride, padding=pad)

        blocks: list[list[nn.Module]] = [[conv(input_nc, ndf, 2), nn.LeakyReLU(negative_slope, inplace=True)]]
        nf = ndf
        for _ in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, max_channels)
            blocks.append([conv(nf_prev, nf, 2), norm_layer(nf), nn.LeakyReLU(negative_slope, inplace=True)])
        nf_prev, nf = nf, min(nf * 2, max_channels)
        blocks.append([conv(nf_prev, nf, 1), norm_layer(nf), nn.LeakyReLU(negative_slope, inplace=True)])
        final: list[nn.Module] = [conv(nf, 1, 1)]
        if use_sigmoid:
            final.append(nn.Sigmoid())
        blocks.append(final)
        self.blocks = nn.ModuleList(nn.Sequential(*b) for b in blocks)
        #: recompute each block in the backward pass (``speed.checkpoint_activations=all``)
        self.checkpoint_activations = False

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of all ``n_layers + 2`` blocks, the last being the [B, 1, h, w] patch prediction."""
        feats = []
        recompute = self.checkpoint_activations and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs with unshared weights at successively halved resolutions (pix2pixHD §3.2).

    Element ``i`` of the output is discriminator ``i`` applied to the input average-pooled ``i`` times.
    """

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        num_D: int = 3,
        norm: str = "instance",
        use_sigmoid: bool = False,
    ) -> None:
        super().__init__()
        if num_D < 1:
            raise ValueError(f"num_D must be >= 1, got {num_D}.")
        self.num_D = num_D
        self.n_layers = n_layers
        self.discriminators = nn.ModuleList(
            NLayerDiscriminator(input_nc, ndf, n_layers, norm, use_sigmoid) for _ in range(num_D)
        )
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per-scale lists of intermediate features, finest scale first."""
        results = []
        for i, disc in enumerate(self.discriminators):
            if i > 0:
                x = self.downsample(x)
            results.append(disc(x))
        return results
