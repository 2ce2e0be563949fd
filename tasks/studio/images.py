"""Uploads in, PNGs out: size limits, decoding with clear errors, base64 data URLs for the page."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from datamodules.transforms import PIL_ERRORS
from tasks.studio.errors import bad_request, too_large


def check_upload(data: bytes, name: str, max_bytes: int) -> bytes:
    """``data`` when it is non-empty and at most ``max_bytes`` long, else a 4xx naming the file and the limit."""
    if len(data) > max_bytes:
        raise too_large(f"upload {name} is {len(data)} bytes, over the limit of {max_bytes} bytes "
                        f"(task.max_upload_bytes): send a smaller file or raise the limit")
    if not data:
        raise bad_request(f"upload {name} is empty: send an image file")
    return data


@dataclass(frozen=True)
class ImageLimits:
    """What an uploaded image may be: ``task.max_image_side`` pixels on a side, ``task.max_image_pixels`` in all
    (decoded, and again after any resizing), ``task.max_aspect_ratio`` longer side / shorter side."""

    max_side: int
    max_pixels: int
    max_aspect: float

    @classmethod
    def from_task(cls, task: Any) -> ImageLimits:
        return cls(int(task.max_image_side), int(task.max_image_pixels), float(task.max_aspect_ratio))

    def check(self, width: int, height: int, name: str, resized: bool = False) -> None:
        """A 400 naming the image, its size and the key to change when ``width`` x ``height`` is over a limit."""
        what = f"upload {name}" + (" resized" if resized else "")
        size = f"{width}x{height} pixels"
        if min(width, height) < 1:
            raise bad_request(f"{what} is {size}: send a non-empty image")
        if not resized and max(width, height) > self.max_side:
            raise bad_request(f"{what} is {size}, over task.max_image_side={self.max_side}: send a smaller image")
        if max(width, height) / min(width, height) > self.max_aspect:
            raise bad_request(f"{what} is {size}, a side ratio over task.max_aspect_ratio={self.max_aspect:g}: "
                              f"crop it closer to a square")
        if width * height > self.max_pixels:
            raise bad_request(f"{what} is {size}, over task.max_image_pixels={self.max_pixels}: send a smaller "
                              f"image")


def decode_image(data: bytes, name: str, limits: ImageLimits) -> Image.Image:
    """Decode an uploaded image (fully, so corrupt files fail here); a 400 naming the file when it is not an image
    or its size is over ``limits`` (checked from the header, before the pixels are decoded)."""
    try:
        img = Image.open(io.BytesIO(data))
        limits.check(*img.size, name)
        img.load()
    except PIL_ERRORS as err:
        raise bad_request(f"upload {name} is not a readable image ({type(err).__name__}: {err}); send a PNG or "
                          f"JPEG file") from None
    return img


def rgb_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> [1, 3, H, W] float in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def tensor_png(image: torch.Tensor) -> bytes:
    """[3, H, W] or [1, 3, H, W] float in [0, 1] -> PNG bytes."""
    if image.dim() == 4:
        image = image[0]
    arr = (image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return png_bytes(Image.fromarray(arr))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def id_map_png(ids: np.ndarray) -> bytes:
    """An [H, W] id map as a single-channel PNG the dataset code reads back: 8-bit when every id fits, else 16-bit."""
    if ids.min() < 0 or ids.max() > 65535:
        raise bad_request(f"id map values {int(ids.min())}..{int(ids.max())} do not fit a 16-bit PNG")
    if ids.max() <= 255:
        return png_bytes(Image.fromarray(ids.astype(np.uint8), mode="L"))
    return png_bytes(Image.fromarray(ids.astype(np.uint16)))
