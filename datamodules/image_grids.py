"""Image helpers for sample grids: label colouring, range conversion, grid writing."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torchvision.utils import make_grid, save_image

from datamodules.atomic_writes import atomic_path


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map a tanh-range image [-1, 1] to [0, 1] (clamped)."""
    return ((x.detach().float() + 1) / 2).clamp(0, 1)


def label_palette(label_nc: int, seed: int = 0) -> torch.Tensor:
    """A fixed, seeded colour per class id: [label_nc, 3] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(label_nc, 3, generator=g) * 0.8 + 0.2


def colorize_labels(label: torch.Tensor, label_nc: int) -> torch.Tensor:
    """[B,1,H,W] class ids -> [B,3,H,W] colours in [0,1] (ids past the palette are clamped for display only)."""
    palette = label_palette(label_nc).to(label.device)
    ids = label.long().squeeze(1).clamp(0, label_nc - 1)
    return palette[ids].permute(0, 3, 1, 2).contiguous()


def image_grid(rows: Mapping[str, torch.Tensor], max_images: int = 4) -> torch.Tensor:
    """Stack named rows (each [B,3,H,W] in [0,1]) into one grid: one column per row name, one row per sample."""
    tensors = [t[:max_images].detach().float().cpu() for t in rows.values()]
    n = tensors[0].shape[0]
    interleaved = torch.stack(tensors, dim=1).reshape(n * len(tensors), *tensors[0].shape[1:])
    return make_grid(interleaved, nrow=len(tensors), padding=2, pad_value=1.0)


def save_grid(grid: torch.Tensor, path: str) -> str:
    """Write a grid PNG atomically (write then rename)."""
    with atomic_path(path, keep_extension=True) as tmp:
        save_image(grid, tmp)
    return path
