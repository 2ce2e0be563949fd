"""Readers and paired transforms for label map / instance map / photo triples.

Label and instance maps are resized with nearest-neighbour index gathering, so ids (including 16-bit
Cityscapes instance ids) are preserved exactly. Photos are resized bicubically (antialiased). The same
random crop and flip are applied to every map of a sample.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)

RESIZE_MODES = ("resize_and_crop", "scale_width", "scale_width_and_crop", "resize", "crop", "none")
"""pix2pixHD's ``--resize_or_crop`` options (``resize``: to exactly ``load_size``; ``crop``: crop only)."""
_LOAD_MODES = ("resize_and_crop", "scale_width", "scale_width_and_crop", "resize")
_CROP_MODES = ("resize_and_crop", "scale_width_and_crop", "crop")
_SCALE_WIDTH_MODES = ("scale_width", "scale_width_and_crop")

FIT_MODES = ("resize", "crop", "pad")
NEAREST_KEYS = ("label", "inst")
"""Sample keys resized with nearest neighbour (integer id maps)."""
IMAGE_KEYS = ("image",)
"""Sample keys resized bicubically (float photos in [-1, 1])."""

LABEL_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N")
"""PIL modes accepted for label / instance maps (single channel integer images)."""

# PIL raises a zoo of exception types for unreadable files.
PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

RandomSource = torch.Generator | random.Random | np.random.Generator | None

DEFAULT_MAX_PIXELS = 100_000_000
"""The pixel cap of the shared readers when no config key sets one (``task.max_pixels``): an ordinary 48-megapixel
phone photo and an 8192x8192 (67 M) frame pass, a decoded RGB image stays under ~300 MB. PIL's own decompression-bomb
limit (~179 M pixels) stays in place above it."""


class TooLargeError(ValueError):
    """An image or video frame above the configured pixel cap (:func:`check_pixels`)."""


def check_pixels(path: str, width: int, height: int, max_pixels: int | None, key: str = "task.max_pixels") -> None:
    """One ValueError naming ``path``, its size and ``key`` when ``width * height`` is above ``max_pixels``
    (None = no cap): checked on the header, before anything is decoded."""
    if max_pixels is not None and int(width) * int(height) > int(max_pixels):
        raise TooLargeError(
            f"{path} is {width}x{height} ({width * height / 1e6:.1f} megapixels), above the cap of "
            f"{int(max_pixels) / 1e6:g} megapixels ({key}={int(max_pixels)}); downscale it, or raise {key} if the "
            "machine has the memory"
        )


def bomb_error(path: str, err: BaseException, key: str = "task.max_pixels") -> TooLargeError:
    """PIL's decompression-bomb refusal as the pixel-cap message (it fires before our header check can)."""
    return TooLargeError(f"{path} is too large to decode ({err}); downscale it ({key} cannot raise PIL's own limit of "
                      f"{2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels)")


# --------------------------------------------------------------------------------------------- sizes
def as_hw(value: Any, name: str) -> tuple[int, int]:
    """Normalise an int or a 2-sequence (list, tuple, OmegaConf ListConfig) into a positive (H, W)."""
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not a size; give an int or [H, W]")
    if isinstance(value, int | np.integer):
        hw = (int(value), int(value))
    else:
        try:
            items = list(value)
        except TypeError:
            raise ValueError(f"{name}={value!r} is not a size; give an int or [H, W]") from None
        if len(items) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in items):
            raise ValueError(f"{name}={value!r} is not a size; give an int or [H, W] of two ints")
        hw = (int(items[0]), int(items[1]))
    if hw[0] < 1 or hw[1] < 1:
        raise ValueError(f"{name}={value!r} must be positive; give an int or [H, W] >= 1")
    return hw


def fit_to_stride(size: tuple[int, int], multiple: int, mode: str = "resize") -> tuple[int, int]:
    """Round each side of ``size`` (H, W) to a multiple of ``multiple`` (never below ``multiple``).

    ``mode``: ``"resize"`` rounds to the nearest multiple (halves round up), ``"crop"`` rounds down (the
    size one can crop to; fails if a side is smaller than ``multiple``), ``"pad"`` rounds up.
    The caller should log a warning when the result differs from ``size``.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int | np.integer) or multiple < 1:
        raise ValueError(f"size multiple {multiple!r} must be an int >= 1")
    if mode not in FIT_MODES:
        raise ValueError(f"fit_to_stride mode {mode!r} is unknown; use one of {FIT_MODES}")
    out = []
    for side in size:
        if side < 1:
            raise ValueError(f"size {size} must be positive")
        if mode == "resize":
            n = max(1, math.floor(side / multiple + 0.5))
        elif mode == "pad":
            n = max(1, -(-side // multiple))
        else:
            n = side // multiple
            if n < 1:
                raise ValueError(
                    f"cannot crop size {size[0]}x{size[1]} to a multiple of {multiple}: a side is smaller "
                    f"than {multiple}; use mode='resize' or 'pad'"
                )
        out.append(int(n * multiple))
    return out[0], out[1]


def training_size(image_size: tuple[int, int], scale: float, multiple: int) -> tuple[int, int]:
    """``image_size * scale`` (each side rounded half up, at least 1), fitted to ``multiple`` like
    :func:`fit_to_stride`. This is the datamodule's ``train_size``; use it wherever that size is predicted."""
    scaled = (max(1, math.floor(image_size[0] * scale + 0.5)), max(1, math.floor(image_size[1] * scale + 0.5)))
    return fit_to_stride(scaled, multiple)


def stride_warning(size: tuple[int, int], multiple: int, fitted: tuple[int, int]) -> str:
    """The standard message for a size that had to be changed by :func:`fit_to_stride`."""
    return (
        f"image size {size[0]}x{size[1]} does not fit the generator's total stride {multiple}; "
        f"resizing to {fitted[0]}x{fitted[1]}"
    )


# ------------------------------------------------------------------------------------------- readers
def unreadable_image_error(path: str, err: BaseException) -> ValueError:
    """The error for an image file PIL cannot parse or decode: names the file, the cause and the fix."""
    return ValueError(
        f"could not read image {path}: {type(err).__name__}: {err}; "
        "the file may be corrupt or not an image — replace or remove it"
    )


def _open(path: str, max_pixels: int | None = None, key: str = "task.max_pixels") -> Image.Image:
    try:
        img = Image.open(path)
        check_pixels(path, *img.size, max_pixels, key)
        img.load()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist; check the dataset folder") from None
    except TooLargeError:
        raise
    except Image.DecompressionBombError as err:
        raise bomb_error(path, err, key) from err
    except PIL_ERRORS as err:
        raise unreadable_image_error(path, err) from err
    return img


def _check_label_mode(path: str, mode: str) -> None:
    if mode not in LABEL_MODES:
        raise ValueError(
            f"label/instance map {path} has PIL mode {mode!r}, expected a single-channel id map "
            f"(one of {LABEL_MODES}); convert colour-coded labels to class-id PNGs first"
        )


def probe_image(path: str, label: bool = False) -> tuple[int, int]:
    """Cheaply check that ``path`` is a readable image (header only) and return its (H, W).

    With ``label=True`` also check that it is a single-channel id map. Raises ValueError like
    :func:`read_image`. Truncated files are only detected when the pixels are read.
    """
    try:
        with Image.open(path) as img:
            size, mode = img.size, img.mode
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist; check the dataset folder") from None
    except PIL_ERRORS as err:
        raise unreadable_image_error(path, err) from err
    if label:
        _check_label_mode(path, mode)
    return size[1], size[0]


def verify_image(path: str) -> None:
    """Parse and verify the header of an image file without decoding it (cheap); a ValueError naming the file when it
    is not a readable image."""
    try:
        with Image.open(path) as img:
            img.verify()
    except PIL_ERRORS as err:
        raise unreadable_image_error(path, err) from err


def read_image(path: str, max_pixels: int | None = None, key: str = "task.max_pixels") -> Image.Image:
    """Read a photo as an RGB PIL image; corrupt/unreadable files raise a ValueError naming the file, and so does an
    image above ``max_pixels`` (:func:`check_pixels`, before decoding)."""
    img = _open(path, max_pixels, key)
    try:
        return img.convert("RGB")
    except PIL_ERRORS as err:
        raise unreadable_image_error(path, err) from err


def read_label_map(path: str) -> np.ndarray:
    """Read a single-channel label or instance map as an int64 [H, W] array (16-bit values kept intact)."""
    img = _open(path)
    _check_label_mode(path, img.mode)
    return np.array(img).astype(np.int64)


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor [3, H, W] in [-1, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().div_(127.5).sub_(1.0)


def label_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """int [H, W] array -> LongTensor [1, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))[None]


def check_dontcare(dontcare_id: int | None, label_nc: int) -> None:
    """Validate ``label_nc`` and ``dontcare_id`` (to be called at construction)."""
    if isinstance(label_nc, bool) or not isinstance(label_nc, int | np.integer) or label_nc < 1:
        raise ValueError(f"dataset.label_nc={label_nc!r} must be a positive int (number of label classes)")
    if dontcare_id is not None and (
        isinstance(dontcare_id, bool)
        or not isinstance(dontcare_id, int | np.integer)
        or not 0 <= dontcare_id < label_nc
    ):
        raise ValueError(
            f"dataset.dontcare_id={dontcare_id!r} must be an int in [0, label_nc={label_nc}) or null; "
            "out-of-range label ids are mapped to it"
        )


#: the fix an out-of-range label id suggests while a model is being trained: it can still get more classes
TRAINING_LABEL_FIX = "raise dataset.label_nc above {max_id} or set dataset.dontcare_id to map such ids"


def check_label_ids(label: np.ndarray, label_nc: int, path: str, dontcare_id: int | None,
                    fix: str = TRAINING_LABEL_FIX) -> np.ndarray:
    """Ensure all ids are in [0, label_nc); map offenders to ``dontcare_id`` or raise a ValueError ending in
    ``fix`` (``{max_id}`` and ``{label_nc}`` are filled in)."""
    if label.size == 0:
        return label
    bad = (label < 0) | (label >= label_nc)
    if not bad.any():
        return label
    if dontcare_id is None:
        offenders = label[bad]
        worst = int(offenders.max()) if (offenders >= label_nc).any() else int(offenders.min())
        raise ValueError(
            f"label map {path} contains id {worst} outside [0, label_nc={label_nc}) "
            f"(max id {int(label.max())}, min id {int(label.min())}); "
            + fix.format(max_id=int(label.max()), label_nc=label_nc)
        )
    out = label.copy()
    out[bad] = dontcare_id
    return out


# ---------------------------------------------------------------------------------------- transform
def _rand_int(rng: RandomSource, high: int) -> int:
    """Uniform int in [0, high)."""
    if high <= 1:
        return 0
    if rng is None:
        return int(torch.randint(high, (1,)).item())
    if isinstance(rng, torch.Generator):
        return int(torch.randint(high, (1,), generator=rng).item())
    if isinstance(rng, random.Random):
        return rng.randrange(high)
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(high))
    raise TypeError(f"unsupported random source {type(rng).__name__}; pass a torch.Generator or random.Random")


def resize_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of [C, H, W] by index gathering (exact for any dtype/value)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    rows = ((torch.arange(size[0], dtype=torch.float64) + 0.5) * (h / size[0])).floor().long().clamp_(0, h - 1)
    cols = ((torch.arange(size[1], dtype=torch.float64) + 0.5) * (w / size[1])).floor().long().clamp_(0, w - 1)
    return x.index_select(-2, rows).index_select(-1, cols)


def resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of a float [C, H, W] image in [-1, 1] (result clamped to [-1, 1])."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = F.interpolate(x[None].float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    return out[0].clamp_(-1.0, 1.0)


@dataclass(frozen=True)
class TransformParams:
    """Per-sample geometry: resize target, crop box (top, left, h, w), flip, final stride-fit size."""

    resize_to: tuple[int, int]
    crop: tuple[int, int, int, int] | None
    flip: bool
    fit_to: tuple[int, int]


class PairedTransform:
    """Apply the same resize / crop / flip to the label, instance and image entries of a sample dict.

    ``resize_mode`` (pix2pixHD's ``resize_or_crop``):
      * ``resize``: resize to exactly ``load_size`` (int = square, or (H, W));
      * ``resize_and_crop``: resize to ``load_size``, then crop ``crop_size``;
      * ``scale_width``: scale to width ``load_size`` (int), keeping the aspect ratio;
      * ``scale_width_and_crop``: ``scale_width`` then crop ``crop_size``;
      * ``crop``: crop ``crop_size`` from the unresized input;
      * ``none``: keep the input size.
    Crops are random (``random_crop=True``) or centred. Afterwards each side is fitted to a multiple of
    ``size_multiple`` (warning logged once per distinct size).
    Keys in ``NEAREST_KEYS`` are resized with nearest neighbour, ``IMAGE_KEYS`` bicubically, other keys
    are passed through unchanged.
    """

    def __init__(
        self,
        load_size: int | tuple[int, int] | None,
        crop_size: tuple[int, int] | None,
        resize_mode: str = "resize_and_crop",
        flip: bool = True,
        size_multiple: int = 1,
        random_crop: bool = True,
    ) -> None:
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode={resize_mode!r} is unknown; use one of {RESIZE_MODES}")
        self.resize_mode = resize_mode
        self.flip = bool(flip)
        self.random_crop = bool(random_crop)
        fit_to_stride((size_multiple, size_multiple), size_multiple)  # validates size_multiple
        self.size_multiple = int(size_multiple)

        self.load_size: tuple[int, int] | None = None
        self.load_width: int | None = None
        if resize_mode in _LOAD_MODES:
            if load_size is None:
                raise ValueError(f"resize_mode={resize_mode!r} needs load_size; set it or use resize_mode='none'")
            if resize_mode in _SCALE_WIDTH_MODES:
                if isinstance(load_size, bool) or not isinstance(load_size, int | np.integer) or load_size < 1:
                    raise ValueError(
                        f"resize_mode={resize_mode!r} takes load_size as one positive int (the target width), "
                        f"got {load_size!r}"
                    )
                self.load_width = int(load_size)
            else:
                self.load_size = as_hw(load_size, "load_size")
        elif load_size is not None:
            raise ValueError(
                f"load_size={load_size!r} is unused by resize_mode={resize_mode!r}; set it to null or "
                f"use one of {_LOAD_MODES}"
            )

        self.crop_size: tuple[int, int] | None = None
        if resize_mode in _CROP_MODES:
            if crop_size is None:
                raise ValueError(f"resize_mode={resize_mode!r} needs crop_size [H, W]")
            self.crop_size = as_hw(crop_size, "crop_size")
            ch, cw = self.crop_size
            if self.load_size is not None and (ch > self.load_size[0] or cw > self.load_size[1]):
                raise ValueError(
                    f"crop_size {ch}x{cw} is larger than load_size {self.load_size[0]}x{self.load_size[1]}; "
                    "lower crop_size or raise load_size"
                )
            if self.load_width is not None and cw > self.load_width:
                raise ValueError(
                    f"crop width {cw} is larger than load_size (width) {self.load_width}; "
                    "lower crop_size or raise load_size"
                )
        elif crop_size is not None:
            raise ValueError(
                f"crop_size={crop_size!r} is unused by resize_mode={resize_mode!r}; set it to null or "
                f"use one of {_CROP_MODES}"
            )
        self._warned: set[tuple[tuple[int, int], tuple[int, int]]] = set()

    def __repr__(self) -> str:
        return (
            f"PairedTransform(resize_mode={self.resize_mode!r}, load_size={self.load_size or self.load_width}, "
            f"crop_size={self.crop_size}, flip={self.flip}, random_crop={self.random_crop}, "
            f"size_multiple={self.size_multiple})"
        )

    def _resized_size(self, in_size: tuple[int, int]) -> tuple[int, int]:
        h, w = in_size
        if self.load_size is not None:
            return self.load_size
        if self.load_width is not None:
            return max(1, round(h * self.load_width / w)), self.load_width
        return h, w

    def get_params(self, in_size: tuple[int, int], rng: RandomSource = None) -> TransformParams:
        """Draw the random geometry for an input of size (H, W)."""
        rh, rw = self._resized_size(in_size)
        crop = None
        out = (rh, rw)
        if self.crop_size is not None:
            ch, cw = self.crop_size
            if ch > rh or cw > rw:
                raise ValueError(
                    f"crop_size {ch}x{cw} is larger than the resized image {rh}x{rw} (input "
                    f"{in_size[0]}x{in_size[1]}); lower crop_size or raise load_size"
                )
            if self.random_crop:
                top, left = _rand_int(rng, rh - ch + 1), _rand_int(rng, rw - cw + 1)
            else:
                top, left = (rh - ch) // 2, (rw - cw) // 2
            crop = (top, left, ch, cw)
            out = (ch, cw)
        flip = self.flip and _rand_int(rng, 2) == 1
        fit = fit_to_stride(out, self.size_multiple)
        if fit != out and (out, fit) not in self._warned:
            self._warned.add((out, fit))
            log.warning(stride_warning(out, self.size_multiple, fit))
        return TransformParams(resize_to=(rh, rw), crop=crop, flip=flip, fit_to=fit)

    @staticmethod
    def apply_params(sample: dict[str, Any], params: TransformParams) -> dict[str, Any]:
        """Apply fixed geometry to every map of ``sample`` (returns a new dict)."""
        out: dict[str, Any] = {}
        for key, value in sample.items():
            if key in NEAREST_KEYS:
                resize = resize_nearest
            elif key in IMAGE_KEYS:
                resize = resize_image
            else:
                out[key] = value
                continue
            x = resize(value, params.resize_to)
            if params.crop is not None:
                top, left, ch, cw = params.crop
                x = x[..., top : top + ch, left : left + cw]
            if params.flip:
                x = x.flip(-1)
            x = resize(x, params.fit_to)
            out[key] = x.contiguous()
        return out

    def __call__(self, sample: dict[str, Any], rng: RandomSource = None) -> dict[str, Any]:
        """Transform a sample dict with tensors [C, H, W] under ``label``/``inst``/``image``."""
        sizes = {k: tuple(v.shape[-2:]) for k, v in sample.items() if k in NEAREST_KEYS + IMAGE_KEYS}
        if not sizes:
            raise ValueError(f"sample has none of the keys {NEAREST_KEYS + IMAGE_KEYS}; got {list(sample)}")
        if len(set(sizes.values())) > 1:
            where = f" ({sample['path']})" if "path" in sample else ""
            raise ValueError(f"label/instance/image sizes differ{where}: {sizes}; all maps must have equal size")
        in_size = next(iter(sizes.values()))
        return self.apply_params(sample, self.get_params(in_size, rng))

