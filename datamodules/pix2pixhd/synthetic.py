"""Procedural street-like scenes with Cityscapes-style label / instance maps and multi-modal appearance.

Each sample is generated on the fly and is a deterministic function of (seed, split, index). Every instance
(each object, and each stuff region: sky, ground, buildings) draws an appearance *mode* uniformly from
``num_styles`` modes of its class; a mode is a fixed, well-separated colour plus a simple texture. This gives
pix2pixHD's instance-wise feature encoder something to learn and lets tests check clustering purity.
"""

from __future__ import annotations

import colorsys
import zlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.pix2pixhd.instances import INSTANCE_ID_MULTIPLIER, instance_class, make_instance_id
from datamodules.transforms import PairedTransform, as_hw

CLASS_NAMES: tuple[str, ...] = (
    "sky", "ground", "building", "car", "tree", "person", "sign", "pole", "bus", "bicycle", "rider", "truck",
)  # fmt: skip
"""Names of the first classes; further object classes are called ``object<id>``."""
SKY, GROUND, BUILDING = 0, 1, 2
STUFF_CLASSES = (SKY, GROUND, BUILDING)
FIRST_OBJECT_CLASS = 3
MIN_LABEL_NC = FIRST_OBJECT_CLASS + 2
SHAPES = ("rectangle", "ellipse", "triangle")
"""Object class ``c`` is drawn as ``SHAPES[(c - FIRST_OBJECT_CLASS) % 3]``."""
TEXTURES = ("gradient", "horizontal_stripes", "vertical_stripes")
MIN_IMAGE_SIDE = 8

# Scene layout, as fractions of the image height (H) / width (W).
HORIZON_RANGE = (0.3, 0.55)  # horizon row / H
BUILDING_WIDTH_RANGE = (0.15, 0.4)  # / W
BUILDING_HEIGHT_RANGE = (0.1, 0.3)  # above the horizon, / H
MAX_BUILDINGS = 3
OBJECT_HEIGHT_RANGE = (0.15, 0.4)  # / H
OBJECT_WIDTH_RANGE = (0.1, 0.3)  # / W
# Palette: modes of a class are evenly spaced in hue (HSV, fixed saturation/value) -> far apart in RGB.
PALETTE_SATURATION = 0.75
PALETTE_VALUE = 0.85
GOLDEN_RATIO_CONJUGATE = 0.6180339887  # class hue offsets, spread around the colour wheel
STRIPE_PERIOD = 4  # pixels


def class_names(label_nc: int) -> list[str]:
    """Names of classes ``0 .. label_nc - 1``."""
    return [CLASS_NAMES[c] if c < len(CLASS_NAMES) else f"object{c}" for c in range(label_nc)]


def make_palette(label_nc: int, num_styles: int) -> np.ndarray:
    """Mode colours [label_nc, num_styles, 3] in [-1, 1]; fixed per (class, mode), independent of the seed."""
    pal = np.zeros((label_nc, num_styles, 3), dtype=np.float32)
    for c in range(label_nc):
        base_hue = (c * GOLDEN_RATIO_CONJUGATE) % 1.0
        for m in range(num_styles):
            rgb = colorsys.hsv_to_rgb((base_hue + m / num_styles) % 1.0, PALETTE_SATURATION, PALETTE_VALUE)
            pal[c, m] = np.asarray(rgb, dtype=np.float32) * 2.0 - 1.0
    return pal


def texture_of(class_id: int, style_id: int) -> str:
    """Texture name of a (class, mode)."""
    return TEXTURES[(class_id + style_id) % len(TEXTURES)]


def _check_int(name: str, value: Any, low: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name}={value!r} must be an int >= {low}; {fix}")
    return int(value)


class SyntheticScenesDataset(Dataset):
    """Procedural scenes: sky / ground / buildings (stuff, instance id = class id) plus object instances
    (rectangles, ellipses, triangles; instance id = class_id * 1000 + k).

    Returns ``{"label", "inst", "image", "path"}`` (see the datamodules package docs). ``transform`` (optional)
    is applied to every sample; ``use_instance=False`` returns the label as ``inst``.
    """

    def __init__(
        self,
        num_samples: int = 64,
        image_size: tuple[int, int] = (64, 64),
        label_nc: int = 8,
        num_styles: int = 3,
        max_objects: int = 6,
        seed: int = 0,
        split: str = "train",
        noise_std: float = 0.02,
        texture_strength: float = 0.15,
        use_instance: bool = True,
        transform: PairedTransform | None = None,
    ) -> None:
        self.num_samples = _check_int("num_samples", num_samples, 1, "set the number of synthetic samples")
        self.image_size = as_hw(image_size, "image_size")
        if min(self.image_size) < MIN_IMAGE_SIDE:
            raise ValueError(
                f"image_size={image_size!r} is too small for synthetic scenes; use sides >= {MIN_IMAGE_SIDE}"
            )
        self.label_nc = _check_int(
            "dataset.label_nc", label_nc, MIN_LABEL_NC,
            f"synthetic scenes need {FIRST_OBJECT_CLASS} stuff classes plus at least 2 object classes",
        )  # fmt: skip
        self.num_styles = _check_int("num_styles", num_styles, 1, "use at least one appearance mode per class")
        self.max_objects = _check_int("max_objects", max_objects, 0, "use 0 for stuff-only scenes")
        if self.max_objects >= INSTANCE_ID_MULTIPLIER:
            raise ValueError(f"max_objects={max_objects} must be < {INSTANCE_ID_MULTIPLIER} (instance id encoding)")
        self.seed = _check_int("seed", seed, 0, "use a non-negative seed")
        if not isinstance(split, str) or not split:
            raise ValueError(f"split={split!r} must be a non-empty string such as 'train'")
        self.split = split
        for name, val in (("noise_std", noise_std), ("texture_strength", texture_strength)):
            if not isinstance(val, int | float) or isinstance(val, bool) or not 0.0 <= val <= 1.0:
                raise ValueError(f"{name}={val!r} must be a float in [0, 1] (image units, images span [-1, 1])")
        self.noise_std = float(noise_std)
        self.texture_strength = float(texture_strength)
        self.use_instance = bool(use_instance)
        self.transform = transform
        self.class_names = class_names(self.label_nc)
        self.palette = make_palette(self.label_nc, self.num_styles)
        self._split_code = zlib.crc32(split.encode("utf-8"))

    def __len__(self) -> int:
        return self.num_samples

    def _rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} synthetic samples")
        return np.random.default_rng([self.seed, self._split_code, index])

    # ------------------------------------------------------------------------------------ generation
    def _layout(self, rng: np.random.Generator) -> np.ndarray:
        """Instance map [H, W] int64 (stuff = class id, objects = class * 1000 + k)."""
        h, w = self.image_size
        ys, xs = np.mgrid[0:h, 0:w]
        horizon = int(rng.integers(round(HORIZON_RANGE[0] * h), round(HORIZON_RANGE[1] * h) + 1))
        inst = np.where(ys < horizon, SKY, GROUND).astype(np.int64)
        for _ in range(int(rng.integers(1, MAX_BUILDINGS + 1))):
            bw = max(1, round(rng.uniform(*BUILDING_WIDTH_RANGE) * w))
            bh = max(1, round(rng.uniform(*BUILDING_HEIGHT_RANGE) * h))
            x0 = int(rng.integers(0, w - bw + 1))
            inst[max(0, horizon - bh) : horizon, x0 : x0 + bw] = BUILDING

        n_obj = int(rng.integers(min(1, self.max_objects), self.max_objects + 1))
        owner = np.full((h, w), -1, dtype=np.int64)
        classes = []
        for j in range(n_obj):
            c = int(rng.integers(FIRST_OBJECT_CLASS, self.label_nc))
            oh = max(2, round(rng.uniform(*OBJECT_HEIGHT_RANGE) * h))
            ow = max(2, round(rng.uniform(*OBJECT_WIDTH_RANGE) * w))
            bottom = int(rng.integers(horizon, h + 1))
            top = bottom - oh
            x0 = int(rng.integers(0, w - ow + 1))
            inside = (ys >= top) & (ys < bottom) & (xs >= x0) & (xs < x0 + ow)
            shape = SHAPES[(c - FIRST_OBJECT_CLASS) % len(SHAPES)]
            cy, cx = top + oh / 2.0 - 0.5, x0 + ow / 2.0 - 0.5
            if shape == "ellipse":
                inside &= ((ys - cy) / (oh / 2.0)) ** 2 + ((xs - cx) / (ow / 2.0)) ** 2 <= 1.0
            elif shape == "triangle":
                inside &= np.abs(xs - cx) <= (ys - top + 1) / oh * (ow / 2.0)
            owner[inside] = j
            classes.append(c)
        # Number visible objects k = 0, 1, ... per class in drawing order (fully hidden ones get no id).
        counts: dict[int, int] = {}
        for j, c in enumerate(classes):
            mask = owner == j
            if mask.any():
                k = counts.get(c, 0)
                counts[c] = k + 1
                inst[mask] = make_instance_id(c, k)
        return inst

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[int, int]]]:
        """Sample ``index`` before transforms: instance map [H, W], image [3, H, W] in [-1, 1], and its ground
        truth: instance id -> (class_id, style_id) for every visible instance."""
        rng = self._rng(index)
        inst = self._layout(rng)
        ids = np.unique(inst)
        styles = {int(i): (int(instance_class(i)), int(rng.integers(self.num_styles))) for i in ids}
        h, w = self.image_size
        ys, xs = np.mgrid[0:h, 0:w]
        image = np.zeros((3, h, w), dtype=np.float32)
        a = self.texture_strength
        for i, (c, m) in styles.items():
            mask = inst == i
            rows = np.nonzero(mask.any(axis=1))[0]
            cols = np.nonzero(mask.any(axis=0))[0]
            y, x = ys[mask] - rows[0], xs[mask] - cols[0]
            tex = texture_of(c, m)
            if tex == "gradient":
                offset = a * (2.0 * y / max(1, rows[-1] - rows[0]) - 1.0)
            elif tex == "horizontal_stripes":
                offset = np.where((y // (STRIPE_PERIOD // 2)) % 2 == 0, a, -a)
            else:
                offset = np.where((x // (STRIPE_PERIOD // 2)) % 2 == 0, a, -a)
            image[:, mask] = self.palette[c, m][:, None] + offset[None].astype(np.float32)
        if self.noise_std > 0:
            image += rng.normal(0.0, self.noise_std, size=image.shape).astype(np.float32)
        np.clip(image, -1.0, 1.0, out=image)
        return inst, image, styles

    def __getitem__(self, index: int) -> dict[str, Any]:
        inst, image, _ = self.generate(index)
        inst_t = torch.from_numpy(inst)[None]
        label_t = instance_class(inst_t)
        sample: dict[str, Any] = {
            "label": label_t,
            "inst": inst_t if self.use_instance else label_t.clone(),
            "image": torch.from_numpy(image),
            "path": f"synthetic/{self.split}/{index:05d}",
        }
        if self.transform is not None:
            sample = self.transform(sample)
        return sample
