"""Tiny fake datasets written to tmp_path (PNG label / 16-bit instance maps and photos)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

# Photo colour of every class id: photos are exactly PALETTE[label], which makes alignment checkable.
PALETTE = np.array(
    [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255], [255, 255, 255]],
    dtype=np.uint8,
)


def write_png(path: str | os.PathLike, arr: np.ndarray) -> str:
    """uint8 [H,W] -> L, uint16/int [H,W] -> 16-bit (I;16), uint8 [H,W,3] -> RGB."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if arr.ndim == 3:
        img = Image.fromarray(arr.astype(np.uint8), "RGB")
    elif arr.dtype == np.uint8:
        img = Image.fromarray(arr, "L")
    else:
        assert arr.min() >= 0 and arr.max() < 2**16
        img = Image.fromarray(arr.astype(np.uint16))
    img.save(path)
    return str(path)


def fake_scene(seed: int, size: tuple[int, int] = (48, 64)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric scene: label uint8, Cityscapes-style inst uint16 (objects: class*1000+k), photo uint8 RGB."""
    h, w = size
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    label[: h // 2, : w // 4] = 1  # stuff block on the left only -> left/right asymmetric
    label[h // 2 :, :] = 2  # ground
    inst = label.astype(np.uint16)
    for k, c in enumerate((3, 3, 4)):
        top, left = int(rng.integers(0, h - 8)), int(rng.integers(w // 4, w - 8))
        label[top : top + 8, left : left + 8] = c
        inst[top : top + 8, left : left + 8] = c * 1000 + (k if c == 3 else 0)
    return label, inst, PALETTE[label]


def make_pix2pixhd_tree(
    root: Path, phase: str = "train", n: int = 3, size: tuple[int, int] = (48, 64), with_inst: bool = True
) -> list[dict]:
    """Write ``{root}/{phase}_label|_inst|_img`` with ``n`` samples; returns their arrays (sorted by stem)."""
    out = []
    for i in range(n):
        label, inst, image = fake_scene(sum(map(ord, phase)) + i, size)
        stem = f"img_{i:03d}"
        rec = {"stem": stem, "label": label, "inst": inst, "image": image}
        rec["label_path"] = write_png(root / f"{phase}_label" / f"{stem}.png", label)
        if with_inst:
            write_png(root / f"{phase}_inst" / f"{stem}.png", inst)
        write_png(root / f"{phase}_img" / f"{stem}.png", image)
        out.append(rec)
    return out


def make_cityscapes_tree(
    root: Path, split: str = "train", cities: tuple[str, ...] = ("aachen", "bonn"), size: tuple[int, int] = (32, 64)
) -> list[dict]:
    """Write a Cityscapes-like tree (one frame per city); returns arrays sorted like the dataset."""
    out = []
    for j, city in enumerate(cities):
        name = f"{city}_000000_{j:06d}"
        label, inst, image = fake_scene(j + sum(map(ord, split)), size)  # image stays PALETTE[small label]
        inst = inst.astype(np.int64)
        for small, cs_class in ((3, 26), (4, 24)):  # Cityscapes car / person, ids like 26001
            objects = inst // 1000 == small
            inst[objects] = cs_class * 1000 + inst[objects] % 1000
            label[objects] = cs_class
        gt = root / "gtFine" / split / city
        rec = {"name": name, "label": label, "inst": inst, "image": image}
        rec["label_path"] = write_png(gt / f"{name}_gtFine_labelIds.png", label)
        write_png(gt / f"{name}_gtFine_instanceIds.png", inst.astype(np.uint16))
        write_png(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", image)
        out.append(rec)
    return out
