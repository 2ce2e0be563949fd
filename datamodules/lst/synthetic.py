"""Procedural content scenes and style textures for Linear Style Transfer, generated on the fly.

Content (the COCO stand-in): a two-colour linear gradient background with 3-7 shaded shapes (rectangles,
ellipses, triangles, rings) and a little noise. Style (the WikiArt stand-in): one of ``STYLE_KINDS`` — stripes,
checkers, dots, smooth noise or waves — painted with a random 2-4 colour palette, so styles differ in colour
statistics (means, covariances) and in texture scale/orientation (Gram matrices), which is what the style loss
measures. Every image is a deterministic function of (seed, kind, split, index); images are float32 [3, H, W]
in [0, 1].
"""

from __future__ import annotations

import colorsys
import zlib

import numpy as np
import torch

STYLE_KINDS: tuple[str, ...] = ("stripes", "checkers", "dots", "noise", "waves")
SHAPES: tuple[str, ...] = ("rectangle", "ellipse", "triangle", "ring")
MIN_SIDE = 8


def _rng(seed: int, what: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(f"{what}/{split}".encode()), int(index)])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), dtype=np.float32)


def random_palette(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` colours [n, 3] in [0, 1] from a random colour scheme (analogous, complementary or triadic)."""
    base = rng.random()
    scheme = rng.integers(3)
    spread = (0.08, 0.5, 1.0 / 3.0)[int(scheme)]
    cols = []
    for k in range(n):
        hue = base + spread * k + rng.normal(0.0, 0.02)
        cols.append(_hsv(hue, rng.uniform(0.35, 1.0), rng.uniform(0.25, 1.0)))
    return np.stack(cols)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return ys / max(h, w), xs / max(h, w)  # isotropic coordinates in [0, 1)


def _rotated(ys: np.ndarray, xs: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return xs * c + ys * s, -xs * s + ys * c


def _paint(index_map: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Integer map [H, W] -> image [3, H, W] from ``palette`` [n, 3]."""
    return palette[index_map % len(palette)].transpose(2, 0, 1)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, octaves: int = 3) -> np.ndarray:
    """Value noise in [0, 1]: bilinearly upsampled random grids, ``octaves`` of them at doubling frequency."""
    total = np.zeros((h, w), dtype=np.float32)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        n = max(2, cells * 2**o)
        grid = torch.from_numpy(rng.random((1, 1, n, n)).astype(np.float32))
        up = torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=True)[0, 0].numpy()
        total += amp * up
        norm += amp
        amp *= 0.5
    total /= norm
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def _colormap(values: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] through a piecewise-linear colour ramp over ``palette`` -> [3, H, W]."""
    n = len(palette)
    pos = np.clip(values, 0.0, 1.0) * (n - 1)
    lo = np.floor(pos).astype(np.int64).clip(0, n - 1)
    hi = (lo + 1).clip(0, n - 1)
    t = (pos - lo)[..., None]
    return ((1 - t) * palette[lo] + t * palette[hi]).transpose(2, 0, 1)


def style_image(rng: np.random.Generator, h: int, w: int, kind: str | None = None) -> tuple[np.ndarray, str]:
    """A style texture [3, H, W] in [0, 1] and its kind."""
    kind = kind or STYLE_KINDS[int(rng.integers(len(STYLE_KINDS)))]
    if kind not in STYLE_KINDS:
        raise ValueError(f"style kind {kind!r} is unknown; use one of {STYLE_KINDS}")
    palette = random_palette(rng, int(rng.integers(2, 5)))
    ys, xs = _grid(h, w)
    u, v = _rotated(ys, xs, rng.uniform(0, np.pi))
    period = rng.uniform(0.04, 0.25)  # in units of the longer side: textures at several scales
    if kind == "stripes":
        img = _paint(np.floor(u / period).astype(np.int64), palette)
    elif kind == "checkers":
        img = _paint((np.floor(u / period) + np.floor(v / period)).astype(np.int64), palette[:2])
    elif kind == "dots":
        fu, fv = u / period - np.floor(u / period) - 0.5, v / period - np.floor(v / period) - 0.5
        radius = rng.uniform(0.15, 0.45)
        inside = (fu**2 + fv**2) <= radius**2
        cell = (np.floor(u / period) + 2 * np.floor(v / period)).astype(np.int64)
        dots = _paint(1 + cell % max(1, len(palette) - 1), palette)
        img = np.where(inside[None], dots, palette[0][:, None, None])
    elif kind == "noise":
        img = _colormap(_smooth_noise(rng, h, w, cells=int(rng.integers(2, 6))), palette)
    else:  # waves: stripes along a sinusoidally displaced coordinate
        wobble = rng.uniform(0.02, 0.08) * np.sin(2 * np.pi * v / rng.uniform(0.15, 0.5))
        img = _colormap(0.5 + 0.5 * np.sin(2 * np.pi * (u + wobble) / period), palette)
    img = img + rng.normal(0.0, 0.02, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32), kind


def content_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A content scene [3, H, W] in [0, 1]: shaded shapes on a gradient."""
    ys, xs = _grid(h, w)
    u, _ = _rotated(ys, xs, rng.uniform(0, 2 * np.pi))
    u = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    a, b = random_palette(rng, 2)
    img = (1 - u)[None] * a[:, None, None] + u[None] * b[:, None, None]
    py, px = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(3, 8))):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        sh, sw = rng.uniform(0.15, 0.5) * h, rng.uniform(0.15, 0.5) * w
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        dy, dx = (py - cy) / (sh / 2), (px - cx) / (sw / 2)
        if shape == "rectangle":
            mask = (np.abs(dy) <= 1) & (np.abs(dx) <= 1)
        elif shape == "ellipse":
            mask = dy**2 + dx**2 <= 1
        elif shape == "triangle":
            mask = (dy >= -1) & (dy <= 1) & (np.abs(dx) <= (dy + 1) / 2)
        else:
            r2 = dy**2 + dx**2
            mask = (r2 <= 1) & (r2 >= 0.45)
        colour = random_palette(rng, 1)[0]
        shade = 0.75 + 0.25 * np.clip(1 - dy, 0, 2) / 2  # lit from the top
        img = np.where(mask[None], colour[:, None, None] * shade[None], img)
    img = img + rng.normal(0.0, 0.01, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


class SyntheticImages:
    """``num`` procedural images of ``kind`` ("content" or "style") at ``size`` (H, W), deterministic by
    (seed, kind, split, index). ``image(i)`` -> FloatTensor [3, H, W] in [0, 1]; ``path(i)`` names it."""

    def __init__(self, kind: str, num: int, size: tuple[int, int], seed: int = 0, split: str = "train") -> None:
        if kind not in ("content", "style"):
            raise ValueError(f"kind={kind!r} must be 'content' or 'style'")
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"number of synthetic {kind} images must be an int >= 1, got {num!r}")
        if min(size) < MIN_SIDE:
            raise ValueError(f"synthetic images of {size[0]}x{size[1]} are too small; use sides >= {MIN_SIDE}")
        self.kind, self.num, self.size, self.seed, self.split = kind, int(num), tuple(size), int(seed), split

    def __len__(self) -> int:
        return self.num

    def path(self, index: int) -> str:
        return f"synthetic/{self.kind}/{self.split}/{index:05d}"

    def image(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.num:
            raise IndexError(f"index {index} out of range for {self.num} synthetic {self.kind} images")
        rng = _rng(self.seed, self.kind, self.split, index)
        h, w = self.size
        arr = content_image(rng, h, w) if self.kind == "content" else style_image(rng, h, w)[0]
        return torch.from_numpy(arr)
