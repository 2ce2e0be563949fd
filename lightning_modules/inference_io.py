"""Inputs and outputs of the Python inference API: tensors, PIL images or NumPy arrays in; tensors in [0, 1] out,
with :func:`to_pil` for images."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_images(x: Any, device: torch.device | None = None) -> torch.Tensor:
    """A PIL image, an ``H x W x 3`` array (uint8, or float in [0, 1]), a ``[3, H, W]`` / ``[B, 3, H, W]`` tensor
    in [0, 1], or a list of those -> a float ``[B, 3, H, W]`` tensor in [0, 1]."""
    if isinstance(x, (list, tuple)):
        return torch.cat([as_images(i, device) for i in x])
    if hasattr(x, "convert") and hasattr(x, "size"):  # PIL
        x = np.asarray(x.convert("RGB"))
    if isinstance(x, np.ndarray):
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ValueError(f"an image array must be H x W x 3 (RGB), got shape {x.shape}")
        t = torch.from_numpy(np.array(x, copy=True)).permute(2, 0, 1)
        x = t.float() / 255.0 if x.dtype == np.uint8 else t.float()
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected an image (tensor, PIL image or NumPy array), got {type(x).__name__}")
    x = x.float()
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"an image tensor must be [3, H, W] or [B, 3, H, W], got {tuple(x.shape)}")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError(f"image values must be in [0, 1], got [{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return x.to(device) if device is not None else x


def as_ids(x: Any, device: torch.device | None = None) -> torch.Tensor:
    """A map of integer ids (label or instance ids): a PIL image (mode L/I/P), an ``H x W`` integer array, or an
    ``[H, W]`` / ``[B, 1, H, W]`` / ``[B, H, W]`` tensor -> a long ``[B, 1, H, W]`` tensor."""
    if isinstance(x, (list, tuple)):
        return torch.cat([as_ids(i, device) for i in x])
    if hasattr(x, "convert") and hasattr(x, "size"):  # PIL
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"an id map must be an H x W integer array, got shape {x.shape} dtype {x.dtype}")
        x = torch.from_numpy(x.astype(np.int64))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected an id map (tensor, PIL image or NumPy array), got {type(x).__name__}")
    if x.is_floating_point():
        raise ValueError("an id map must hold integers (label / instance ids), not floats")
    x = x.long()
    if x.dim() == 2:
        x = x[None, None]
    elif x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"an id map tensor must be [H, W], [B, H, W] or [B, 1, H, W], got {tuple(x.shape)}")
    return x.to(device) if device is not None else x


def to_pil(images: torch.Tensor) -> Any:
    """``[3, H, W]`` -> a PIL image; ``[B, 3, H, W]`` -> a list of them (values in [0, 1], rounded as PNG writing
    rounds: ``torchvision.utils.save_image``)."""
    from PIL import Image

    if images.dim() == 4:
        return [to_pil(i) for i in images]
    array = images.detach().float().cpu().clamp(0, 1).mul(255).add(0.5).clamp(0, 255).byte()
    return Image.fromarray(array.permute(1, 2, 0).numpy())
