"""pix2pixHD coarse-to-fine generator: global generator G1 and local enhancer G2 (Wang et al. 2018, §3.2)."""

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
