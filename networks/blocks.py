"""Shared building blocks: normalisation factory, padding helper and the pix2pixHD residual block."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class InstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` whose backward always receives an NCHW-contiguous gradient.

    PyTorch's CPU instance-norm backward (seen in 2.14) returns wrong input gradients for a batch of one when the
    incoming gradient is channels-last, which it is as soon as the next conv's weights are (``speed.channels_last``;
    pix2pixHD trains at batch 1). A hook makes that gradient contiguous first (a no-op for NCHW training).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if out.requires_grad:
            out.register_hook(lambda grad: grad.contiguous())
        return out


_NORM_LAYERS: dict[str, Callable[[int], nn.Module]] = {
    # Official pix2pixHD uses InstanceNorm2d without learnable affine parameters.
    "instance": functools.partial(InstanceNorm2d, affine=False),
    "batch": functools.partial(nn.BatchNorm2d, affine=True),
    "none": lambda num_features: nn.Identity(),
}

_PAD_LAYERS: dict[str, type[nn.Module]] = {
    "reflect": nn.ReflectionPad2d,
    "replicate": nn.ReplicationPad2d,
}
PADDING_TYPES: tuple[str, ...] = (*_PAD_LAYERS, "zero")


def get_norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """Return a factory ``num_channels -> nn.Module`` for the named normalisation.

    'instance' is ``InstanceNorm2d(affine=False)`` as in official pix2pixHD (Wang et al. 2018, §3.2),
    'batch' is ``BatchNorm2d(affine=True)``, 'none' is ``Identity``.
    """
    try:
        return _NORM_LAYERS[norm]
    except KeyError:
        raise ValueError(f"Unknown norm {norm!r}; valid names are {sorted(_NORM_LAYERS)}.") from None


def padding_layers(padding_type: str, pad: int) -> tuple[list[nn.Module], int]:
    """Return ``(explicit padding layers, conv padding)`` for a padding type.

    'reflect'/'replicate' give one explicit padding layer and conv padding 0; 'zero' gives no layer and
    lets the convolution zero-pad by ``pad``.
    """
    if padding_type in _PAD_LAYERS:
        return [_PAD_LAYERS[padding_type](pad)], 0
    if padding_type == "zero":
        return [], pad
    raise ValueError(f"Unknown padding_type {padding_type!r}; valid names are {list(PADDING_TYPES)}.")


class ResnetBlock(nn.Module):
    """Residual block ``x + F(x)`` with two 3x3 convolutions (pix2pixHD §3.2, after Johnson et al. 2016).

    F = pad, conv3x3, norm, ReLU, [Dropout(0.5)], pad, conv3x3, norm. Channels and resolution are preserved.
    """

    def __init__(
        self,
        dim: int,
        padding_type: str = "reflect",
        norm: str = "instance",
        use_dropout: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        norm_layer = get_norm_layer(norm)
        layers: list[nn.Module] = []
        pad_layers, conv_pad = padding_layers(padding_type, 1)
        layers += [*pad_layers, nn.Conv2d(dim, dim, kernel_size=3, padding=conv_pad), norm_layer(dim)]
        layers += [nn.ReLU(inplace=True)]
        if use_dropout:
            layers += [nn.Dropout(dropout)]
        pad_layers, conv_pad = padding_layers(padding_type, 1)
        layers += [*pad_layers, nn.Conv2d(dim, dim, kernel_size=3, padding=conv_pad), norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)
        #: recompute F(x) in the backward pass instead of keeping its activations (``speed.checkpoint_activations``)
        self.checkpoint_activations = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint_activations and self.training and torch.is_grad_enabled():
            return x + checkpoint(self.conv_block, x, use_reentrant=False)
        return x + self.conv_block(x)


def check_spatial_multiple(x: torch.Tensor, total_stride: int, owner: str) -> None:
    """Raise ValueError if the spatial size of ``x`` is not a multiple of ``total_stride``.

    Stride-2 convolutions followed by transposed convolutions only restore the input size exactly when
    every downsampling step sees an even size.
    """
    if x.dim() != 4:
        raise ValueError(f"{owner} expects a 4-D [B, C, H, W] tensor, got shape {tuple(x.shape)}.")
    h, w = x.shape[-2:]
    if h % total_stride or w % total_stride:
        raise ValueError(
            f"{owner}: input size {h}x{w} (HxW) is not a multiple of the network's total stride "
            f"{total_stride}. Fix: resize/crop the data so height and width are multiples of {total_stride} "
            f"(e.g. set the dataset load/crop size accordingly) or use fewer downsampling layers."
        )


# The 7x7 stem/head convolutions always use reflection padding in pix2pixHD; ``padding_type`` only
# controls the residual blocks (as in the official implementation).
STEM_KERNEL = 7


def stem_layers(in_nc: int, out_nc: int, norm: str) -> list[nn.Module]:
    """ReflectionPad(3), conv7x7, norm, ReLU (the c7s1-k block of §3.2)."""
    return [
        nn.ReflectionPad2d(STEM_KERNEL // 2),
        nn.Conv2d(in_nc, out_nc, kernel_size=STEM_KERNEL, padding=0),
        get_norm_layer(norm)(out_nc),
        nn.ReLU(inplace=True),
    ]


def downsample_layers(in_nc: int, out_nc: int, norm: str) -> list[nn.Module]:
    """conv3x3 stride 2, norm, ReLU (the d-k block of §3.2)."""
    return [
        nn.Conv2d(in_nc, out_nc, kernel_size=3, stride=2, padding=1),
        get_norm_layer(norm)(out_nc),
        nn.ReLU(inplace=True),
    ]


def upsample_layers(in_nc: int, out_nc: int, norm: str) -> list[nn.Module]:
    """Fractionally-strided conv3x3 stride 1/2, norm, ReLU (the u-k block of §3.2)."""
    return [
        nn.ConvTranspose2d(in_nc, out_nc, kernel_size=3, stride=2, padding=1, output_padding=1),
        get_norm_layer(norm)(out_nc),
        nn.ReLU(inplace=True),
    ]


def output_layers(in_nc: int, out_nc: int) -> list[nn.Module]:
    """ReflectionPad(3), conv7x7 to the output channels, Tanh."""
    return [
        nn.ReflectionPad2d(STEM_KERNEL // 2),
        nn.Conv2d(in_nc, out_nc, kernel_size=STEM_KERNEL, padding=0),
        nn.Tanh(),
    ]
